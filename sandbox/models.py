"""Tiny Stable-Diffusion-shaped models with random weights, saved in the diffusers folder layout.

They have every part the real ones have (VAE with an 8x downsampling, CLIP text encoder and BPE
tokenizer, cross-attention UNet with two resolution levels, ControlNet) and load through the same
loader as real weights. Used by the tests and the benchmarks: their outputs carry no
meaning, their code paths and costs per element do.

    python -m sandbox.models --out models/tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

TEXT_DIM = 32


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    from eym_mini.tokenizer import byte_symbols

    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    # A few merges so that common letters pair up, as in a real BPE vocabulary.
    merges = [("e", "r</w>"), ("i", "n"), ("a", "n"), ("o", "n</w>"), ("t", "h")]
    vocab += [a + b for a, b in merges]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=77)


def tiny_components(seed: int = 0) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet, "scheduler": scheduler}


def tiny_controlnet(unet):
    """A ControlNet copied from the UNet whose zero-initialised convs get random weights, as if
    trained: with zeros the skeleton images would have no effect at all."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    zero_convs = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    for conv in zero_convs:
        torch.nn.init.normal_(conv.weight, std=0.1)
        torch.nn.init.normal_(conv.bias, std=0.02)
    return controlnet


def save_tiny_models(out: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``out/base`` (SD layout) and ``out/controlnet``; returns both folders."""
    from diffusers import StableDiffusionPipeline

    out = Path(out)
    parts = tiny_components(seed)
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out / "base")
    tiny_controlnet(parts["unet"]).save_pretrained(out / "controlnet")
    return out / "base", out / "controlnet"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write tiny random SD-layout models (base + ControlNet).")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base, controlnet = save_tiny_models(args.out, args.seed)
    print(f"base model: {base}\ncontrolnet: {controlnet}")


if __name__ == "__main__":
    main()
