"""Sampling: the edit itself. DDIM from the inverted latents with ControlNet fed the offset reference
skeletons and the case's prompt; classifier-free guidance is optional (the paper uses none).

Writes ``sample/frames/``, ``sample/edited.mp4``, ``sample/edited.gif``, ``sample/comparison.mp4``
(source | reference | aligned skeleton | edited, side by side) and ``sample/meta.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from eym.atomic import atomic_path, write_json
from eym.errors import InputError
from eym.media import read_frames, write_frames, write_gif, write_video
from eym.panels import side_by_side
from eym_model.components import load_components
from eym_model.diffusion import ddim_sample, decode_video, encode_prompts, prompt_warnings

from .common import FRAMES, INVERSION, OFFSET, POSE, SAMPLE, STAGE1, STAGE2, log, section, stage_main
from .invert import LATENTS
from .tune import load_stage_weights, skeleton_tensor

PARAMS = ("steps", "guidance_scale", "negative_prompt", "conditioning_scale", "eta", "seed")


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, frames, H, W) in [-1, 1] -> uint8 (frames, H, W, 3)."""
    return ((video[0].permute(1, 2, 3, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def inversion_steps(latents_file: Path) -> int | None:
    """The DDIM step count the inversion stage recorded in its latents file (None for older files)."""
    from safetensors import safe_open

    with safe_open(str(latents_file), "pt") as f:
        steps = (f.metadata() or {}).get("steps")
    return int(steps) if steps is not None else None


def run(case_dir: Path, params: dict) -> dict:
    """Sampling: the edited video from the inverted noise and the aligned reference skeletons."""
    case_dir = Path(case_dir)
    p = section(params, "sampling", PARAMS)
    model_params = section(params, "model", ("base", "controlnet"))
    latents_file = case_dir / INVERSION / LATENTS
    if not latents_file.is_file():
        raise InputError(f"{latents_file}: inverted latents not found (run the inversion stage first)")
    noise = load_file(str(latents_file))["noise"]
    inverted_steps = inversion_steps(latents_file)
    if inverted_steps is not None and inverted_steps != int(p["steps"]):
        raise InputError(
            f"{latents_file}: the noise was inverted with {inverted_steps} DDIM steps, but sampling.steps is "
            f"{p['steps']}: sampling would start at the wrong timestep. Set sampling.steps and inversion.steps "
            "to the same number"
        )
    skeleton_frames = read_frames(case_dir / OFFSET / "aligned_skeleton")
    if len(skeleton_frames) != noise.shape[2]:
        raise InputError(
            f"{case_dir / OFFSET}: {len(skeleton_frames)} skeleton frames for {noise.shape[2]} latent frames"
        )

    components = load_components(model_params)
    load_stage_weights(components, case_dir, (STAGE1, STAGE2))
    model, base = components.model.eval(), components.base
    prompt = str(params.get("prompt") or "")
    text = encode_prompts(base.tokenizer, base.text_encoder, [prompt])
    uncond = encode_prompts(base.tokenizer, base.text_encoder, [str(p["negative_prompt"] or "")])
    skeletons = skeleton_tensor(skeleton_frames).to(components.device, components.dtype)
    generator = torch.Generator(components.device).manual_seed(int(p["seed"]))
    with components.autocast():
        latents = ddim_sample(
            model,
            noise.to(components.device),
            text,
            base.scheduler_config,
            int(p["steps"]),
            skeletons,
            float(p["conditioning_scale"]),
            float(p["guidance_scale"]),
            uncond,
            float(p["eta"]),
            generator,
        )
    edited = to_frames(decode_video(base.vae, latents.float(), int(model_params.get("vae_chunk", 8))))

    fps = float(json.loads((case_dir / FRAMES / "meta.json").read_text())["fps"])
    source = read_frames(case_dir / FRAMES / "source")
    reference_dir = case_dir / FRAMES / "reference"
    reference = read_frames(reference_dir if reference_dir.is_dir() else case_dir / POSE / "reference_skeleton")
    panels = {"source": source, "reference": reference, "aligned skeleton": skeleton_frames, "edited": edited}
    meta = {
        "prompt": prompt,
        "frames": len(edited),
        "fps": fps,
        "size": [edited.shape[2], edited.shape[1]],
        **{k: p[k] for k in PARAMS},
        "warnings": prompt_warnings(base.tokenizer, [prompt]),
    }
    for warning in meta["warnings"]:
        log.warning("sampling: %s", warning)
    with atomic_path(case_dir / SAMPLE) as out:
        out.mkdir()
        write_frames(out / "frames", edited)
        write_video(out / "edited.mp4", edited, fps)
        write_gif(out / "edited.gif", edited, fps)
        write_video(out / "comparison.mp4", side_by_side(panels), fps)
        write_json(out / "meta.json", meta)
    log.info(
        "sampling: %d frames at %dx%d, %.1f fps -> %s",
        len(edited),
        edited.shape[2],
        edited.shape[1],
        fps,
        case_dir / SAMPLE / "edited.mp4",
    )
    return meta


if __name__ == "__main__":
    sys.exit(stage_main("sample", run))
