"""The source's background behind its person: with a still camera, each pixel's median over the frames
where no person covers it (a clean plate), shown where the source person stood and the target will not.

Without it, that vacated area is the model's repaint, which keeps a faint silhouette of the old limbs
(docs/benchmarks.md, "Keeping the background"). A moving camera (the background changes between
frames by more than ``max_motion`` grey levels) gets no plate: the edit's own pixels stay there.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from .edit_region import read_region, smoothstep

PLATE_FRAMES = 64  # frames the median looks at, evenly spaced: memory stays flat for long clips


def grey(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def background_motion(frames: np.ndarray, occupied: np.ndarray) -> float:
    """Mean absolute grey-level change (0-255) between consecutive frames where no person is in either;
    0 for a single frame or when no pixel is free in two frames running."""
    if len(frames) < 2:
        return 0.0
    levels, changes = grey(frames), []
    for i in range(1, len(frames)):
        free = ~(occupied[i] | occupied[i - 1])
        if free.any():
            changes.append(float(np.abs(levels[i] - levels[i - 1])[free].mean()))
    return float(np.mean(changes)) if changes else 0.0


def clean_plate(frames: np.ndarray, occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plate, uint8 (H, W, 3): per pixel the median of the frames where it is free (the frames' median
    where it never is), and bool (H, W): whether any frame shows it free."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), PLATE_FRAMES)).round().astype(int))
    frames, free = frames[picks].astype(np.float32), ~occupied[picks]
    shown = free.any(axis=0)
    masked = np.where(free[..., None], frames, np.nan)
    with warnings.catch_warnings():  # all-NaN columns are the never-shown pixels, filled next
        warnings.simplefilter("ignore", RuntimeWarning)
        plate = np.nanmedian(masked, axis=0)
    plate = np.where(shown[..., None], plate, np.median(frames, axis=0))
    return plate.round().astype(np.uint8), shown


def plate_weight(region: np.ndarray, target: np.ndarray, shown: np.ndarray, fade: float) -> np.ndarray:
    """Float32 (frames, H, W): how much of the plate replaces the edit: inside the edit region, away from
    where the target will be, where the plate shows the background (fading in over ``fade`` pixels from
    where it does not, so the plate and the edit meet without an edge)."""
    inside = cv2.distanceTransform(shown.astype(np.uint8), cv2.DIST_L2, 5)  # pixels to the nearest unshown one
    ramp = np.clip(inside / max(fade, 1e-6), 0.0, 1.0)
    return (region * (1.0 - target) * smoothstep(ramp)[None]).astype(np.float32)


def read_plate(offset_folder) -> tuple[np.ndarray, np.ndarray]:
    """The plate and its weights as the offset stage writes them (``plate.png``, ``plate_weight/``)."""
    from pathlib import Path

    from .media import read_image

    folder = Path(offset_folder)
    return read_image(folder / "plate.png"), read_region(folder / "plate_weight")
