"""Sampling: the edit itself. DDIM from the inverted latents with ControlNet fed the offset reference
skeletons and the case's prompt; classifier-free guidance is optional (the paper uses none).

Writes ``sample/frames/``, ``sample/edited.mp4``, ``sample/edited.gif``, ``sample/comparison.mp4``
(source | reference | aligned skeleton | edited, side by side) and ``sample/meta.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file

from eym.atomic import atomic_path, write_json
from eym.errors import InputError
from eym.media import read_frames, write_frames, write_gif, write_video
from eym_model.components import load_components
from eym_model.diffusion import ddim_sample, decode_video, encode_prompts

from .common import FRAMES, INVERSION, OFFSET, POSE, SAMPLE, STAGE1, STAGE2, log, section, stage_main
from .invert import LATENTS
from .tune import load_stage_weights, skeleton_tensor

PARAMS = ("steps", "guidance_scale", "negative_prompt", "conditioning_scale", "eta", "seed")


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, frames, H, W) in [-1, 1] -> uint8 (frames, H, W, 3)."""
    return ((video[0].permute(1, 2, 3, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()


def label(frame: np.ndarray, text: str) -> np.ndarray:
    out = frame.copy()
    scale = max(0.35, frame.shape[1] / 700)
    cv2.putText(out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def comparison(panels: dict[str, np.ndarray]) -> np.ndarray:
    """Side-by-side frames of equal size, each labelled."""
    return np.stack(
        [
            np.concatenate([label(v[f], name) for name, v in panels.items()], axis=1)
            for f in range(len(next(iter(panels.values()))))
        ]
    )


def run(case_dir: Path, params: dict) -> dict:
    """Sampling: the edited video from the inverted noise and the aligned reference skeletons."""
    case_dir = Path(case_dir)
    p = section(params, "sampling", PARAMS)
    model_params = section(params, "model", ("base", "controlnet"))
    latents_file = case_dir / INVERSION / LATENTS
    if not latents_file.is_file():
        raise InputError(f"{latents_file}: inverted latents not found (run the inversion stage first)")
    noise = load_file(str(latents_file))["noise"]
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
    }
    with atomic_path(case_dir / SAMPLE) as out:
        out.mkdir()
        write_frames(out / "frames", edited)
        write_video(out / "edited.mp4", edited, fps)
        write_gif(out / "edited.gif", edited, fps)
        write_video(out / "comparison.mp4", comparison(panels), fps)
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
