"""The one-shot tuning loop shared by stage-1 and stage-2 tuning (spatio-temporal two-stage learning).

Trains the parameter groups of its params section on one clip: epsilon-prediction MSE with
ControlNet fed the source skeletons, AdamW, gradient clipping, autocast in the model's precision.
The clip's VAE posterior and prompt embedding are computed once. Writes ``<stage>/weights.safetensors``
(only the trained tensors), ``<stage>/loss.tsv`` (step, loss, lr, seconds: a DVC plot) and
``<stage>/meta.json``.

Checkpoints (trainable weights, optimizer, random state, loss log) go to ``<stage>.ckpt/`` every
``checkpoint_every`` steps, atomically. A rerun after an interruption resumes from the last one when
its fingerprint (parameters and input files) matches, and ends with the same weights as an
uninterrupted run. A NaN or infinite loss stops the stage with an error and saves nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from eym import interrupt
from eym.atomic import atomic_path, write_json, write_text
from eym.errors import InputError, TrainingError
from eym.media import read_frames
from eym.progress import Progress
from eym_model.components import Components, load_components
from eym_model.diffusion import encode_prompts, prompt_warnings, training_loss, video_posterior
from eym_model.trainable import load_trainable, make_optimizer, save_trainable, set_trainable

from .common import FRAMES, MASKS, POSE, log, section

PARAMS = (
    "enabled",
    "steps",
    "trainable",
    "masked",
    "lr",
    "weight_decay",
    "adam_betas",
    "adam_epsilon",
    "max_grad_norm",
    "seed",
    "checkpoint_every",
    "use_8bit_adam",
    "conditioning_scale",
    "save_dtype",
)
WEIGHTS, LOSS_LOG, META = "weights.safetensors", "loss.tsv", "meta.json"
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (frames, H, W, 3) -> float (1, 3, frames, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def skeleton_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 skeleton images -> float (1, 3, frames, H, W) in [0, 1], as ControlNet expects."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255


def load_stage_weights(components: Components, case_dir: Path, stages: tuple[str, ...]) -> None:
    """Load earlier stages' trained weights in order (later files override shared tensors)."""
    for stage in stages:
        names = load_trainable(components.model, Path(case_dir) / stage / WEIGHTS)
        log.info("loaded %d trained tensors from %s", len(names), stage)


def check_size(components: Components, frames: np.ndarray, where: Path) -> None:
    factor = components.latent_factor()
    height, width = frames.shape[1:3]
    if height % factor or width % factor:
        raise InputError(
            f"{where}: frames are {width}x{height}, but this model needs sides divisible by {factor}; "
            f"set frames.width/height to multiples of {factor}"
        )


def noise_seed(stage: str, seed: int) -> int:
    """The seed of a tuning stage's noise and timestep stream: derived from the stage's name and its
    ``seed`` parameter, so that stage 2 does not replay stage 1's sequence when both use seed 33."""
    return int.from_bytes(hashlib.sha256(f"{stage}:{seed}".encode()).digest()[:8], "little") & (2**63 - 1)


def fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for file in sorted(part.rglob("*")) if part.is_dir() else [part]:
                if file.is_file():
                    digest.update(file.name.encode())
                    digest.update(file.read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def train(case_dir: Path, params: dict, stage: str, previous: tuple[str, ...] = ()) -> dict:
    """Tune the ``params[stage]`` groups on the case's clip, starting from the ``previous`` stages' weights."""
    case_dir = Path(case_dir)
    p = section(params, stage, PARAMS)
    model_params = section(params, "model", ("base", "controlnet"))
    out_dir = case_dir / stage
    if p["save_dtype"] not in SAVE_DTYPES:
        raise InputError(f"params: {stage}.save_dtype must be one of {sorted(SAVE_DTYPES)}, not {p['save_dtype']!r}")
    if not p["enabled"]:
        return _write_skipped(out_dir, stage)
    frames_dir = case_dir / (MASKS + "/masked" if p["masked"] else FRAMES + "/source")
    skeleton_dir = case_dir / POSE / "source_skeleton"
    prompt = str(params.get("prompt") or "")
    inputs = [frames_dir, skeleton_dir] + [case_dir / s / WEIGHTS for s in previous]
    print_ = fingerprint(p, model_params, prompt, *inputs)
    ckpt_dir = case_dir / f"{stage}.ckpt"

    components = load_components(model_params)
    model = components.model
    load_stage_weights(components, case_dir, previous)
    frames = read_frames(frames_dir)
    check_size(components, frames, frames_dir)
    skeleton_frames = read_frames(skeleton_dir)
    if len(skeleton_frames) != len(frames):
        raise InputError(f"{skeleton_dir}: {len(skeleton_frames)} skeleton images for {len(frames)} frames")
    groups = list(p["trainable"])
    if model.motion_attention is None and "motion_attention" in groups:
        groups.remove("motion_attention")  # "w/o MA": the switch in model.motion_attention is enough
        log.info("%s: motion attention is off, so it is not trained", stage)
    if not groups:
        raise InputError(f"params: {stage}.trainable leaves nothing to train")
    trainable = set_trainable(model, groups)
    for param in trainable.values():
        param.data = param.data.float()  # fp32 master weights under fp16/bf16 autocast
    model.train()

    device = components.device
    posterior = video_posterior(components.base.vae, video_tensor(frames), int(model_params.get("vae_chunk", 8)))
    text = encode_prompts(components.base.tokenizer, components.base.text_encoder, [prompt])
    skeletons = skeleton_tensor(skeleton_frames).to(device, components.dtype)
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(components.base.scheduler_config)
    optimizer = make_optimizer(
        trainable.values(),
        float(p["lr"]),
        float(p["weight_decay"]),
        tuple(p["adam_betas"]),
        float(p["adam_epsilon"]),
        bool(p["use_8bit_adam"]),
    )
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=components.dtype == torch.float16)
    generator = torch.Generator(device).manual_seed(noise_seed(stage, int(p["seed"])))
    state = {"step": 0, "log": [], "seconds": 0.0}
    resumed = _resume(ckpt_dir, print_, trainable, optimizer, scaler, generator, state)

    steps, every = int(p["steps"]), max(1, int(p["checkpoint_every"]))
    count = sum(t.numel() for t in trainable.values())
    log.info(
        "%s: training %.2f M parameters (%s) for %d steps%s",
        stage,
        count / 1e6,
        ", ".join(groups),
        steps,
        f", resuming after step {state['step']}" if resumed else "",
    )
    bar = Progress(steps, f"{stage} tuning", initial=state["step"], unit="step")
    with interrupt.deferred():  # a signal stops the loop at a step boundary, after a checkpoint
        while state["step"] < steps:
            if interrupt.requested():
                _checkpoint(ckpt_dir, print_, trainable, optimizer, scaler, generator, state)
                bar.close()
                raise interrupt.Interrupted(
                    f"at step {state['step']} of {steps}; its checkpoint is saved and the same command resumes "
                    f"from step {state['step']}",
                    interrupt.requested(),
                )
            started = time.perf_counter()
            conditioning = float(p["conditioning_scale"])
            loss = _step(components, posterior, text, skeletons, noise_scheduler, generator, conditioning)
            if not math.isfinite(loss.item()):
                bar.close()
                raise TrainingError(
                    f"{stage}: the loss became {loss.item()} at step {state['step'] + 1}; nothing was "
                    f"saved. Lower {stage}.lr (now {p['lr']}) or use model.precision: fp32."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable.values(), float(p["max_grad_norm"]))
            scaler.step(optimizer)
            scaler.update()
            state["step"] += 1
            state["seconds"] += time.perf_counter() - started
            state["log"].append((state["step"], loss.item(), float(p["lr"]), round(state["seconds"], 3)))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update()
            if state["step"] % every == 0 and state["step"] < steps:
                _checkpoint(ckpt_dir, print_, trainable, optimizer, scaler, generator, state)
    bar.close()

    meta = {
        "stage": stage,
        "steps": steps,
        "trainable_groups": groups,
        "trainable_parameters": count,
        "final_loss": state["log"][-1][1] if state["log"] else None,
        "train_seconds": round(state["seconds"], 2),
        "resumed_after_step": resumed,
        "prompt": prompt,
        "masked_frames": bool(p["masked"]),
        "warnings": prompt_warnings(components.base.tokenizer, [prompt]),
    }
    with atomic_path(out_dir) as out:
        out.mkdir()
        save_trainable(model, out / WEIGHTS, groups, SAVE_DTYPES[p["save_dtype"]], {"stage": stage})
        write_text(out / LOSS_LOG, _loss_table(state["log"]))
        write_json(out / META, meta)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info(
        "%s: final loss %.4f after %d steps (%.1f s of training)",
        stage,
        meta["final_loss"] or float("nan"),
        steps,
        state["seconds"],
    )
    return meta


def _step(components, posterior, text, skeletons, noise_scheduler, generator, conditioning_scale):
    """One loss evaluation: a fresh posterior sample of the clip, noised at a random timestep."""
    mean, std = posterior
    noise = torch.randn(mean.shape, generator=generator, device=components.device)
    latents = (mean.float() + std.float() * noise) * components.base.vae.config.scaling_factor
    with components.autocast():
        return training_loss(components.model, noise_scheduler, latents, text, skeletons, conditioning_scale, generator)


def _loss_table(rows) -> str:
    return "step\tloss\tlr\tseconds\n" + "".join(f"{s}\t{loss:.6f}\t{lr:g}\t{sec}\n" for s, loss, lr, sec in rows)


def _checkpoint(ckpt_dir: Path, print_: str, trainable, optimizer, scaler, generator, state) -> None:
    payload = {
        "fingerprint": print_,
        "state": state,
        "weights": {n: p.detach().cpu() for n, p in trainable.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_path(ckpt_dir) as tmp:
        tmp.mkdir()
        torch.save(payload, tmp / "checkpoint.pt")


def _resume(ckpt_dir: Path, print_: str, trainable, optimizer, scaler, generator, state) -> int:
    file = ckpt_dir / "checkpoint.pt"
    if not file.is_file():
        return 0
    payload = torch.load(file, map_location="cpu", weights_only=False)
    if payload.get("fingerprint") != print_:
        log.warning("ignoring checkpoint %s: it was made with other parameters or inputs", ckpt_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return 0
    with torch.no_grad():
        for name, tensor in payload["weights"].items():
            trainable[name].copy_(tensor)
    optimizer.load_state_dict(payload["optimizer"])
    scaler.load_state_dict(payload["scaler"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    state.update(payload["state"])
    state["log"] = [tuple(row) for row in state["log"]]
    return state["step"]


def _write_skipped(out_dir: Path, stage: str) -> dict:
    """A disabled stage still writes its declared outputs: no weights, an empty loss log."""
    from safetensors.torch import save_file

    meta = {"stage": stage, "skipped": True, "steps": 0}
    with atomic_path(out_dir) as out:
        out.mkdir()
        save_file({}, str(out / WEIGHTS), metadata={"stage": stage, "skipped": "true"})
        write_text(out / LOSS_LOG, _loss_table([]))
        write_json(out / META, meta)
    log.info("%s: disabled (%s.enabled: false), wrote empty outputs", stage, stage)
    return meta
