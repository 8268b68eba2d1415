"""rembg person segmentation (U^2-Net human segmentation by default), with local model files only.

rembg downloads its models on first use; here a missing model file is an error that says where it
was looked for and where to get it, instead of a hanging download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MissingWeightsError

MODEL_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/{name}.onnx"


def model_home() -> Path:
    return Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()


def locate(model: str = "u2net_human_seg", model_path: str | None = None) -> Path:
    """The .onnx file of a named model in rembg's model folder, or the local file given."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"rembg model file {path} does not exist (segmentation.rembg_model_path)")
        return path
    path = model_home() / f"{model}.onnx"
    if not path.is_file():
        raise MissingWeightsError(
            f"rembg model {model!r} is not on this machine (looked for {path}). Download "
            f"{MODEL_URL.format(name=model)} to {path}, or set segmentation.rembg_model_path to a local .onnx file, "
            f"or use segmentation.backend: mediapipe (works offline)."
        )
    return path


def open_session(model: str = "u2net_human_seg", model_path: str | None = None):
    """A rembg session for a named model found in rembg's model folder, or for a local .onnx file."""
    from rembg import new_session

    path = locate(model, model_path)
    if model_path:
        return new_session("u2net_custom", model_path=str(path), providers=["CPUExecutionProvider"])
    return new_session(model)


def segment_people(frames: np.ndarray, session, progress=None) -> np.ndarray:
    """Person probability (frames, H, W) in [0, 1] from the session's predicted mask."""
    from PIL import Image

    out = np.zeros(frames.shape[:3], np.float32)
    for f, frame in enumerate(frames):
        mask = session.predict(Image.fromarray(frame))[0]
        out[f] = np.asarray(mask.resize((frame.shape[1], frame.shape[0])), np.float32) / 255.0
        if progress:
            progress()
    return out
