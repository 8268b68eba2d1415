"""Segmentation: a person mask per source frame, and the background-masked frames of stage-1 tuning.

Backends: ``mediapipe`` selfie segmentation (offline, default) or ``rembg`` (U^2-Net human
segmentation, from rembg's model folder or a local .onnx file). When the mask holds several
separate people, the largest is kept and the frames are reported. Writes ``masks/masks/``,
``masks/masked/`` (frame x mask, black background) and ``masks/meta.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from eym.atomic import atomic_path, write_json
from eym.detect.segmentation import person_probabilities
from eym.errors import InputError
from eym.media import read_frames, write_frames

from .common import FRAMES, MASKS, log, section, stage_main


def keep_largest_person(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """Keep the largest blob and the blobs inside its (padded) box, e.g. a hand split off by a sleeve.

    Returns the mask and whether another person-sized blob was dropped.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask, False
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    x, y, w, h = (stats[main, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    pad_x, pad_y = 0.25 * w, 0.1 * h
    keep, several = labels == main, False
    for label in range(1, count):
        if label == main:
            continue
        cx, cy = (
            stats[label, cv2.CC_STAT_LEFT] + stats[label, cv2.CC_STAT_WIDTH] / 2,
            stats[label, cv2.CC_STAT_TOP] + stats[label, cv2.CC_STAT_HEIGHT] / 2,
        )
        inside = x - pad_x <= cx <= x + w + pad_x and y - pad_y <= cy <= y + h + pad_y
        if inside:
            keep |= labels == label
        elif stats[label, cv2.CC_STAT_AREA] >= 0.3 * areas.max():
            several = True
    return keep, several


def run(case_dir: Path, params: dict) -> dict:
    """Segmentation: person masks and background-masked source frames."""
    p = section(params, "segmentation")
    case_dir = Path(case_dir)
    frames = read_frames(case_dir / FRAMES / "source")
    masks = person_probabilities(frames, p) >= float(p.threshold)
    several, empty = [], []
    min_pixels = float(p.min_area) * masks[0].size
    for f in range(len(masks)):
        masks[f], dropped = keep_largest_person(masks[f])
        if dropped:
            several.append(f)
        if masks[f].sum() < min_pixels:
            empty.append(f)
    if several:
        log.warning("segmentation: several people in frames %s: kept the largest", several)
    if len(empty) > float(p.max_missing_fraction) * len(masks):
        raise InputError(
            f"{case_dir / FRAMES / 'source'}: no person found in {len(empty)} of {len(masks)} frames "
            f"(frames {empty}); segmentation.max_missing_fraction allows "
            f"{float(p.max_missing_fraction):.0%}. Check the source video or try another backend."
        )
    if int(p.dilate) > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(p.dilate) + 1,) * 2)
        masks = np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])
    masked = frames * masks[..., None]
    meta = {
        "backend": p.backend,
        "area_fraction": masks.mean((1, 2)).round(5).tolist(),
        "frames_without_person": empty,
        "frames_with_several_people": several,
    }
    with atomic_path(case_dir / MASKS) as out:
        out.mkdir()
        write_frames(out / "masks", masks)
        write_frames(out / "masked", masked)
        write_json(out / "meta.json", meta)
    log.info("segmentation (%s): mean person area %.1f%% of the frame", p.backend, 100 * masks.mean())
    return meta


if __name__ == "__main__":
    sys.exit(stage_main("segment", run))
