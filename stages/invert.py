"""Inversion: DDIM-invert the source clip's latents with the tuned model, to start sampling from.

Peers invert with the empty prompt, UNet only; ``inversion.controlnet: true`` also feeds the source
skeletons through ControlNet (an open choice of the paper: measure it). With
``check_reconstruction`` the inverted noise is sampled back with the same conditioning and the
error is reported: a sanity figure for the inversion. Writes ``inversion/latents.safetensors`` (the
noise and the clean latents), ``inversion/trajectory.safetensors`` (the latents at every timestep, for
``sampling.preserve``) and ``inversion/inversion.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from eym.atomic import atomic_path, write_json
from eym.media import read_frames
from eym_model.components import load_components
from eym_model.pipeline import EditYourMotionPipeline, video_tensor

from .common import (
    FRAMES,
    INVERSION,
    LATENTS,
    POSE,
    STAGE1,
    STAGE2,
    TRAJECTORY,
    load_stage_weights,
    log,
    section,
    stage_main,
)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two videos in [-1, 1], on the 0-255 scale."""
    mse = ((a.float() - b.float()) * 127.5).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(255.0**2 / mse)).item()


def save_trajectory(path: Path, trajectory: dict[int, torch.Tensor]) -> None:
    """The latents at every timestep of the inversion (fp16, the clean ones aside): what sampling.preserve
    follows outside the edit region."""
    steps = sorted(t for t in trajectory if t >= 0)
    stacked = torch.stack([trajectory[t] for t in steps]).contiguous()
    save_file({"latents": stacked}, str(path), metadata={"timesteps": json.dumps(steps)})


def run(case_dir: Path, params: dict) -> dict:
    """Inversion: the noise that DDIM sampling maps back to the source clip."""
    case_dir = Path(case_dir)
    p = section(params, INVERSION)
    if not p.enabled:  # edits of this source sample from noise or copy it (baselines)
        with atomic_path(case_dir / INVERSION) as out:
            out.mkdir()
            write_json(out / "inversion.json", {"skipped": True})
        log.info("inversion: disabled (inversion.enabled: false)")
        return {"skipped": True}
    pipe = EditYourMotionPipeline(load_components(section(params, "model")))
    load_stage_weights(pipe, case_dir, (STAGE1, STAGE2))
    frames = read_frames(case_dir / FRAMES / "source")
    pipe.check_size(frames, str(case_dir / FRAMES / "source"))
    latents = pipe.encode(frames)
    prompt = str(params["prompt"] or "") if p.use_prompt else ""
    skeletons = read_frames(case_dir / POSE / "source_skeleton") if p.controlnet else None
    steps = int(p.steps)
    trajectory = {}
    window = params.get("window")  # a clip longer than window.frames: overlapping windows, fused
    noise = pipe.invert_latents(
        latents, prompt=prompt, skeletons=skeletons, steps=steps, trajectory=trajectory, window=window
    )
    info = {"steps": steps, "prompt": prompt, "controlnet": bool(p.controlnet), "noise_std": noise.std().item()}
    if p.check_reconstruction:
        again = pipe.sample_latents(
            skeletons, prompt, noise, steps=steps, conditioning_scale=1.0, guidance_scale=1.0, window=window
        )
        video = video_tensor(frames)
        info["reconstruction_latent_mae"] = (again.float() - latents).abs().mean().item()
        info["reconstruction_psnr"] = psnr(pipe.decode_tensor(again), video)
        info["vae_psnr"] = psnr(pipe.decode_tensor(latents), video)
    with atomic_path(case_dir / INVERSION) as out:
        out.mkdir()
        tensors = {"noise": noise.cpu().contiguous(), "source_latents": latents.cpu().contiguous()}
        save_file(tensors, str(out / LATENTS), metadata={"steps": str(info["steps"])})
        save_trajectory(out / TRAJECTORY, trajectory)
        write_json(out / "inversion.json", info)
    if p.check_reconstruction:
        log.info(
            "inversion: %d steps; re-sampled PSNR %.2f dB (the VAE alone: %.2f dB)",
            info["steps"],
            info["reconstruction_psnr"],
            info["vae_psnr"],
        )
    return info


if __name__ == "__main__":
    sys.exit(stage_main("invert", run))
