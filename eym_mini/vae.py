"""eym-mini's VAE phase: a diffusers ``AutoencoderKL`` (8x down, 4 latent channels, as SD 1.5's)
trained on puppet frames with an L1 + MSE reconstruction loss and SD's tiny KL weight.

It has no attention in its middle block, so it is purely convolutional. Some frames are shown with
their background masked to black, as stage-1 tuning shows them. At the end, the latent scaling
factor is set to 1 / (std of the latents), as Stable Diffusion's 0.18215 was.
Writes ``build/eym-mini/vae/`` (``save_pretrained``) and ``build/eym-mini/logs/vae_loss.tsv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eym.atomic import atomic_path

from . import BUILD_DIR, DATA_DIR, LOG_DIR
from .data import load_set
from .training import EMA, Phase, autocast, budget_minutes, fingerprint, lr_at, resolve_device, step_rng

log = logging.getLogger("eym")


def build_vae(p: dict):
    """The VAE, with its posterior's log-variance starting at ``initial_logvar``: at 0 (diffusers'
    default) the sampling noise drowns the untrained encoder's means and training stalls for long."""
    from diffusers import AutoencoderKL

    channels = tuple(int(c) for c in p["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=int(p["latent_channels"]),
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        layers_per_block=int(p["layers_per_block"]),
        norm_num_groups=int(p["norm_num_groups"]),
        sample_size=int(p["size"]) if "size" in p else 128,
        mid_block_add_attention=False,
    )
    latent = int(p["latent_channels"])
    with torch.no_grad():
        vae.encoder.conv_out.bias[latent:] = float(p["initial_logvar"])
    return vae


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


def frame_batch(frames, masks, rows: np.ndarray, masked: np.ndarray) -> torch.Tensor:
    """Frames of ``rows``, those flagged in ``masked`` with a black background."""
    order = np.argsort(rows)  # memory-mapped arrays read fastest in order
    picked = np.empty((len(rows), *frames.shape[1:]), np.uint8)
    picked[order] = frames[rows[order]]
    if masked.any():
        picked[masked] *= masks[rows[masked]][..., None]
    return to_tensor(picked)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR over images in [-1, 1], on the 0-255 scale with 8-bit rounding as when written."""
    a8, b8 = ((a.clamp(-1, 1) + 1) * 127.5).round(), ((b.clamp(-1, 1) + 1) * 127.5).round()
    mse = (a8 - b8).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, device: str, precision: str, chunk: int = 32) -> torch.Tensor:
    out = []
    for piece in images.split(chunk):
        with autocast(device, precision):
            out.append(vae.decode(vae.encode(piece.to(device)).latent_dist.mean).sample.float().cpu())
    return torch.cat(out)


def train(params: dict, root: Path = Path(".")) -> dict:
    mini = params["eym_mini"]
    p = mini["vae"]
    device = resolve_device(mini["device"])
    train_set, heldout = load_set(root / DATA_DIR / "train"), load_set(root / DATA_DIR / "heldout")
    torch.manual_seed(int(mini["seed"]))
    vae = build_vae({**p, "size": mini["data"]["size"]}).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=float(p["lr"]), weight_decay=0.0, betas=(0.9, 0.99))
    phase = Phase(
        "vae",
        root / BUILD_DIR / "vae.ckpt",
        int(p["steps"]),
        int(p["checkpoint_every"]),
        fingerprint(mini["seed"], mini["data"], p),
        {"vae": vae},
        optimizer,
        EMA({"vae": vae}, float(p["ema"])),
        budget_minutes(mini),
    )
    phase.resume()
    check = to_tensor(heldout.frames[: int(p["heldout_check_frames"])])
    seed, batch, precision = int(mini["seed"]), int(p["batch"]), str(p["precision"])

    def step(i: int) -> torch.Tensor:
        rng = step_rng(seed, i)
        rows = rng.integers(0, len(train_set), batch)
        x = frame_batch(train_set.frames, train_set.masks, rows, rng.random(batch) < float(p["masked_fraction"]))
        x = x.to(device)
        generator = torch.Generator(device).manual_seed(seed * 1_000_003 + i)
        with autocast(device, precision):
            posterior = vae.encode(x).latent_dist
            y = vae.decode(posterior.sample(generator)).sample.float()
        recon = F.l1_loss(y, x) + float(p["mse_weight"]) * F.mse_loss(y, x)
        return recon + float(p["kl_weight"]) * posterior.kl().mean()

    def heldout_psnr(i: int):
        if i % int(p["heldout_every"]) and i != phase.steps:
            return None
        return {"heldout_psnr": round(psnr(reconstruct(phase.ema.shadow["vae"], check, device, precision), check), 3)}

    total, warmup = phase.steps, int(p["warmup"])
    phase.run(step, lambda i: lr_at(i, total, float(p["lr"]), warmup, float(p["final_lr_fraction"])), heldout_psnr)

    final = phase.ema.shadow["vae"].float()
    scale = latent_scaling_factor(final, train_set, device, precision)
    final.register_to_config(scaling_factor=scale)
    score = psnr(reconstruct(final, to_tensor(heldout.frames), device, precision), to_tensor(heldout.frames))
    with atomic_path(root / BUILD_DIR / "vae") as out:
        final.to("cpu").save_pretrained(out)
    phase.write_log(root / LOG_DIR / "vae_loss.tsv")
    phase.finish()
    log.info("eym-mini vae: held-out PSNR %.2f dB, latent scaling factor %.4f", score, scale)
    return {"heldout_psnr": score, "scaling_factor": scale, "steps": phase.steps, "train_seconds": phase.seconds}


@torch.no_grad()
def latent_scaling_factor(vae, frames, device: str, precision: str, count: int = 512) -> float:
    rows = np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)
    latents = []
    for piece in to_tensor(frames.frames[rows]).split(64):
        with autocast(device, precision):
            latents.append(vae.encode(piece.to(device)).latent_dist.mean.float().cpu())
    return float(1.0 / torch.cat(latents).std())
