"""EditYourMotionPipeline: the method in Python, used as a diffusers pipeline is: load the base model
and ControlNet once, tune on the source clip (stage 1, then stage 2), invert it, and sample it in the
reference's motion. Frames are uint8 arrays (frames, H, W, 3); skeletons are the pose stage's images.

    pipe = EditYourMotionPipeline.from_pretrained("models/eym-mini/base", controlnet="models/eym-mini/controlnet")
    pipe.tune(masked_frames, skeletons=source_skeletons, prompt=source_prompt, stage="stage1")
    pipe.tune(frames, skeletons=source_skeletons, prompt=source_prompt, stage="stage2")
    noise = pipe.invert(frames)
    edited = pipe(noise=noise, reference_skeletons=aligned_skeletons, prompt="a person raising both arms")

Settings are keyword arguments named as in params.yaml's sections (``steps=``, ``lr=``,
``guidance_scale=``, ...); what is left out takes the schema's default. The tuning, inversion and
sampling stages are file-handling around these methods, so the same inputs and seeds give the same frames.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from eym.errors import InputError, TrainingError
from eym.parameters import typed_section
from eym.schema import Tuning

from .components import Components, load_components
from .diffusion import (
    ddim_invert,
    ddim_sample,
    decode_video,
    encode_prompts,
    encode_video,
    training_loss,
    video_posterior,
)
from .preserve import KeepSource, composite, latent_region, noised_trajectory
from .trainable import load_trainable, make_optimizer, set_trainable
from .windows import Windowed


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (frames, H, W, 3) -> float (1, 3, frames, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def skeleton_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 skeleton images -> float (1, 3, frames, H, W) in [0, 1], as ControlNet expects."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255


def windowed(model, window: dict | None) -> Windowed:
    """The model on clips of any length, in the windows params.yaml's ``window`` section sets."""
    w = typed_section("window", window or {})
    return Windowed(model, int(w.frames), int(w.overlap))


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, frames, H, W) in [-1, 1] -> uint8 (frames, H, W, 3)."""
    return ((video[0].permute(1, 2, 3, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def noise_seed(stage: str, seed: int) -> int:
    """The seed of a tuning stage's noise and timestep stream: derived from the stage's name and its
    ``seed`` parameter, so that stage 2 does not replay stage 1's sequence when both use seed 33."""
    return int.from_bytes(hashlib.sha256(f"{stage}:{seed}".encode()).digest()[:8], "little") & (2**63 - 1)


class TuningRun:
    """One tuning stage on one clip, a step at a time (so that a caller can checkpoint, report progress
    or stop between steps): the trained groups unfrozen, the clip's posterior and prompt computed once."""

    def __init__(
        self, components: Components, frames, skeletons, prompt: str, stage: str, p: Tuning, groups, window: int
    ):
        from diffusers import DDPMScheduler

        self.components, self.stage, self.p, self.groups = components, stage, p, groups
        self.trainable = set_trainable(components.model, groups)
        for param in self.trainable.values():
            param.data = param.data.float()  # fp32 master weights under fp16/bf16 autocast
        components.model.train()
        device = components.device
        self.posterior = video_posterior(components.base.vae, video_tensor(frames), components.vae_chunk)
        self.text = encode_prompts(components.base.tokenizer, components.base.text_encoder, [prompt])
        # a clip longer than ``window`` frames: each step trains on ``window`` consecutive frames of it,
        # drawn from the stage's own generator (so a resumed run draws the same ones)
        self.window = min(window, len(frames))
        self.skeletons = skeleton_tensor(skeletons)
        if not self.windowed:  # the whole clip at every step: on the device once
            self.skeletons = self.skeletons.to(device, components.dtype)
        self.noise_scheduler = DDPMScheduler.from_config(components.base.scheduler_config)
        self.optimizer = make_optimizer(
            self.trainable.values(),
            float(p.lr),
            float(p.weight_decay),
            tuple(p.adam_betas),
            float(p.adam_epsilon),
            bool(p.use_8bit_adam),
        )
        self.scaler = torch.amp.GradScaler(device.split(":")[0], enabled=components.dtype == torch.float16)
        self.generator = torch.Generator(device).manual_seed(noise_seed(stage, int(p.seed)))
        self.steps_done = 0  # a caller that resumes from a checkpoint sets it

    @property
    def windowed(self) -> bool:
        """Whether each step trains on a window of the clip (a clip longer than window.frames)."""
        return self.window < self.posterior[0].shape[2]

    @property
    def parameter_count(self) -> int:
        return sum(t.numel() for t in self.trainable.values())

    def step(self) -> float:
        """One optimizer step on a fresh posterior sample of the clip, noised at a random timestep."""
        c = self.components
        mean, std = self.posterior
        skeletons = self.skeletons
        if self.windowed:
            start = int(
                torch.randint(0, mean.shape[2] - self.window + 1, (1,), generator=self.generator, device=c.device)
            )
            part = slice(start, start + self.window)
            mean, std, skeletons = mean[:, :, part], std[:, :, part], skeletons[:, :, part].to(c.device, c.dtype)
        noise = torch.randn(mean.shape, generator=self.generator, device=c.device)
        latents = (mean.float() + std.float() * noise) * c.base.vae.config.scaling_factor
        with c.autocast():
            loss = training_loss(
                c.model,
                self.noise_scheduler,
                latents,
                self.text,
                skeletons,
                float(self.p.conditioning_scale),
                self.generator,
            )
        if not math.isfinite(loss.item()):
            raise TrainingError(
                f"{self.stage}: the loss became {loss.item()} at step {self.steps_done + 1}; nothing was saved. "
                f"Lower {self.stage}.lr (now {self.p.lr}) or use model.precision: fp32."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), float(self.p.max_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.steps_done += 1
        return loss.item()

    STATE = ("weights", "optimizer", "scaler", "generator", "torch_rng")  # what state_dict holds

    def state_dict(self) -> dict:
        return {
            "weights": {n: p.detach().cpu() for n, p in self.trainable.items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, tensor in state["weights"].items():
                self.trainable[name].copy_(tensor)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])


class EditYourMotionPipeline:
    """Edit-Your-Motion on one source clip: ``tune`` (stage 1, stage 2), ``invert``, then call it."""

    def __init__(self, components: Components):
        self.components = components

    @classmethod
    def from_pretrained(cls, base: str, *, controlnet: str, **model) -> "EditYourMotionPipeline":
        """A base model (hub id or folder, Stable Diffusion 1.5's layout) and an OpenPose ControlNet;
        ``model``: the rest of params.yaml's ``model`` section (``spatial_attention=``, ``device=``, ...)."""
        return cls(load_components({**model, "base": str(base), "controlnet": str(controlnet)}))

    def load_tuned(self, *files) -> list[str]:
        """Load tuned weights written by the tuning stages (``<stage>/weights.safetensors``), in order."""
        return [name for file in files for name in load_trainable(self.components.model, file)]

    def check_size(self, frames: np.ndarray, where: str = "the frames") -> None:
        factor = self.components.latent_factor()
        height, width = frames.shape[1:3]
        if height % factor or width % factor:
            raise InputError(
                f"{where}: frames are {width}x{height}, but this model needs sides divisible by {factor}; "
                f"set frames.width/height to multiples of {factor}"
            )

    def tuning(self, frames, *, skeletons, prompt: str, stage: str = "stage1", window=None, **settings) -> TuningRun:
        """A tuning run of ``stage``'s parameter groups (``settings``: params.yaml's ``stage1``/``stage2``
        keys; ``window``: its ``window`` keys, a longer clip trains on a window a step), to step by hand;
        ``tune`` runs it to the end."""
        p = typed_section(stage, settings)
        self.check_size(frames)
        if len(skeletons) != len(frames):
            raise InputError(f"{len(skeletons)} skeleton images for {len(frames)} frames")
        groups = list(p.trainable)
        if self.components.model.motion_attention is None and "motion_attention" in groups:
            groups.remove("motion_attention")  # "w/o MA": the switch in model.motion_attention is enough
        if not groups:
            raise InputError(f"params: {stage}.trainable leaves nothing to train")
        window_frames = int(typed_section("window", window or {}).frames)
        return TuningRun(self.components, frames, skeletons, prompt, stage, p, groups, window_frames)

    def tune(self, frames, *, skeletons, prompt: str, stage: str = "stage1", window=None, **settings) -> list[float]:
        """Tune on the source clip (stage 1: background-masked frames; stage 2: full frames); the loss of each step."""
        run = self.tuning(frames, skeletons=skeletons, prompt=prompt, stage=stage, window=window, **settings)
        return [run.step() for _ in range(int(run.p.steps))]

    def invert(
        self, frames, *, prompt: str = "", skeletons=None, steps: int | None = None, trajectory=None, window=None
    ):
        """The noise that DDIM sampling maps back to ``frames`` (the peers: empty prompt, UNet only;
        ``skeletons`` also feeds them through ControlNet); ``steps``: inversion.steps by default. A dict
        ``trajectory`` receives the latents at every timestep (-1: clean), for ``sampling.preserve``;
        ``window``: params.yaml's ``window`` keys (a longer clip goes in overlapping windows)."""
        latents = self.encode(frames)
        return self.invert_latents(
            latents, prompt=prompt, skeletons=skeletons, steps=steps, trajectory=trajectory, window=window
        )

    def invert_latents(
        self, latents, *, prompt: str = "", skeletons=None, steps: int | None = None, trajectory=None, window=None
    ):
        c = self.components
        steps = steps or typed_section("inversion").steps
        text, conditioning = self._text(prompt), self._skeletons(skeletons)
        keep = None
        if trajectory is not None:
            trajectory[-1] = latents.float().cpu()
            keep = lambda t, x: trajectory.__setitem__(t, x.half().cpu())  # noqa: E731 (fp16: half the size)
        with c.autocast():
            noise = ddim_invert(
                windowed(c.model.eval(), window),
                latents,
                text,
                c.base.scheduler_config,
                steps=steps,
                skeletons=conditioning,
                on_step=keep,
            )
        return noise.float().contiguous()  # the layout a saved and reloaded noise has: the same sampling, bit for bit

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """The clip's VAE latents (its posterior's mean), float."""
        self.check_size(frames)
        return encode_video(self.components.base.vae, video_tensor(frames), self.components.vae_chunk).float()

    def decode_tensor(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents decoded to a video (1, 3, frames, H, W) in [-1, 1], on the CPU."""
        return decode_video(self.components.base.vae, latents.float(), self.components.vae_chunk).cpu()

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return to_frames(self.decode_tensor(latents))

    def __call__(
        self,
        *,
        reference_skeletons,
        prompt: str,
        noise: torch.Tensor | None = None,
        size=None,
        region: np.ndarray | None = None,
        source: np.ndarray | None = None,
        trajectory: dict | None = None,
        plate: tuple[np.ndarray, np.ndarray] | None = None,
        window: dict | None = None,
        **sampling,
    ) -> np.ndarray:
        """The edited frames: DDIM from ``noise`` (the source's inversion; fresh noise of ``size`` =
        (height, width) when None) with ControlNet fed ``reference_skeletons``; ``sampling``: params.yaml's
        ``sampling`` keys (``steps``, ``guidance_scale``, ``conditioning_scale``, ``eta``, ``seed``,
        ``preserve``, ...; ``preserve`` is ``none`` unless given). With ``preserve``, the source is kept
        outside ``region`` (frames, H, W) in [0, 1]: ``source`` is its frames, ``trajectory`` what
        ``invert(..., trajectory={})`` filled, ``plate`` (image, weights: eym.clean_plate.read_plate of
        ``offset/``) fills where the source person stood; ``window``: params.yaml's ``window`` keys (a
        longer clip is sampled in overlapping windows)."""
        # Keeping the source needs the offset stage's region: a call that does not ask keeps nothing
        sampling = {"preserve": "none", **sampling}
        p = typed_section("sampling", sampling)
        if p.preserve != "none" and (region is None or source is None):
            raise InputError(f"sampling.preserve: {p.preserve} needs region= and source= (the source's frames)")
        if "pixels" in p.preserve and p.vacated == "plate" and plate is None:
            raise InputError("sampling.vacated: plate needs plate= (eym.clean_plate.read_plate of offset/)")
        keep = self._keep_source(p, region, source, trajectory, noise) if "latent" in p.preserve else None
        latents = self.sample_latents(reference_skeletons, prompt, noise, size, keep=keep, window=window, **sampling)
        frames = self.decode(latents)
        if "pixels" not in p.preserve:
            return frames
        return composite(frames, source, region, plate if p.vacated == "plate" else None, p.unchanged)

    def _keep_source(self, p, region, source, trajectory, noise) -> KeepSource:
        if trajectory is None and noise is not None:
            raise InputError("sampling.preserve with given noise needs the trajectory= that invert() filled")
        if trajectory is None:
            trajectory = noised_trajectory(self.encode(source), self.components.base.scheduler_config, p.steps, p.seed)
        region = latent_region(region, 2 ** (len(self.components.base.vae.config.block_out_channels) - 1))
        return KeepSource(region, trajectory, int(round(p.preserve_steps * p.steps)))

    def sample_latents(
        self, reference_skeletons, prompt: str, noise=None, size=None, keep=None, window=None, **sampling
    ) -> torch.Tensor:
        c, p = self.components, typed_section("sampling", sampling)
        generator = torch.Generator(c.device).manual_seed(int(p.seed))
        if noise is None:
            factor = 2 ** (len(c.base.vae.config.block_out_channels) - 1)
            shape = (
                1,
                c.base.vae.config.latent_channels,
                len(reference_skeletons),
                size[0] // factor,
                size[1] // factor,
            )
            noise = torch.randn(shape, generator=generator, device=c.device)
        text, uncond = self._text(prompt), self._text(str(p.negative_prompt or ""))
        skeletons = self._skeletons(reference_skeletons)
        with c.autocast():  # the prompts are encoded outside it, at the text encoder's own precision
            return ddim_sample(
                windowed(c.model.eval(), window),
                noise.to(c.device),
                text,
                c.base.scheduler_config,
                steps=int(p.steps),
                skeletons=skeletons,
                conditioning_scale=float(p.conditioning_scale),
                guidance_scale=float(p.guidance_scale),
                uncond=uncond,
                eta=float(p.eta),
                generator=generator,
                on_step=keep,
            )

    def _text(self, prompt: str) -> torch.Tensor:
        return encode_prompts(self.components.base.tokenizer, self.components.base.text_encoder, [prompt])

    def _skeletons(self, frames):
        if frames is None:
            return None
        return skeleton_tensor(frames).to(self.components.device, self.components.dtype)
