"""eym-edit plan: each model stage's predicted peak memory and time on the device the edit will run on,
and the memory check that run makes with it (and preview reports) before anything runs.

The budget is the device's free memory (CUDA's free memory; on a CPU the available RAM), or
--memory-budget SIZE (e.g. 24GiB, to plan for another machine), or none to skip the check.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from eym.errors import InputError

GIB = 2**30
UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_budget(text: str | None) -> int | str | None:
    """'auto' (the default), 'none' (no check), or a size: 24GiB, 24G, 800MB, 12e9."""
    text = (text or "auto").strip().lower()
    if text in ("auto", "none"):
        return text
    match = re.fullmatch(r"([\d.]+(?:e\d+)?)\s*([kmgt]?)(?:i?b)?", text)
    if not match:
        raise InputError(f"eym-edit: --memory-budget must be auto, none or a size such as 24GiB or 800MB, not {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def free_memory(device: str) -> tuple[int, str]:
    """Bytes the edit may use on ``device`` now, and what they are."""
    if device.startswith("cuda"):
        # asked in a short-lived process: a CUDA context here would hold GPU memory for the whole run
        code = f"import torch; print(torch.cuda.mem_get_info(torch.device({device!r}))[0])"
        found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if found.returncode:
            raise InputError(f"{device}: its free memory could not be read ({found.stderr.strip()[-200:]})")
        return int(found.stdout.split()[-1]), f"free on {device}"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"MemAvailable:\s+(\d+) kB", meminfo.read_text())
        if found:
            return int(found.group(1)) * 1024, "of RAM available"
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "of RAM free"


def clip_frames(params: dict, source: Path | None) -> int:
    """How many frames the edit will have: frames.count, or what the source gives at its stride/fps."""
    frames = params["frames"]
    if frames["count"]:
        return int(frames["count"])
    from eym.media import is_video, video_info
    from stages.frames import frame_indices

    if source is None or not is_video(source):
        raise InputError(
            f"frames.count is null (all frames), and {source or 'no --source'} is not a video to count them in: "
            "set frames.count"
        )
    info = video_info(source)
    indices = frame_indices(info["num_frames"], None, frames["stride"], frames["start"], frames["fps"], info["fps"])
    return len(indices)


def predict(params: dict, frames: int, device: str | None = None, stages=None) -> tuple[dict, str, bool]:
    """The plan of each model stage (of ``stages``, when given), the device it is for (default:
    model.device here) and whether its coefficients were measured on that kind of device."""
    from eym_model.loading import resolve_device
    from eym_model.planner import coefficients, plan

    device = device or resolve_device(str(params["model"]["device"]))
    size = params["frames"]
    return plan(params, frames, size["height"], size["width"], device, stages), device, coefficients(device)[1]


def alternatives(params: dict, frames: int, device: str) -> list[tuple[str, dict, int]]:
    """Settings a user may change to lower the peak: (--set text, parameter changes, frames)."""
    from eym.parameters import deep_merge

    model, size = params["model"], params["frames"]
    options = []
    if not model["gradient_checkpointing"]:
        options.append(("model.gradient_checkpointing=true", {"model": {"gradient_checkpointing": True}}))
    if device.startswith("cuda") and model["precision"] == "fp32":
        options.append(("model.precision=fp16", {"model": {"precision": "fp16"}}))
    if device.startswith("cuda") and not params["stage1"]["use_8bit_adam"]:
        eight = {"use_8bit_adam": True}
        options.append(("stage1.use_8bit_adam=true stage2.use_8bit_adam=true", {"stage1": eight, "stage2": eight}))
    found = [(text, deep_merge(params, change), frames) for text, change in options]
    from eym.parameters import typed_section

    window = typed_section("window", params.get("window", {})).model_dump()
    seen = min(frames, int(window["frames"]))  # a clip longer than a window is run a window at a time
    for fewer in (seen * 3 // 4, seen // 2, seen // 4):
        if not 2 <= fewer < seen:
            continue
        if frames <= window["frames"]:
            found.append((f"frames.count={fewer}", params, fewer))
            continue
        # the same share of each window overlapping, so the time stays about the same
        overlap = min(fewer - 1, round(int(window["overlap"]) * fewer / int(window["frames"])))
        text = f"window.frames={fewer}" + (f" window.overlap={overlap}" if overlap != window["overlap"] else "")
        change = {"frames": fewer, "overlap": overlap}
        found.append((text, deep_merge(params, {"window": change}), frames))
    for side in (384, 256):
        if side < min(size["width"], size["height"]):
            smaller = deep_merge(params, {"frames": {"width": side, "height": side}})
            found.append((f"frames.width={side} frames.height={side}", smaller, frames))
    return found


def memory_verdict(params: dict, frames: int, budget, device: str | None = None, planned=None) -> tuple[bool, str]:
    """Whether the edit's predicted peak fits the budget, and the line that says so; when it does not,
    the line names the stage, the prediction and the settings that would fit. ``planned``: predict's result
    when the caller has it (no second trace)."""
    if budget == "none":
        return True, "memory: not checked (--memory-budget none)"
    plans, device, calibrated = planned or predict(params, frames, device)  # planned: predict's result
    if not plans:
        return True, "memory: no model stage runs"
    if budget == "auto" and device.startswith("cuda") and not _has_cuda():
        return True, f"memory: not checked (this machine has no {device}: give --memory-budget to check a plan)"
    limit, what = free_memory(device) if budget == "auto" else (int(budget), "in --memory-budget")
    stage, worst = max(plans.items(), key=lambda item: item[1].peak_bytes)
    if worst.peak_bytes <= limit:
        return True, (
            f"memory: the model stages' peak is predicted at {worst.peak_bytes / GIB:.1f} GiB ({stage}), "
            f"{limit / GIB:.1f} GiB is {what}"
        )
    over = [s for s, p in plans.items() if p.peak_bytes > limit]  # every setting tried lowers all stages
    fits = []
    for text, changed, count in alternatives(params, frames, device):
        peak = max(p.peak_bytes for p in predict(changed, count, device, over)[0].values())
        if peak <= limit:
            fits.append(f"--set {' --set '.join(text.split())} ({peak / GIB:.1f} GiB)")
        if len(fits) == 3:
            break
    size = params["frames"]
    return False, (
        f"the edit would need about {worst.peak_bytes / GIB:.1f} GiB at {stage} ({size['width']}x{size['height']}, "
        f"{frames} frames on {device}{'' if calibrated else ', uncalibrated prediction'}) but {limit / GIB:.1f} GiB "
        f"is {what}. "
        + (f"Settings that fit: {'; or '.join(fits)}. " if fits else "No single setting brings it under. ")
        + "`eym-edit plan` shows every stage; --memory-budget none skips this check."
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_table(plans: dict, device: str, calibrated: bool, frames: int, params: dict) -> str:
    size = params["frames"]
    lines = [
        f"plan: {params['model']['base']}, {size['width']}x{size['height']}, {frames} frames, on {device}"
        + ("" if calibrated else " (uncalibrated: nominal GPU throughput until benchmarks/gpu_table.py is fitted)"),
        f"{'stage':<8} {'peak memory':>12} {'s/step':>9} {'steps':>6} {'time':>9}",
    ]
    for stage, p in plans.items():
        lines.append(
            f"{stage:<8} {p.peak_bytes / GIB:>8.2f} GiB {p.seconds_per_step:>9.2f} {p.steps:>6} "
            f"{_duration(p.seconds):>9}"
        )
    total = sum(p.seconds for p in plans.values())
    lines.append(f"{'edit':<8} {max(p.peak_bytes for p in plans.values()) / GIB:>8.2f} GiB {'':>9} {'':>6} "
                 f"{_duration(total):>9}")  # fmt: skip
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def cmd_plan(args) -> int:
    from eym.errors import EYMError
    from eym.parameters import read_layer
    from flows.overrides import absolute_paths, override_layers
    from flows.preflight import preflight
    from flows.stage_task import repo_root

    try:
        budget = parse_budget(args.memory_budget)
        workspace = repo_root(args.workspace)
        layers = [(name, absolute_paths(values)) for name, values in override_layers(args)]
        params = preflight([(str(workspace / "params.yaml"), read_layer(workspace / "params.yaml")), *layers])
        frames = clip_frames(params, Path(args.source).resolve() if args.source else None)
        plans, device, calibrated = predict(params, frames, args.device)
        fits, verdict = memory_verdict(params, frames, budget, device, (plans, device, calibrated))
    except EYMError as exc:
        print(f"eym-edit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({s: {"peak_bytes": p.peak_bytes, "seconds_per_step": round(p.seconds_per_step, 4),
                              "steps": p.steps} for s, p in plans.items()}, indent=2))  # fmt: skip
    else:
        print(plan_table(plans, device, calibrated, frames, params))
    print(verdict if fits else f"eym-edit: {verdict}", file=sys.stderr if args.json or not fits else sys.stdout)
    return 0 if fits else 1


def add_plan_parser(sub, parameter_options) -> None:
    plan = sub.add_parser("plan", help="predict each model stage's peak memory and time before running it")
    plan.add_argument("--source", help="the source video (counts its frames when frames.count is null)")
    plan.add_argument("--reference", action="append", help="accepted as run takes it (not needed to plan)")
    plan.add_argument("--base-model", help="Stable Diffusion 1.5: hub id or diffusers folder")
    plan.add_argument("--controlnet", help="ControlNet-OpenPose: hub id or folder")
    plan.add_argument("--device", help="plan for this device (cpu, cuda, cuda:1; default: model.device here)")
    plan.add_argument("--json", action="store_true", help="print {stage: {peak_bytes, seconds_per_step, steps}}")
    plan.add_argument("--workspace", type=Path, default=Path.cwd(), help="the DVC workspace (default: here)")
    add_budget_option(plan)
    parameter_options(plan)
    plan.set_defaults(func=cmd_plan)


def add_budget_option(parser) -> None:
    parser.add_argument(
        "--memory-budget",
        default="auto",
        help="memory the edit may use: auto (the device's free memory), none (no check) or a size (24GiB)",
    )
