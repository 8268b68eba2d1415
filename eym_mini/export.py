"""eym-mini's export phase: the diffusers folders, their evaluation on held-out frames, and the model card.

Writes ``build/eym-mini/release/base`` (Stable Diffusion 1.5's layout: vae, text_encoder, tokenizer,
unet, scheduler; weights in fp16) and ``release/controlnet``, then measures what would ship, loaded
back from those folders:

- the VAE's reconstruction PSNR on every held-out frame;
- whether ControlNet follows pose: diffusers' own ``StableDiffusionControlNetPipeline`` draws a
  frame from random noise for each of the first ``eval_frames`` held-out skeletons (with that
  frame's prompt), MediaPipe re-detects the pose (frames upscaled to ``detect_size`` and given a
  ``detect_margin`` border), and PCK@0.1 is taken against the conditioning skeleton; the same
  detector on the true held-out frames gives the ceiling, and the same detections against other
  frames' skeletons the chance level;
- a grid image (skeleton | generated | true frame), ``release/controlnet.png``.

Writes ``release/metrics.json`` and ``release/README.md`` (the model card). ``ship`` copies the
release into ``models/eym-mini`` (and the grid into ``docs/``).
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

from eym.atomic import atomic_path, write_json, write_text
from eym.errors import InputError
from eym.media import write_image
from eym.skeleton import draw_skeletons, pck
from eym_model.loading import WORLD_KEY

from . import BUILD_DIR, DATA_DIR, LOG_DIR, RELEASE_DIR
from .data import load_set
from .diffusion import SD_SCHEDULE
from .runs import TRAINING_STATE, read_tsv
from .training import resolve_device
from .vae import psnr, reconstruct, to_tensor

log = logging.getLogger("eym")
GRID_IMAGE = "controlnet.png"  # in the release


def assemble(root: Path) -> tuple[Path, Path]:
    """Write the base model and ControlNet folders from the phases' outputs (fp16 weights)."""
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    built = root / BUILD_DIR / "diffusion"
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(root / BUILD_DIR / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(built / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(built / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(built / "unet"),
        scheduler=DDIMScheduler.from_config(SD_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    base, controlnet = root / RELEASE_DIR / "base", root / RELEASE_DIR / "controlnet"
    with atomic_path(base) as tmp:
        pipe.to(torch.float16).save_pretrained(tmp)
        index = tmp / "model_index.json"  # the world it knows: edits of other footage are warned
        index.write_text(
            json.dumps({**json.loads(index.read_text()), WORLD_KEY: "puppet"}, indent=2, sort_keys=True) + "\n"
        )
    with atomic_path(controlnet) as tmp:
        ControlNetModel.from_pretrained(built / "controlnet").to(torch.float16).save_pretrained(tmp)
    return base, controlnet


def controlnet_pipeline(base: Path, controlnet: Path, device: str = "cpu"):
    """diffusers' own ``StableDiffusionControlNetPipeline`` on the two folders, as they are."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        base,
        controlnet=ControlNetModel.from_pretrained(controlnet, torch_dtype=torch.float32),
        torch_dtype=torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate_from_skeletons(base: Path, controlnet: Path, heldout, p: dict, device: str):
    """The first ``eval_frames`` held-out skeleton images and the frames diffusers' ControlNet pipeline
    draws from them with random noise and each frame's prompt, at the check's settings."""
    from PIL import Image

    pipe = controlnet_pipeline(base, controlnet, device)
    count, size = int(p["eval_frames"]), heldout.frames.shape[1]
    skeletons = draw_skeletons(heldout.keypoints[:count], size, size)
    generated = []
    for start in range(0, count, 16):
        part = slice(start, min(count, start + 16))
        out = pipe(
            prompt=heldout.prompts[part],
            image=[Image.fromarray(s) for s in skeletons[part]],
            num_inference_steps=int(p["eval_steps"]),
            guidance_scale=float(p["eval_guidance_scale"]),
            controlnet_conditioning_scale=float(p["eval_conditioning_scale"]),
            generator=torch.Generator(device).manual_seed(int(p["eval_seed"]) + start),
            output_type="np",
        ).images
        generated.append((out * 255).round().astype(np.uint8))
    return skeletons, np.concatenate(generated)


def redetect(frames: np.ndarray, p: dict) -> np.ndarray:
    """MediaPipe's keypoints of single frames, upscaled to ``detect_size`` and padded by ``detect_margin``."""
    from eym.detect.mediapipe_backend import detect_poses

    factor = int(p["detect_size"]) / frames.shape[1]
    big = np.stack([cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC) for f in frames])
    kp = detect_poses(big, video_mode=False, margin=float(p["detect_margin"]))
    kp[..., :2] /= factor
    return kp


def pose_check_scores(found: np.ndarray, found_truth: np.ndarray, truth_kp: np.ndarray) -> dict:
    """PCK@0.1 of generated frames' detections, beside the true frames', the chance level and the found share."""
    person = np.isfinite(found[:, :, 0]).any(1)
    return {
        "frames": len(found),
        "pck": pck(found, truth_kp, 0.1),
        "pck_true_frames": pck(found_truth, truth_kp, 0.1),
        # Any person in any pose scores this much: what a detector that saw no pose would get.
        "pck_other_skeletons": pck(found, np.roll(truth_kp, len(found) // 2, 0), 0.1),
        # Tells a figure drawn in the wrong pose from one MediaPipe does not see at all.
        "pck_person_found": pck(found[person], truth_kp[person], 0.1) if person.any() else None,
        "person_found": float(person.mean()),
    }


def controlnet_pose_check(base: Path, controlnet: Path, heldout, p: dict, device: str) -> dict:
    """Frames drawn by diffusers' ControlNet pipeline from held-out skeletons, and their pose PCK."""
    skeletons, generated = generate_from_skeletons(base, controlnet, heldout, p, device)
    count = len(generated)
    truth = np.asarray(heldout.frames[:count])
    scores = pose_check_scores(redetect(generated, p), redetect(truth, p), heldout.keypoints[:count])
    return {**scores, "skeletons": skeletons, "generated": generated}


def grid_image(skeletons, generated, truth, rows: int = 4, columns: int = 4) -> np.ndarray:
    """(skeleton | generated | true frame) triplets, ``columns`` per row, at most ``rows`` rows."""
    cells = [np.concatenate([s, g, t], 1) for s, g, t in zip(skeletons, generated, truth)][: rows * columns]
    columns = min(columns, len(cells))
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % columns)
    pad = np.full((cells[0].shape[0], 6, 3), 255, np.uint8)
    lines = []
    for r in range(len(cells) // columns):
        row = cells[r * columns : (r + 1) * columns]
        lines.append(np.concatenate([part for cell in row for part in (cell, pad)][:-1], 1))
    gap = np.full((6, lines[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for line in lines for part in (line, gap)][:-1], 0)


def export(params: dict, root: Path = Path(".")) -> dict:
    from eym_model.loading import load_base_model

    mini = params["eym_mini"]
    p = mini["export"]
    device = resolve_device(mini["device"])
    seconds = train_seconds(root)  # before the long check: a missing log fails at once
    base, controlnet = assemble(root)
    heldout = load_set(root / DATA_DIR / "heldout")
    shipped = load_base_model(str(base), torch.float32, device)
    vae_psnr = psnr(reconstruct(shipped.vae, to_tensor(heldout.frames), device, "fp32"), to_tensor(heldout.frames))
    check = controlnet_pose_check(base, controlnet, heldout, p, device)
    grid = grid_image(check["skeletons"], check["generated"], np.asarray(heldout.frames))
    write_image(root / RELEASE_DIR / GRID_IMAGE, grid)
    seen = check["pck_person_found"]
    metrics = {
        "vae_heldout_psnr": round(vae_psnr, 3),
        "vae_heldout_frames": len(heldout),
        "controlnet_pck": round(check["pck"], 4),
        "controlnet_pck_true_frames": round(check["pck_true_frames"], 4),
        "controlnet_pck_other_skeletons": round(check["pck_other_skeletons"], 4),
        "controlnet_person_found": round(check["person_found"], 4),
        "controlnet_pck_person_found": seen if seen is None else round(seen, 4),
        "controlnet_eval_frames": check["frames"],
        "parameters": parameter_counts(shipped, controlnet),
        "train_seconds": seconds,
        "weights_mb": round(sum(f.stat().st_size for f in (root / RELEASE_DIR).rglob("*.safetensors")) / 2**20, 1),
    }
    write_json(root / RELEASE_DIR / "metrics.json", metrics)
    write_text(root / RELEASE_DIR / "README.md", model_card(params, metrics, root))
    log.info("eym-mini: %s", json.dumps(metrics))
    return metrics


def parameter_counts(shipped, controlnet: Path) -> dict:
    from diffusers import ControlNetModel

    parts = ("vae", "text_encoder", "unet")
    count = {name: sum(q.numel() for q in getattr(shipped, name).parameters()) for name in parts}
    count["controlnet"] = sum(q.numel() for q in ControlNetModel.from_pretrained(controlnet).parameters())
    return count


def train_seconds(root: Path) -> dict:
    """Training time of each phase, from the last row of its loss log (the model card states it)."""
    seconds = {}
    for phase in ("vae", "diffusion"):
        log_file = root / LOG_DIR / f"{phase}_loss.tsv"
        rows = read_tsv(log_file)
        if not rows:
            raise InputError(
                f"{log_file}: missing or empty; the model card takes the {phase} phase's training time from it "
                f"(a {phase} copied from another eym-mini brings its log from that model's {LOG_DIR.name}/)"
            )
        seconds[phase] = float(rows[-1]["seconds"])
    return seconds


def runs_summary(root: Path, diffusion: dict) -> str:
    """``steps x batch (machine, minutes)`` per machine and batch, from the diffusion phase's training runs."""
    state = root / BUILD_DIR / "diffusion" / TRAINING_STATE
    runs = json.loads(state.read_text()).get("runs", []) if state.is_file() else []
    if not runs:
        return f"{diffusion['steps']} x {diffusion['batch']}"
    merged: list[dict] = []
    for run in runs:
        if merged and (merged[-1]["batch"], merged[-1]["device"]) == (run["batch"], run["device"]):
            merged[-1] = {
                **merged[-1],
                "last_step": run["last_step"],
                "seconds": merged[-1]["seconds"] + run["seconds"],
            }
        else:
            merged.append(dict(run))
    parts = [
        f"{r['last_step'] - r['first_step'] + 1} x {r['batch']} ({r['device']}, {r['seconds'] / 60:.1f} min)"
        for r in merged
    ]
    return " + ".join(parts)


def model_card(params: dict, metrics: dict, root: Path = Path(".")) -> str:
    mini = params["eym_mini"]
    d, v, f = mini["data"], mini["vae"], mini["diffusion"]
    count = metrics["parameters"]
    found = metrics["controlnet_pck_person_found"]
    minutes = {k: round(s / 60, 1) for k, s in metrics["train_seconds"].items()}
    return (
        (Path(__file__).parent / "model_card.md")
        .read_text()
        .format(
            size=d["size"],
            latent_channels=v["latent_channels"],
            frames=d["train_actors"] * d["poses_per_actor"],
            actors=d["train_actors"],
            heldout=d["heldout_actors"] * d["poses_per_actor"],
            seed=mini["seed"],
            vae_steps=v["steps"],
            vae_batch=v["batch"],
            diff_runs=runs_summary(root, f),
            vae_minutes=minutes["vae"],
            diff_minutes=minutes["diffusion"],
            machine=f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}",
            mparams={k: f"{n / 1e6:.2f} M" for k, n in count.items()},
            weights_mb=metrics["weights_mb"],
            **{k: metrics[k] for k in metrics if k.startswith(("vae_", "controlnet_"))},
            eval_steps=mini["export"]["eval_steps"],
            eval_guidance=mini["export"]["eval_guidance_scale"],
            eval_conditioning=mini["export"]["eval_conditioning_scale"],
            detect_size=mini["export"]["detect_size"],
            detect_margin=mini["export"]["detect_margin"],
            pck_person_found="—" if found is None else f"{found:.3f}",
        )
    )
