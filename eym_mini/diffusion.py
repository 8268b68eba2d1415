"""eym-mini's diffusion phase: CLIP text encoder, cross-attention UNet and OpenPose ControlNet,
trained jointly from scratch on the VAE latents of the puppet frames.

Each step takes a batch of latents (some of frames with a masked background), their prompts
(dropped to "" with ``prompt_dropout``, so that the empty-prompt inversion and classifier-free
guidance work) and their skeleton images drawn exactly as the pose stage draws them, with
detector-like jitter and missing joints. With probability ``controlnet_dropout`` a batch runs the
UNet alone, so that it stays a text-to-image model in its own right (DDIM inversion uses the UNet
alone). Loss: epsilon-prediction MSE at SD's noise schedule, weighted by min-SNR-gamma.
Writes ``build/eym-mini/diffusion/{text_encoder,unet,controlnet,tokenizer}``, its
``training.json`` (steps done, architecture, loss log) and ``build/eym-mini/logs/diffusion_loss.tsv``.

Raising ``eym_mini.diffusion.steps`` and rerunning continues from the weights already in
``build/eym-mini/diffusion`` (a DVC ``persist`` output) when they have the same architecture and
latents, instead of starting again: a warm restart (fresh optimizer, the learning-rate schedule of the
new total) from step ``training.json: steps``, so the result is not bit-identical to one long run.
Weights trained as long or longer with other parameters are never thrown away unasked: an error
says to raise the steps or delete the folder. ``start_from`` goes on from an exported model
(``models/eym-mini``) when there is nothing to continue, with a learning-rate schedule of its own:
how GPU time adds to the shipped weights. Each run's steps, batch, machine and time are kept in
``training.json: runs`` and ``build/eym-mini/logs/diffusion_runs.tsv`` (the model card lists them).

Drawing a batch's skeletons (about 40 ms for 128 on one core) is little next to a CPU step but about
as long as a GPU one: ``draw_workers`` processes draw the batches ahead of the loop. Each batch is a
function of its step alone, so the weights are the same for any number of workers (which the
fingerprints leave out).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from eym.atomic import atomic_path, write_json
from eym.errors import InputError

from . import BUILD_DIR, DATA_DIR, LOG_DIR
from .batches import AheadOfTheLoop, BatchDraw
from .data import load_set
from .runs import RUNS_LOG, TRAINING_STATE, continue_from, device_name, start_from, write_runs
from .tokenizer import mini_tokenizer
from .training import EMA, Phase, autocast, budget_minutes, fingerprint, lr_at, resolve_device
from .vae import to_tensor

log = logging.getLogger("eym")

# Stable Diffusion 1.5's noise schedule (its scheduler_config.json).
SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def build_text_encoder(p: dict, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=int(p["hidden_size"]),
            intermediate_size=int(p["intermediate_size"]),
            num_attention_heads=int(p["heads"]),
            num_hidden_layers=int(p["layers"]),
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def build_unet(p: dict, text_dim: int, sample_size: int, latent_channels: int):
    from diffusers import UNet2DConditionModel

    channels = tuple(int(c) for c in p["block_out_channels"])
    levels = len(channels)
    with_attention = [i < levels - 1 for i in range(levels)]  # the coarsest level has none, as in SD
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        layers_per_block=int(p["layers_per_block"]),
        block_out_channels=channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in with_attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(with_attention)),
        cross_attention_dim=text_dim,
        attention_head_dim=int(p["heads"]),
        norm_num_groups=int(p["norm_num_groups"]),
    )


def build_controlnet(unet):
    """An OpenPose ControlNet shaped like SD's: a copy of the UNet's encoder with zero convolutions."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256))


def load_vae(root: Path):
    from diffusers import AutoencoderKL

    folder = root / BUILD_DIR / "vae"
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: the VAE is missing (run `dvc repro eym_mini_vae` first)")
    return AutoencoderKL.from_pretrained(folder).eval().requires_grad_(False)


@torch.no_grad()
def encode_latents(vae, frames, masks, rows: np.ndarray, masked: bool, device: str, precision: str):
    """Posterior means and stds of frames ``rows`` (background-masked if ``masked``), as float16."""
    means, stds = [], []
    for start in range(0, len(rows), 64):
        part = rows[start : start + 64]
        images = frames[part] * (masks[part][..., None] if masked else 1)
        with autocast(device, precision):
            posterior = vae.encode(to_tensor(images).to(device)).latent_dist
        means.append(posterior.mean.float().cpu().half())
        stds.append(posterior.std.float().cpu().half())
    return torch.cat(means), torch.cat(stds)


def latent_table(vae, train_set, p: dict, seed: int, root: Path, device: str, precision: str, vae_print: str):
    """Latents of every training frame plus background-masked copies of a fixed subset, cached on disk.

    Returns (means, stds, frame row of each latent)."""
    cache = root / BUILD_DIR / "latents.pt"
    if cache.is_file():
        payload = torch.load(cache, weights_only=False)
        if payload.get("fingerprint") == vae_print:
            return payload["mean"], payload["std"], payload["rows"]
    rng = np.random.default_rng([seed, 7])
    everything = np.arange(len(train_set))
    subset = np.sort(rng.choice(everything, int(len(everything) * float(p["masked_fraction"])), replace=False))
    log.info("eym-mini diffusion: encoding %d frames (+%d masked) with the VAE", len(everything), len(subset))
    parts = [
        encode_latents(vae, train_set.frames, train_set.masks, rows, masked, device, precision)
        for rows, masked in ((everything, False), (subset, True))
        if len(rows)
    ]  # a tiny set may mask none
    payload = {
        "fingerprint": vae_print,
        "mean": torch.cat([mean for mean, _ in parts]),
        "std": torch.cat([std for _, std in parts]),
        "rows": np.concatenate([everything, subset]),
    }
    with atomic_path(cache) as tmp:
        torch.save(payload, tmp)
    return payload["mean"], payload["std"], payload["rows"]


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR, gamma) / SNR for epsilon prediction (Hang et al. 2023); 1 everywhere when gamma is 0."""
    if not gamma:
        return torch.ones(len(timesteps))
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def train(params: dict, root: Path = Path(".")) -> dict:
    from diffusers import DDPMScheduler

    mini = params["eym_mini"]
    p = mini["diffusion"]
    device, precision = resolve_device(mini["device"]), str(p["precision"])
    seed, size = int(mini["seed"]), int(mini["data"]["size"])
    train_set = load_set(root / DATA_DIR / "train")
    vae = load_vae(root).to(device)
    vae_print = fingerprint(mini["seed"], mini["data"], mini["vae"])
    means, stds, latent_rows = latent_table(vae, train_set, p, seed, root, device, precision, vae_print)
    scaling = float(vae.config.scaling_factor)
    tokenizer = mini_tokenizer()
    prompt_ids = tokenizer(
        train_set.prompts + [""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    empty_prompt = len(train_set.prompts)

    modules = _networks(p, tokenizer, means.shape, seed, device)
    text_encoder, unet, controlnet = modules["text_encoder"], modules["unet"], modules["controlnet"]
    out_dir, config = root / BUILD_DIR / "diffusion", fingerprint(vae_print, p)
    architecture = fingerprint(vae_print, p["text_encoder"], p["unet"])
    earlier = continue_from(out_dir, architecture, config, modules, int(p["steps"]))
    if not earlier["steps"] and p["start_from"]:
        earlier = start_from(root / p["start_from"], modules, vae)
        if earlier["steps"] >= int(p["steps"]):
            raise InputError(f"eym_mini.diffusion.steps must exceed the {earlier['steps']} steps of start_from")
    phase = _phase(p, mini, root, config, modules, earlier)
    scheduler = DDPMScheduler.from_config(SD_SCHEDULE)
    batch, gamma = int(p["batch"]), float(p["min_snr_gamma"])
    batches = AheadOfTheLoop(_batch_draw(p, train_set, latent_rows, seed, size), int(p["draw_workers"]))

    def step(i: int) -> torch.Tensor:
        pick, dropped, images = batches(i)
        frames = latent_rows[pick]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        noise = torch.randn(batch, *means.shape[1:], generator=generator)
        latents = (means[pick].float() + stds[pick].float() * noise) * scaling
        eps = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
        noisy = scheduler.add_noise(latents, eps, t)
        ids = prompt_ids[np.where(dropped, empty_prompt, frames)]
        skeletons = None
        if images is not None:
            skeletons = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(255)
        noisy, t, eps = noisy.to(device), t.to(device), eps.to(device)
        with autocast(device, precision):
            text = text_encoder(ids.to(device))[0]
            down = mid = None
            if skeletons is not None:
                down, mid = controlnet(noisy, t, text, controlnet_cond=skeletons, return_dict=False)
            pred = unet(noisy, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        per_sample = (pred.float() - eps).pow(2).flatten(1).mean(1)
        return (per_sample * min_snr_weights(scheduler, t.cpu(), gamma).to(device)).mean()

    try:
        phase.run(step, _learning_rate(p, earlier, phase.steps))
    finally:
        batches.close()
    runs = _runs(earlier, phase, batch, device)
    with atomic_path(out_dir) as out:
        for name, module in phase.ema.shadow.items():
            module.to("cpu").save_pretrained(out / name)
        tokenizer.save_pretrained(out / "tokenizer")
        state = {"architecture": architecture, "config": config, "steps": phase.steps, "seconds": phase.seconds}
        state["schedule_start"] = earlier["schedule_start"]
        state["runs"] = runs
        write_json(out / TRAINING_STATE, {**state, "log": phase.log_rows})
    phase.write_log(root / LOG_DIR / "diffusion_loss.tsv")
    write_runs(root / LOG_DIR / RUNS_LOG, runs)
    phase.finish()
    count = {name: sum(q.numel() for q in m.parameters()) for name, m in modules.items()}
    final = float(np.mean([r["loss"] for r in phase.log_rows[-100:]]))
    log.info("eym-mini diffusion: final loss %.4f (mean of the last 100 steps); parameters %s", final, count)
    return {"final_loss": final, "parameters": count, "steps": phase.steps, "train_seconds": phase.seconds}


def _networks(p: dict, tokenizer, latent_shape, seed: int, device) -> dict:
    """The text encoder, UNet and ControlNet in training mode, drawn from ``seed``."""
    torch.manual_seed(seed)
    text_encoder = build_text_encoder(p["text_encoder"], tokenizer).to(device).train()
    unet = build_unet(p["unet"], int(p["text_encoder"]["hidden_size"]), latent_shape[-1], latent_shape[1]).to(device)
    controlnet = build_controlnet(unet).to(device)
    return {"text_encoder": text_encoder, "unet": unet.train(), "controlnet": controlnet.train()}


def _phase(p: dict, mini: dict, root: Path, config: str, modules: dict, earlier: dict) -> Phase:
    """The training phase (optimizer, EMA, checkpoints, time budget), at the step ``earlier`` reached
    and resumed from its checkpoint if there is one."""
    trainable = [q for m in modules.values() for q in m.parameters()]
    optimizer = torch.optim.AdamW(trainable, lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    phase = Phase(
        "diffusion",
        root / BUILD_DIR / "diffusion.ckpt",
        int(p["steps"]),
        int(p["checkpoint_every"]),
        config,
        modules,
        optimizer,
        EMA(modules, float(p["ema"])),
        budget_minutes(mini),
    )
    phase.step, phase.seconds, phase.log_rows = earlier["steps"], earlier["seconds"], earlier["log"]
    phase.resume()
    return phase


def _batch_draw(p: dict, train_set, latent_rows, seed: int, size: int) -> BatchDraw:
    return BatchDraw(
        train_set.keypoints,
        latent_rows,
        seed,
        int(p["batch"]),
        size,
        float(p["prompt_dropout"]),
        float(p["controlnet_dropout"]),
        float(p["skeleton_drop"]),
        float(p["skeleton_jitter"]),
    )


def _learning_rate(p: dict, earlier: dict, total: int):
    """Step -> learning rate: warm-up then decay over the whole schedule; a run going on from earlier
    steps warms its fresh optimizer up again."""
    start, first, warmup = earlier["steps"], earlier["schedule_start"], int(p["warmup"])

    def learning_rate(i: int) -> float:
        rewarm = min(1.0, (i - start + 1) / warmup) if start > first and warmup else 1.0
        return rewarm * lr_at(i - first, total - first, float(p["lr"]), warmup, float(p["final_lr_fraction"]))

    return learning_rate


def _runs(earlier: dict, phase: Phase, batch: int, device) -> list[dict]:
    """The training runs so far: the earlier ones and what this one added (steps, batch, machine, time)."""
    runs = list(earlier["runs"])
    if phase.steps > earlier["steps"]:
        seconds = round(phase.seconds - earlier["seconds"], 1)
        runs.append(
            {
                "first_step": earlier["steps"] + 1,
                "last_step": phase.steps,
                "batch": batch,
                "device": device_name(device),
                "seconds": seconds,
            }
        )
    return runs
