"""Labelled side-by-side panels: comparison videos and preview images that people look at."""

from __future__ import annotations

import cv2
import numpy as np


def label(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``frame`` with ``text`` in its top-left corner, readable on any background."""
    out = frame.copy()
    scale = max(0.35, frame.shape[1] / 700)
    for colour, thickness in (((255, 255, 255), 3), ((20, 20, 20), 1)):
        cv2.putText(
            out, text, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA
        )
    return out


def side_by_side(panels: dict[str, np.ndarray]) -> np.ndarray:
    """Frames (F, H, W, 3) of equal size, labelled and placed next to each other: (F, H, W * n, 3)."""
    count = len(next(iter(panels.values())))
    return np.stack([np.concatenate([label(v[f], name) for name, v in panels.items()], axis=1) for f in range(count)])


def overlay(frames: np.ndarray, drawing: np.ndarray, opacity: float = 0.85) -> np.ndarray:
    """``drawing`` (e.g. skeleton images, black where empty) over ``frames``."""
    drawn = drawing.any(-1, keepdims=True)
    mixed = frames.astype(np.float32) * (1 - opacity) + drawing.astype(np.float32) * opacity
    return np.where(drawn, mixed, frames).round().astype(np.uint8)
