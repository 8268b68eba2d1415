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


def composite(edited: np.ndarray, source: np.ndarray, region: np.ndarray, plate=None) -> np.ndarray:
    """The edit's pixels inside the region, the source's outside, mixed along the feather (uint8); with
    ``plate`` = (image, weights) from eym.clean_plate, the source's background where its person stood."""
    alpha = np.asarray(region, np.float32)[..., None]
    mixed = edited.astype(np.float32) * alpha + source.astype(np.float32) * (1 - alpha)
    if plate is not None:
        image, weight = plate
        weight = np.asarray(weight, np.float32)[..., None]
        mixed = mixed * (1 - weight) + image.astype(np.float32)[None] * weight
    return np.where(alpha > 0, mixed.round(), source).astype(np.uint8)
