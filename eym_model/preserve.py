"""Background preservation while sampling: outside the edit region the latents follow the source's own
trajectory (its DDIM inversion, step by step), inside it the edit's; then the source's pixels go back.

The region is ``offset/region/`` (eym.edit_region), shrunk to the latent grid by taking each cell's
largest value: a latent cell any edited pixel depends on is edited.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def latent_region(region: np.ndarray, factor: int) -> torch.Tensor:
    """(frames, H, W) in [0, 1] -> (1, 1, frames, H/factor, W/factor): each latent cell's largest value."""
    pooled = F.max_pool2d(torch.from_numpy(region).float()[:, None], factor, factor)
    return pooled[:, 0][None, None]


class KeepSource:
    """``on_step`` of ``ddim_sample``: after each of the first ``steps`` steps, the latents outside the
    region are replaced by the source's at the same timestep (``trajectory``: timestep -> latents;
    -1: the clean latents)."""

    def __init__(self, region: torch.Tensor, trajectory: dict[int, torch.Tensor], steps: int):
        self.region, self.trajectory, self.steps = region, trajectory, steps

    def __call__(self, index: int, timestep: int, x: torch.Tensor) -> torch.Tensor:
        if index >= self.steps:
            return x
        if timestep not in self.trajectory:
            raise ValueError(f"the source's trajectory has no latents at timestep {timestep}")
        source = self.trajectory[timestep].to(x.device, x.dtype)
        region = self.region.to(x.device, x.dtype)
        return region * x + (1 - region) * source


def noised_trajectory(clean: torch.Tensor, scheduler_config: dict, steps: int, seed: int) -> dict[int, torch.Tensor]:
    """The source's latents noised to each sampling timestep with one fixed noise (for sampling from
    fresh noise, where there is no inversion to follow)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    found = {-1: clean.float().cpu()}
    for t in scheduler.timesteps:
        found[int(t)] = scheduler.add_noise(clean.float().cpu(), noise, t[None])
    return found


def composite(edited: np.ndarray, source: np.ndarray, region: np.ndarray, plate=None, unchanged: float = 0.0):
    """The edit's pixels inside the region, the source's outside, mixed along the feather (uint8); with
    ``plate`` = (image, weights) from eym.clean_plate, the source's background where its person stood.
    ``unchanged`` > 0: inside the region too, where the edit differs from that background by less than
    ``unchanged`` grey levels (fading in up to twice as many), the background's pixels are kept."""
    alpha = np.asarray(region, np.float32)[..., None]
    base = source.astype(np.float32)
    if plate is not None:
        image, weight = plate
        weight = np.asarray(weight, np.float32)[..., None]
        base = base * (1 - weight) + image.astype(np.float32)[None] * weight
    if unchanged > 0:
        alpha = alpha * changed(edited, base, unchanged)
    mixed = edited.astype(np.float32) * alpha + source.astype(np.float32) * (1 - alpha)
    if plate is not None:
        mixed = mixed * (1 - weight) + image.astype(np.float32)[None] * weight
    return np.where(alpha > 0, mixed.round(), base.round()).astype(np.uint8)


def changed(edited: np.ndarray, background: np.ndarray, grey: float) -> np.ndarray:
    """(frames, H, W, 1) in [0, 1]: where the edit differs from the background, the largest channel's
    difference smoothed over 3x3 pixels and grown by one (a person's soft edge stays the edit's), 0 below
    ``grey`` and 1 from twice ``grey``: the model's near copy of the background is not a change."""
    import cv2

    from eym.edit_region import smoothstep

    difference = np.abs(edited.astype(np.float32) - background).max(axis=-1)
    out = np.empty(difference.shape, np.float32)
    for i, frame in enumerate(difference):
        frame = cv2.dilate(cv2.blur(frame, (3, 3)), np.ones((3, 3), np.uint8))
        out[i] = smoothstep(np.clip(frame / grey - 1.0, 0.0, 1.0))
    return out[..., None]
