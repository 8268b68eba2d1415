"""The whole pipeline at the real scale: Stable Diffusion 1.5 + ControlNet-OpenPose (their exact
architectures, random weights), configs/sd15.yaml, a 512-px puppet case, through all nine stages.

    .venv/bin/python benchmarks/real_scale.py --frames 8 --out reports/real-scale   # this CPU: ~25 min

Writes the full-size model if missing (benchmarks/full_size_model.py, into --models), runs
``eym-edit run`` in a workspace of its own with tiny step counts (--tuning-steps, --ddim-steps: what
it costs, not what it makes), and reads each stage's wall time and peak memory from the line every
stage logs at its end. Writes ``table.md`` and ``stages.json`` in --out: per stage, seconds and peak
RSS (and on CUDA the allocated and reserved peaks), and the trained-weight file sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "models" / "eym-mini"
sys.path.insert(0, str(REPO))
ORDER = (
    "frames",
    "segment",
    "pose",
    "reference",
    "reference_pose",
    "offset",
    "stage1",
    "stage2",
    "invert",
    "sample",
    "evaluate",
)


def stage_figures(folders: dict[str, Path]) -> dict[str, dict]:
    """Seconds and peak memory of each stage, from the last line of its log in the case's folders."""
    from stages.common import FINISHED, STEP_TIMES

    figures = {}
    for stage, folder in folders.items():
        log = folder / "logs" / f"{stage}.log"
        text = log.read_text() if log.is_file() else ""
        found = FINISHED.findall(text)
        if found:
            _, seconds, rss, allocated, reserved = found[-1]
            row = {"seconds": float(seconds), "peak_rss_gib": float(rss)}
            if allocated:
                row.update(peak_cuda_allocated_gib=float(allocated), peak_cuda_reserved_gib=float(reserved))
            loops = STEP_TIMES.findall(text)  # the stage's own loop: tuning, inversion, or sampling
            if loops:
                row["seconds_per_step"] = float(loops[0][3])
            figures[stage] = row
    return figures


def table(figures: dict, weights: dict, header: str) -> str:
    cuda = any("peak_cuda_allocated_gib" in f for f in figures.values())
    lines = [
        header,
        "",
        "| stage | wall time (s) | peak RSS (GiB) |" + (" peak CUDA allocated / reserved (GiB) |" if cuda else ""),
    ]
    lines.append("|---|---|---|" + ("---|" if cuda else ""))
    for stage in ORDER:
        f = figures.get(stage)
        if f is None:
            continue
        row = f"| {stage} | {f['seconds']:.1f} | {f['peak_rss_gib']:.2f} |"
        if cuda:
            row += f" {f.get('peak_cuda_allocated_gib', 0):.2f} / {f.get('peak_cuda_reserved_gib', 0):.2f} |"
        lines.append(row)
    lines += ["", "Trained weights: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in weights.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=Path,
        default=REPO / "build" / "sd15-random",
        help="full-size model folder, or eym-mini: the shipped model with params.yaml's settings",
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8, help="frames.count (24 on a GPU)")
    parser.add_argument("--tuning-steps", type=int, default=2)
    parser.add_argument("--ddim-steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="more eym-edit --set KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.update(DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1")
    import full_size_model

    from sandbox.workspace import make_workspace

    mini = str(args.models) == "eym-mini"
    if not mini and not (args.models / "controlnet").is_dir():
        full_size_model.main(["--out", str(args.models)])
    sets = [
        *(
            f"frames.{k}={v}"
            for k, v in (("count", args.frames), ("stride", 1), ("width", args.size), ("height", args.size))
        ),
        *(f"{stage}.steps={args.tuning_steps}" for stage in ("stage1", "stage2")),
        *(f"{stage}.steps={args.ddim_steps}" for stage in ("inversion", "sampling")),
        *args.set,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_workspace(Path(tmp), [])  # the project's code and params.yaml; the model is passed by path
        start = time.perf_counter()
        run = _edit(root, None if mini else args.models.resolve(), args.size, args.frames, sets)
        wall = time.perf_counter() - start
        figures, weights = _measured(root / "data" / "cases" / "real-scale")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"exit": run.returncode, "wall_seconds": round(wall, 1), "stages": figures, "weights_bytes": weights}
    (args.out / "stages.json").write_text(json.dumps({**result, "sets": sets}, indent=2) + "\n")
    model = (
        "eym-mini, params.yaml"
        if mini
        else (
            f"{args.models.name} (benchmarks/full_size_model.py: SD 1.5 + ControlNet-OpenPose's architectures, random "
            f"weights), configs/sd15.yaml"
        )
    )
    header = (
        f"{model}, {args.size} px, "
        f"{args.frames} frames, {args.tuning_steps} + {args.tuning_steps} tuning steps, {args.ddim_steps} DDIM steps: "
        f"exit {run.returncode}, {wall / 60:.1f} min in all"
    )
    (args.out / "table.md").write_text(table(figures, weights, header))
    print((args.out / "table.md").read_text())
    if run.returncode:
        print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
    return run.returncode


def _edit(root: Path, models: Path | None, size: int, frames: int, sets: list[str]) -> subprocess.CompletedProcess:
    """``eym-edit run`` of a puppet case at ``size`` with the full-size model (eym-mini: None), as a user runs it."""
    from puppet_world.cases import make_case

    make_case(
        root / "inputs" / "case",
        seed=5,
        size=size,
        num_frames=max(24, frames),
        fps=12,
        source_motion="walk_in_place",
        reference_motion="arms_raise",
    )
    command = [
        *(sys.executable, "-m", "flows.cli", "run", "--id", "real-scale", "--prompt", "a person raising both arms"),
        *("--source", "inputs/case/source.mp4", "--reference", "inputs/case/reference.mp4"),
        *("--ground-truth", "inputs/case/gt/edit.mp4"),
        *(() if models is None else ("--params", "configs/sd15.yaml")),
        *("--base-model", str((models or MINI) / "base"), "--controlnet", str((models or MINI) / "controlnet")),
        *[x for s in sets for x in ("--set", s)],
    ]
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(root / ".prefect"))
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)


def _measured(case: Path) -> tuple[dict, dict]:
    """Each stage's figures (from its log in the edit's, the source's or the prepared source's folder)
    and the trained weights' file sizes."""
    import yaml

    if not (case / "case.yaml").is_file():  # the run failed before creating its case
        return {}, {}
    info = yaml.safe_load((case / "case.yaml").read_text())
    source, prepared = (case / info["source_dir"]).resolve(), (case / info["prepared_dir"]).resolve()
    folders = {s: prepared for s in ORDER[:3]} | {s: case for s in ORDER[3:6]}
    folders |= {s: source for s in ("stage1", "stage2", "invert")} | {s: case for s in ("sample", "evaluate")}
    weights = {s: (source / s / "weights.safetensors") for s in ("stage1", "stage2")}
    return stage_figures(folders), {s: f.stat().st_size for s, f in weights.items() if f.is_file()}


if __name__ == "__main__":
    sys.exit(main())
