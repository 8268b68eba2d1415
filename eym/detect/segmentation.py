"""The person segmentation of the configured backend (``segmentation.backend``): per-frame person
probabilities, used by the segment stage and by the evaluation on ground-truth frames."""

from __future__ import annotations

import numpy as np

from eym.errors import InputError
from eym.progress import Progress
from eym.schema import Segmentation


def person_probabilities(frames: np.ndarray, p: Segmentation) -> np.ndarray:
    """(frames, H, W) probabilities that a pixel shows a person."""
    with Progress(len(frames), f"segmentation ({p.backend})", unit="frame") as bar:
        if p.backend == "mediapipe":
            from eym.detect.mediapipe_backend import segment_people

            return segment_people(frames, int(p.mediapipe_model), progress=bar.update)
        if p.backend == "rembg":
            from eym.detect import rembg_backend

            session = rembg_backend.open_session(p.rembg_model, p.rembg_model_path)
            return rembg_backend.segment_people(frames, session, progress=bar.update)
    raise InputError(f"params: segmentation.backend must be mediapipe or rembg, not {p.backend!r}")
