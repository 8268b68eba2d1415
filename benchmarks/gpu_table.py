"""Seconds per step and peak memory of the four model stages at the real scale, and what a whole
edit costs from them: the measurement to run when a GPU is lent (about 5 minutes on an H100/H200).

    python3 benchmarks/gpu_table.py --out $OUT                       # GPU: SD 1.5 sizes, 512 px, 8/16/24 frames
    .venv/bin/python benchmarks/gpu_table.py --config tiny --size 64 --frames 2,4 --out /tmp/t   # CPU smoke

For each frame count, with and without gradient checkpointing (fp16 autocast, xformers when it is
importable, else PyTorch's SDPA): a stage-1 step (temporal layers + MA trained, ControlNet and UNet
forward and backward, AdamW), a stage-2 step (RCA's projections + MA), an inversion step (UNet
alone, no gradients) and a sampling step (ControlNet + UNet + MA), each after a warm-up step, with
the peak memory of each measured apart. A whole edit is extrapolated as 300 + 300 tuning steps and
50 + 50 DDIM steps; a further motion of a tuned source as 50 sampling steps. Writes table.md and
table.json in --out. Random weights (benchmarks/full_size_model.py): they cost what the real ones do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
EDIT = {"stage1": 300, "stage2": 300, "invert": 50, "sample": 50}  # the paper's steps, peers' DDIM steps
TRAINED = {"stage1": ["temporal", "motion_attention"], "stage2": ["spatial_attention", "motion_attention"]}


def networks(config: str, device: str):
    """The UNet and ControlNet of SD 1.5 (random weights), or of the tiny test model, and the text width."""
    if config == "tiny":
        from sandbox.models import tiny_components, tiny_controlnet

        unet = tiny_components()["unet"]
        return unet, tiny_controlnet(unet), unet.config.cross_attention_dim
    from diffusers import ControlNetModel, UNet2DConditionModel
    from full_size_model import UNET

    with torch.device(device):
        unet = UNet2DConditionModel(**UNET)
        return unet, ControlNetModel.from_unet(unet), UNET["cross_attention_dim"]


def _timed(device: str, step, repeats: int) -> tuple[float, float]:
    """Mean seconds of ``step()`` after one warm-up, and the peak memory (GiB) over them."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for k in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if k:
            seconds.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return sum(seconds) / len(seconds), peak


def _train_step(model, optimizer, autocast, x, t, text, skeletons) -> None:
    """One tuning step: the denoising loss's forward and backward, and the optimizer's update."""
    with autocast:
        loss = (model(x, t, text, skeletons) - x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(config: str, size: int, frames: int, checkpointing: bool, device: str, repeats: int) -> dict:
    """Seconds per step and peak GiB of stage 1, stage 2, inversion and sampling for one set-up."""
    from eym_model.trainable import make_optimizer, set_trainable
    from eym_model.video_model import VideoModelConfig, build_video_model

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet, controlnet, text_dim = networks(config, device)
    unet.to(device, dtype).requires_grad_(False)
    controlnet.to(device, dtype).requires_grad_(False)
    small = (
        {"motion_attention_dim": 16, "motion_attention_heads": 2, "temporal_head_dim": 8} if config == "tiny" else {}
    )
    model = build_video_model(unet, controlnet, VideoModelConfig(gradient_checkpointing=checkpointing, **small))
    x = torch.randn(1, 4, frames, size // 8, size // 8, device=device)
    skeletons = torch.rand(1, 3, frames, size, size, device=device)
    text, t = torch.randn(1, 77, text_dim, device=device), torch.tensor([500], device=device)
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    row = {}
    for stage, groups in TRAINED.items():
        params = set_trainable(model, groups)
        for p in params.values():
            p.data = p.data.float()  # trained weights stay fp32 under autocast, as in the stages
        optimizer = make_optimizer(params.values(), lr=3e-5)

        row[stage] = _timed(
            device, lambda opt=optimizer: _train_step(model, opt, autocast, x, t, text, skeletons), repeats
        )
        del optimizer
    model.requires_grad_(False)
    for stage, conditions in (("invert", None), ("sample", skeletons)):

        @torch.no_grad()
        def denoise_step(conditions=conditions):
            with autocast:
                model(x, t, text, conditions)

        row[stage] = _timed(device, denoise_step, repeats)
    return {stage: {"seconds": s, "peak_gib": m} for stage, (s, m) in row.items()}


def extrapolate(row: dict) -> tuple[float, float]:
    """Minutes of a whole edit (tuning, inversion, sampling) and of one more motion of a tuned source."""
    edit = sum(row[stage]["seconds"] * steps for stage, steps in EDIT.items()) / 60
    return edit, row["sample"]["seconds"] * EDIT["sample"] / 60


def write_table(rows: list[dict], out: Path, header: str) -> Path:
    lines = [
        header,
        "",
        "| frames | checkpointing | stage 1 s/step | stage 2 s/step | inversion s/step | sampling s/step "
        "| peak GiB (stage 1 / 2 / inv / sampl) | whole edit (min) | one more motion (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["stages"]
        edit, more = extrapolate(m)
        peaks = " / ".join(f"{m[s]['peak_gib']:.1f}" for s in EDIT)
        lines.append(
            f"| {r['frames']} | {'on' if r['checkpointing'] else 'off'} | "
            + " | ".join(f"{m[s]['seconds']:.3f}" for s in EDIT)
            + f" | {peaks} | {edit:.1f} | {more:.1f} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return out / "table.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["sd15", "tiny"], default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", default="8,16,24")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    from eym_model.video_model import resolve_attention_backend

    backend = resolve_attention_backend("auto", torch.device(args.device))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    header = f"{args.config} at {args.size}x{args.size}, {name}, torch {torch.__version__}, attention {backend}"
    rows = []
    for frames in [int(f) for f in args.frames.split(",")]:
        for checkpointing in (False, True):
            try:
                stages = measure(args.config, args.size, frames, checkpointing, args.device, args.repeats)
            except torch.OutOfMemoryError:
                print(f"{frames} frames, checkpointing {checkpointing}: out of memory", flush=True)
                continue
            rows.append({"frames": frames, "checkpointing": checkpointing, "stages": stages})
            print(json.dumps(rows[-1]), flush=True)
    print(write_table(rows, args.out, header).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
