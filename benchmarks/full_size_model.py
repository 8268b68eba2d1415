"""Stable Diffusion 1.5 and ControlNet-OpenPose with their exact architectures and random weights,
written as diffusers folders: the real scale's memory and speed, measurable with no download.

    .venv/bin/python benchmarks/full_size_model.py --out build/sd15-random

then ``--params configs/sd15.yaml --set model.base=build/sd15-random/base --set
model.controlnet=build/sd15-random/controlnet``. The outputs mean nothing: only what they cost does.
The tokenizer is eym-mini's (CLIP's byte-level BPE with a small vocabulary; no CLIP vocabulary ships
in an installed package), its ids all within CLIP's 49,408.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The configurations of stable-diffusion-v1-5 (unet, vae, text_encoder) and sd-controlnet-openpose.
UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}
TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
# Parameters: those of the released checkpoints (UNet, VAE, text encoder), and of sd-controlnet-openpose's
# published configuration (a ControlNet copied from this UNet: the same down blocks and attention widths).
PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480, "controlnet": 361_279_120}


def components(device: str | torch.device = "cpu") -> dict:
    """The four networks (on ``device``: "meta" builds them without memory) and the tokenizer and scheduler."""
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from eym_mini.diffusion import SD_SCHEDULE
    from eym_mini.tokenizer import mini_tokenizer

    with torch.device(device):
        unet = UNet2DConditionModel(**UNET)
        parts = {
            "unet": unet,
            "vae": AutoencoderKL(**VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT)),
            "controlnet": ControlNetModel.from_unet(unet),
        }
    return {**parts, "tokenizer": mini_tokenizer(), "scheduler": DDIMScheduler.from_config(SD_SCHEDULE)}


def write(out: Path, dtype: torch.dtype = torch.float16) -> tuple[Path, Path]:
    """``out/base`` (SD 1.5's layout) and ``out/controlnet`` with random weights; returns both folders."""
    from diffusers import StableDiffusionPipeline

    from eym.atomic import atomic_path

    torch.manual_seed(0)
    parts = components()
    controlnet = parts.pop("controlnet")
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    base, control = Path(out) / "base", Path(out) / "controlnet"
    with atomic_path(base) as tmp:
        pipe.to(dtype).save_pretrained(tmp)
    with atomic_path(control) as tmp:
        controlnet.to(dtype).save_pretrained(tmp)
    return base, control


def write_configs(out: Path) -> tuple[Path, Path]:
    """The same folders with their configuration files only (no weights): what eym-edit plan reads."""
    from transformers import CLIPTextConfig

    parts = components("meta")
    base, control = Path(out) / "base", Path(out) / "controlnet"
    for name in ("unet", "vae", "scheduler"):
        parts[name].save_config(base / name)
    CLIPTextConfig(**TEXT).save_pretrained(base / "text_encoder")
    parts["tokenizer"].save_pretrained(base / "tokenizer")
    parts["controlnet"].save_config(control)
    return base, control


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for base/ and controlnet/")
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="of the weight files")
    parser.add_argument("--configs-only", action="store_true", help="configuration files, no weights (for plans)")
    args = parser.parse_args(argv)
    if args.configs_only:
        print("configurations: {}, {}".format(*write_configs(args.out)))
        return
    if (args.out / "base").is_dir() and (args.out / "controlnet").is_dir():
        print(f"{args.out}: already written")
        return
    base, controlnet = write(args.out, torch.float16 if args.dtype == "fp16" else torch.float32)
    print(f"base model: {base}\ncontrolnet: {controlnet}")


if __name__ == "__main__":
    main()
