"""Video latents in and out of the VAE, prompt embeddings, the training loss, DDIM inversion and sampling.

Schedulers are diffusers' own (DDIMScheduler, DDIMInverseScheduler, DDPMScheduler), built from
the base model's scheduler config. Videos are (batch, 3, frames, H, W) in [-1, 1]; latents are
(batch, 4, frames, H/8, W/8), already multiplied by the VAE's scaling factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eym.progress import track


@torch.no_grad()
def video_posterior(vae, video: torch.Tensor, chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the VAE posterior for (batch, 3, frames, H, W) video, ``chunk`` frames at a
    time (VAE slicing); unscaled, shaped (batch, 4, frames, h, w)."""
    batch, _, frames = video.shape[:3]
    flat = video.transpose(1, 2).flatten(0, 1).to(vae.device, vae.dtype)
    parts = [vae.encode(piece).latent_dist for piece in flat.split(chunk)]
    mean, std = torch.cat([d.mean for d in parts]), torch.cat([d.std for d in parts])
    return tuple(t.reshape(batch, frames, *t.shape[1:]).transpose(1, 2) for t in (mean, std))


def encode_video(
    vae, video: torch.Tensor, chunk: int = 8, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scaled latents of a video: the posterior mean, or a sample from it."""
    mean, std = video_posterior(vae, video, chunk)
    if sample:
        mean = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean * vae.config.scaling_factor


@torch.no_grad()
def decode_video(vae, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Latents -> frames in [-1, 1], ``chunk`` frames at a time."""
    batch, _, frames = latents.shape[:3]
    flat = latents.transpose(1, 2).flatten(0, 1).to(vae.device, vae.dtype) / vae.config.scaling_factor
    video = torch.cat([vae.decode(piece).sample for piece in flat.split(chunk)]).clamp(-1, 1)
    return video.reshape(batch, frames, *video.shape[1:]).transpose(1, 2)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def prompt_warnings(tokenizer, prompts: list[str]) -> list[str]:
    """Warnings for prompts longer than the text encoder reads (they are cut, silently otherwise)."""
    out = []
    for prompt in prompts:
        count = len(tokenizer(prompt, truncation=False).input_ids)
        if count > tokenizer.model_max_length:
            kept = tokenizer.decode(
                tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids,
                skip_special_tokens=True,
            )
            out.append(
                f"the prompt has {count} tokens, but the text encoder reads {tokenizer.model_max_length}: everything "
                f"after '...{kept[-40:]}' is ignored"
            )
    return out


def training_loss(
    model,
    noise_scheduler,
    latents: torch.Tensor,
    text: torch.Tensor,
    skeletons=None,
    conditioning_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Epsilon-prediction MSE at a random timestep, one timestep per video (peers' objective)."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    t = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator, device=latents.device
    )
    noisy = noise_scheduler.add_noise(latents, noise, t)
    pred = model(noisy, t, text, skeletons, conditioning_scale)
    target = (
        noise
        if noise_scheduler.config.prediction_type == "epsilon"
        else noise_scheduler.get_velocity(latents, noise, t)
    )
    return F.mse_loss(pred.float(), target.float())


def _predict(model, latents, t, text, skeletons, conditioning_scale, guidance_scale, uncond):
    if guidance_scale == 1.0 or uncond is None:
        return model(latents, t, text, skeletons, conditioning_scale)
    both = model(
        torch.cat([latents, latents]),
        t,
        torch.cat([uncond, text]),
        None if skeletons is None else torch.cat([skeletons, skeletons]),
        conditioning_scale,
    )
    eps_uncond, eps_text = both.chunk(2)
    return eps_uncond + guidance_scale * (eps_text - eps_uncond)


def loop_name(task: str, model, latents: torch.Tensor) -> str:
    """A DDIM loop's name in its progress and log; a long clip's says how many windows each step predicts."""
    windows = model.windows(latents.shape[2]) if hasattr(model, "windows") else 1
    return f"{task} in {windows} windows" if windows > 1 else task


@torch.no_grad()
def ddim_invert(
    model,
    latents: torch.Tensor,
    text: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int = 50,
    skeletons=None,
    conditioning_scale: float = 1.0,
    progress: bool = True,
    on_step=None,
) -> torch.Tensor:
    """Run DDIM backwards from clean latents to the noise that DDIM sampling maps back to them;
    ``on_step(t, x)`` sees the latents at each timestep ``t`` reached (the inversion's trajectory)."""
    from diffusers import DDIMInverseScheduler

    scheduler = DDIMInverseScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps, device=latents.device)
    x = latents
    name = loop_name("DDIM inversion", model, latents)
    for t in track(scheduler.timesteps, len(scheduler.timesteps), name, enabled=progress):
        eps = model(x, t, text, skeletons, conditioning_scale)
        x = scheduler.step(eps, t, x).prev_sample
        if on_step is not None:
            on_step(int(t), x)
    return x


@torch.no_grad()
def ddim_sample(
    model,
    noise: torch.Tensor,
    text: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int = 50,
    skeletons=None,
    conditioning_scale: float = 1.0,
    guidance_scale: float = 1.0,
    uncond: torch.Tensor | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    on_step=None,
) -> torch.Tensor:
    """DDIM sampling from ``noise`` (e.g. inverted latents); guidance_scale 1 means no guidance.
    ``on_step(index, t_next, x)`` may replace the latents after each step (``t_next``: the timestep they
    are at, -1 when clean), as background preservation does."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise
    timesteps = [int(t) for t in scheduler.timesteps] + [-1]
    name = loop_name("DDIM sampling", model, noise)
    for i, t in enumerate(track(scheduler.timesteps, len(scheduler.timesteps), name, enabled=progress)):
        eps = _predict(model, x, t, text, skeletons, conditioning_scale, guidance_scale, uncond)
        x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
        if on_step is not None:
            x = on_step(i, timesteps[i + 1], x)
    return x
