"""Sampling: the edit itself. DDIM from the inverted latents with ControlNet fed the offset reference
skeletons and the case's prompt; classifier-free guidance is optional (the paper uses none).
``sampling.preserve`` keeps the source outside ``offset/region/`` (its pixels after decoding, or its
inversion's latents while sampling: eym_model/preserve.py). ``sampling.start`` also gives the benchmark's
baselines: ``noise`` samples from fresh noise ("ControlNet only" when the tuning stages are off) and
``source`` returns the source video as the edit ("copy the source").

Writes ``sample/frames/``, ``sample/edited.mp4``, ``sample/edited.gif``, ``sample/comparison.mp4`` (and ``.gif``)
(source | reference | aligned skeleton | edited | ground truth when the case has one, side by side) and
``sample/meta.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from eym.atomic import atomic_path, write_json
from eym.clean_plate import read_plate
from eym.edit_region import read_region
from eym.errors import InputError
from eym.media import read_frames, write_frames, write_gif, write_video
from eym.panels import side_by_side
from eym.schema import Sampling
from eym_model.components import load_components
from eym_model.diffusion import prompt_warnings
from eym_model.loading import domain_warning
from eym_model.pipeline import EditYourMotionPipeline

from .common import (
    FRAMES,
    INVERSION,
    LATENTS,
    OFFSET,
    POSE,
    SAMPLE,
    STAGE1,
    STAGE2,
    TRAJECTORY,
    ground_truth_frames,
    load_stage_weights,
    log,
    read_case,
    section,
    source_dir,
    stage_main,
)

# inverted: DDIM from the source's inverted latents (the method); noise: from fresh noise (with no
# tuning, the "ControlNet only" baseline); source: the source video itself (the "copy" baseline)
STARTS = ("inverted", "noise", "source")


def inversion_steps(latents_file: Path) -> int | None:
    """The DDIM step count the inversion stage recorded in its latents file (None for older files)."""
    from safetensors import safe_open

    with safe_open(str(latents_file), "pt") as f:
        steps = (f.metadata() or {}).get("steps")
    return int(steps) if steps is not None else None


def starting_noise(source_folder: Path, p: Sampling, frames: int) -> torch.Tensor:
    """The source's inverted latents (checked against sampling.steps)."""
    latents_file = source_folder / INVERSION / LATENTS
    if not latents_file.is_file():
        raise InputError(
            f"{latents_file}: inverted latents not found (run the inversion stage first, with inversion.enabled: "
            "true; or sample from noise with sampling.start: noise)"
        )
    noise = load_file(str(latents_file))["noise"]
    inverted_steps = inversion_steps(latents_file)
    if inverted_steps is not None and inverted_steps != int(p.steps):
        raise InputError(
            f"{latents_file}: the noise was inverted with {inverted_steps} DDIM steps, but sampling.steps is "
            f"{p.steps}: sampling would start at the wrong timestep. Set sampling.steps and inversion.steps "
            "to the same number"
        )
    if noise.shape[2] != frames:
        raise InputError(f"{latents_file}: {noise.shape[2]} latent frames for {frames} skeleton frames")
    return noise


def source_trajectory(source_folder: Path) -> dict[int, torch.Tensor]:
    """The source's latents at every timestep of its inversion (-1: clean), for sampling.preserve."""
    from safetensors import safe_open

    path = source_folder / INVERSION / TRAJECTORY
    if not path.is_file():
        raise InputError(f"{path}: not found: rerun the source's inversion (`dvc repro` of the case does)")
    with safe_open(str(path), "pt") as f:
        timesteps = json.loads(f.metadata()["timesteps"])
        stacked = f.get_tensor("latents")
    trajectory = dict(zip(timesteps, stacked))
    with safe_open(str(source_folder / INVERSION / LATENTS), "pt") as f:  # the clean latents only (not the noise)
        trajectory[-1] = f.get_tensor("source_latents")
    return trajectory


def generate(case_dir: Path, params: dict, p: Sampling, skeleton_frames: np.ndarray, source: np.ndarray):
    """The edited frames, and the tokenizer used (for prompt warnings; None without a model)."""
    if p.start == "source":  # the "copy the source" baseline: moves nothing, keeps every pixel
        return source.copy(), None
    pipe = EditYourMotionPipeline(load_components(section(params, "model")))
    source_folder = source_dir(case_dir)
    load_stage_weights(pipe, source_folder, (STAGE1, STAGE2))
    # inverted: the method; fresh noise (None): with no tuning, the "ControlNet only" baseline
    noise = starting_noise(source_folder, p, len(skeleton_frames)) if p.start == "inverted" else None
    keep = {}
    if p.preserve != "none":
        keep["region"] = read_region(case_dir / OFFSET / "region")
        keep["source"] = source
        latent = "latent" in p.preserve and noise is not None
        keep["trajectory"] = source_trajectory(source_folder) if latent else None
        keep["plate"] = read_plate(case_dir / OFFSET) if "pixels" in p.preserve and p.vacated == "plate" else None
    edited = pipe(
        reference_skeletons=skeleton_frames,
        prompt=str(params["prompt"] or ""),
        noise=noise,
        size=source.shape[1:3],
        window=params.get("window"),
        **keep,
        **p.model_dump(),
    )
    return edited, pipe.components.base.tokenizer


def model_warnings(case_dir: Path, params: dict, tokenizer, prompt: str) -> list[str]:
    """Words of the prompt the model does not know, and a base model that does not know the source's world."""
    if tokenizer is None:  # no model drew the edit (the copy baseline)
        return []
    world = domain_warning(str(params["model"]["base"]), read_case(source_dir(case_dir)).source)
    return prompt_warnings(tokenizer, [prompt]) + ([world] if world else [])


def run(case_dir: Path, params: dict) -> dict:
    """Sampling: the edited video from the inverted noise and the aligned reference skeletons."""
    case_dir = Path(case_dir)
    p = section(params, "sampling")
    if p.start not in STARTS:
        raise InputError(f"params: sampling.start must be one of {list(STARTS)}, not {p.start!r}")
    skeleton_frames = read_frames(case_dir / OFFSET / "aligned_skeleton")
    source = read_frames(source_dir(case_dir) / FRAMES / "source")
    edited, tokenizer = generate(case_dir, params, p, skeleton_frames, source)
    prompt = str(params["prompt"] or "")

    fps = float(json.loads((case_dir / FRAMES / "meta.json").read_text())["fps"])
    reference_dir = case_dir / FRAMES / "reference"
    reference = read_frames(reference_dir if reference_dir.is_dir() else case_dir / POSE / "reference_skeleton")
    panels = {"source": source, "reference": reference, "aligned skeleton": skeleton_frames, "edited": edited}
    truth = read_case(case_dir).ground_truth
    if truth is not None:
        panels["ground truth"] = ground_truth_frames(case_dir, truth)
    meta = {
        "prompt": prompt,
        "frames": len(edited),
        "fps": fps,
        "size": [edited.shape[2], edited.shape[1]],
        **p.model_dump(),
        "warnings": model_warnings(case_dir, params, tokenizer, prompt),
    }
    for warning in meta["warnings"]:
        log.warning("sampling: %s", warning)
    with atomic_path(case_dir / SAMPLE) as out:
        out.mkdir()
        write_frames(out / "frames", edited)
        write_video(out / "edited.mp4", edited, fps)
        write_gif(out / "edited.gif", edited, fps)
        comparison = side_by_side(panels)
        write_video(out / "comparison.mp4", comparison, fps)
        write_gif(out / "comparison.gif", comparison, fps)
        write_json(out / "meta.json", meta)
    log.info(
        "sampling (%s): %d frames at %dx%d, %.1f fps -> %s",
        p.start,
        len(edited),
        edited.shape[2],
        edited.shape[1],
        fps,
        case_dir / SAMPLE / "edited.mp4",
    )
    return meta


if __name__ == "__main__":
    sys.exit(stage_main("sample", run))
