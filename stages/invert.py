"""Inversion: DDIM-invert the source clip's latents with the tuned model, to start sampling from.

Peers invert with the empty prompt, UNet only; ``inversion.controlnet: true`` also feeds the source
skeletons through ControlNet (an open choice of the paper: measure it). With
``check_reconstruction`` the inverted noise is sampled back with the same conditioning and the
error is reported: a sanity figure for the inversion. Writes ``inversion/latents.safetensors`` and
``inversion/inversion.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from eym.atomic import atomic_path, write_json
from eym.media import read_frames
from eym_model.components import load_components
from eym_model.diffusion import ddim_invert, ddim_sample, decode_video, encode_prompts, encode_video

from .common import FRAMES, INVERSION, POSE, STAGE1, STAGE2, log, section, stage_main
from .tune import check_size, load_stage_weights, skeleton_tensor, video_tensor

PARAMS = ("enabled", "steps", "use_prompt", "controlnet", "check_reconstruction")
LATENTS = "latents.safetensors"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two videos in [-1, 1], on the 0-255 scale."""
    mse = ((a.float() - b.float()) * 127.5).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()


def run(case_dir: Path, params: dict) -> dict:
    """Inversion: the noise that DDIM sampling maps back to the source clip."""
    case_dir = Path(case_dir)
    p = section(params, INVERSION, PARAMS)
    if not p["enabled"]:  # edits of this source sample from noise or copy it (baselines)
        with atomic_path(case_dir / INVERSION) as out:
            out.mkdir()
            write_json(out / "inversion.json", {"skipped": True})
        log.info("inversion: disabled (inversion.enabled: false)")
        return {"skipped": True}
    model_params = section(params, "model", ("base", "controlnet"))
    components = load_components(model_params)
    load_stage_weights(components, case_dir, (STAGE1, STAGE2))
    model, base = components.model.eval(), components.base
    frames = read_frames(case_dir / FRAMES / "source")
    check_size(components, frames, case_dir / FRAMES / "source")
    video = video_tensor(frames)
    chunk = int(model_params.get("vae_chunk", 8))
    latents = encode_video(base.vae, video, chunk).float()
    prompt = str(params.get("prompt") or "") if p["use_prompt"] else ""
    text = encode_prompts(base.tokenizer, base.text_encoder, [prompt])
    skeletons = None
    if p["controlnet"]:
        skeletons = skeleton_tensor(read_frames(case_dir / POSE / "source_skeleton")).to(
            components.device, components.dtype
        )

    with components.autocast():
        noise = ddim_invert(model, latents, text, base.scheduler_config, int(p["steps"]), skeletons).float()
    info = {
        "steps": int(p["steps"]),
        "prompt": prompt,
        "controlnet": bool(p["controlnet"]),
        "noise_std": noise.std().item(),
    }
    if p["check_reconstruction"]:
        with components.autocast():
            again = ddim_sample(model, noise, text, base.scheduler_config, int(p["steps"]), skeletons).float()
        info["reconstruction_latent_mae"] = (again - latents).abs().mean().item()
        info["reconstruction_psnr"] = psnr(decode_video(base.vae, again, chunk).cpu(), video)
        info["vae_psnr"] = psnr(decode_video(base.vae, latents, chunk).cpu(), video)
    with atomic_path(case_dir / INVERSION) as out:
        out.mkdir()
        tensors = {"noise": noise.cpu().contiguous(), "source_latents": latents.cpu().contiguous()}
        save_file(tensors, str(out / LATENTS), metadata={"steps": str(info["steps"])})
        write_json(out / "inversion.json", info)
    if p["check_reconstruction"]:
        log.info(
            "inversion: %d steps; re-sampled PSNR %.2f dB (the VAE alone: %.2f dB)",
            info["steps"],
            info["reconstruction_psnr"],
            info["vae_psnr"],
        )
    return info


if __name__ == "__main__":
    sys.exit(stage_main("invert", run))
