"""Seconds per training step, per sampling step and peak memory of the video model; RCA vs full attention.

    .venv/bin/python benchmarks/model_speed.py --config tiny            # CPU, tiny random model
    .venv/bin/python benchmarks/model_speed.py --config sd15 --size 512 --frames 8 --device cuda
    .venv/bin/python benchmarks/model_speed.py --attention --size 512 --device cuda   # RCA vs full

The SD-1.5-sized model is built from SD 1.5's configs with random weights: it costs what the real
one costs. A training step is stage 1/2's step (ControlNet + UNet + MA + temporal forward and
backward on cached latents, AdamW update); a sampling step is one DDIM step without guidance.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from full_size_model import UNET as SD15_UNET  # SD 1.5's UNet configuration (benchmarks/ is on the path)

from eym_model.attention import FrameContext, VideoSelfAttnProcessor
from eym_model.trainable import make_optimizer, set_trainable
from eym_model.video_model import VideoModelConfig, build_video_model


def build(config: str, device: str, dtype: torch.dtype, checkpointing: bool):
    from diffusers import ControlNetModel, UNet2DConditionModel

    if config == "tiny":
        from sandbox.models import tiny_components, tiny_controlnet

        unet = tiny_components()["unet"]
        controlnet = tiny_controlnet(unet)
        model_config = VideoModelConfig(
            motion_attention_dim=16, motion_attention_heads=2, temporal_head_dim=8, gradient_checkpointing=checkpointing
        )
        text_dim = unet.config.cross_attention_dim
    else:
        unet = UNet2DConditionModel(**SD15_UNET)
        controlnet = ControlNetModel.from_unet(unet)
        model_config = VideoModelConfig(gradient_checkpointing=checkpointing)
        text_dim = 768
    unet.to(device, dtype).requires_grad_(False)
    controlnet.to(device, dtype).requires_grad_(False)
    model = build_video_model(unet, controlnet, model_config)
    return model, text_dim


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_model(args) -> None:
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    model, text_dim = build(args.config, args.device, dtype, args.checkpointing)
    latent = args.size // 8
    x = torch.randn(1, 4, args.frames, latent, latent, device=args.device)
    skeletons = torch.rand(1, 3, args.frames, args.size, args.size, device=args.device)
    text = torch.randn(1, 77, text_dim, device=args.device)
    autocast = torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)

    for groups in (["temporal", "motion_attention"], ["spatial_attention", "motion_attention"]):
        params = set_trainable(model, groups)
        for p in params.values():
            p.data = p.data.float()
        optimizer = make_optimizer(params.values(), lr=3e-5)
        count = sum(p.numel() for p in params.values())
        times = []
        for step in range(args.steps + 1):
            sync(args.device)
            start = time.perf_counter()
            with autocast:
                loss = (model(x, torch.tensor([500], device=args.device), text, skeletons) - x).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(args.device)
            if step:  # the first step warms up kernels and allocators
                times.append(time.perf_counter() - start)
        print(
            f"train step [{' + '.join(groups)}] ({count / 1e6:.1f} M trainable): "
            f"{sum(times) / len(times):.3f} s/step, peak {peak_memory_gb(args.device):.2f} GiB"
        )
        del optimizer

    model.requires_grad_(False)
    times = []
    with torch.no_grad(), autocast:
        for step in range(args.steps + 1):
            sync(args.device)
            start = time.perf_counter()
            model(x, torch.tensor([500], device=args.device), text, skeletons)
            sync(args.device)
            if step:
                times.append(time.perf_counter() - start)
    print(f"sampling step: {sum(times) / len(times):.3f} s/step, peak {peak_memory_gb(args.device):.2f} GiB")


def time_attention(args) -> None:
    """One SD-1.5 attn1 layer of the first resolution level (320 channels) at latent size/8."""
    from diffusers.models.attention_processor import Attention

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    tokens = (args.size // 8) ** 2
    attn = Attention(320, heads=8, dim_head=40).to(args.device, dtype)
    print(f"attn1 at {args.size}x{args.size} ({tokens} tokens, 320 channels), {args.device}, {args.precision}")
    print("| frames | frame | rca | sparse_causal | full | full / rca |")
    print("|---|---|---|---|---|---|")
    for frames in args.attention_frames:
        x = torch.randn(frames, tokens, 320, device=args.device, dtype=dtype)
        row = {}
        for mode in ("frame", "rca", "sparse_causal", "full"):
            attn.set_processor(VideoSelfAttnProcessor(FrameContext(num_frames=frames), mode))
            with torch.no_grad():
                attn(x)
                sync(args.device)
                start = time.perf_counter()
                for _ in range(args.steps):
                    attn(x)
                sync(args.device)
            row[mode] = (time.perf_counter() - start) / args.steps
        print(
            f"| {frames} | "
            + " | ".join(f"{1000 * row[m]:.1f} ms" for m in ("frame", "rca", "sparse_causal", "full"))
            + f" | {row['full'] / row['rca']:.1f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (latents are size/8)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    parser.add_argument("--attention", action="store_true", help="time RCA against full attention instead")
    parser.add_argument("--attention-frames", type=int, nargs="+", default=[8, 16, 24])
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads")
    time_attention(args) if args.attention else time_model(args)


if __name__ == "__main__":
    main()
