"""Skeleton offset: the reference's motion retargeted onto the source person (``eym.retargeting``,
docs/method.md), checked and previewed before any tuning. A bad verdict stops the case with what is
wrong and what to change. Writes ``offset/aligned.parquet``, ``offset/aligned_skeleton/``,
``offset/region/`` (where the edit may change pixels: ``eym.edit_region``), ``offset/meta.json`` and
``offset/preview.png`` (source | reference | aligned skeleton over the source | the region, a few frames).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from eym.atomic import atomic_path, write_json
from eym.clean_plate import background_motion, clean_plate, plate_weight
from eym.edit_region import feathered, people, to_png
from eym.errors import InputError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import read_frames, read_masks, write_frames, write_image
from eym.panels import overlay, side_by_side
from eym.retargeting import align
from eym.skeleton import draw_skeletons

from .common import FRAMES, MASKS, OFFSET, POSE, log, read_case, section, stage_main


def earlier_warnings(case_dir: Path) -> list[str]:
    """What the frames and pose stages of the edit and of its prepared source warned about (a tiny
    image, a skeleton file's broken rows, joints never seen): part of the verdict, shown with it."""
    found = []
    for folder in (read_case(case_dir).prepared_dir, case_dir):
        for stage in (FRAMES, POSE):
            meta = folder / stage / "meta.json"
            if meta.is_file():
                found += json.loads(meta.read_text()).get("warnings", [])
    return found


def shade_outside(frames: np.ndarray, region: np.ndarray, plate: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Frames with what the edit keeps (outside the region) dimmed and tinted blue, and where the clean
    plate will show the background tinted green."""
    kept, filled = np.array([40, 60, 140], np.float32), np.array([40, 160, 60], np.float32)
    alpha, weight = region[..., None], weight[..., None]
    shown = frames * alpha + (frames * 0.35 + kept * 0.65) * (1 - alpha)
    return (shown * (1 - weight) + (plate * 0.6 + filled * 0.4) * weight).round().astype(np.uint8)


def preview(case_dir: Path, source, keypoints, aligned, maps, count: int, min_confidence: float):
    """A few frames: source with its skeleton | reference with its skeleton | aligned skeleton over the
    source | the edit region (what the edit keeps shaded, what the clean plate fills tinted)."""
    source_kp, reference_kp = keypoints
    region, plate, weight = maps
    height, width = source.shape[1:3]
    reference_dir = case_dir / FRAMES / "reference"
    reference = read_frames(reference_dir) if reference_dir.is_dir() else np.zeros_like(source)
    picks = np.unique(np.linspace(0, len(source) - 1, max(1, min(count, len(source)))).round().astype(int))
    draw = lambda kp: draw_skeletons(kp[picks], height, width, min_confidence)  # noqa: E731
    rows = side_by_side(
        {
            "source": overlay(source[picks], draw(source_kp)),
            "reference": overlay(reference[picks], draw(reference_kp)),
            "aligned on source": overlay(source[picks], draw(aligned)),
            "edit region": shade_outside(source[picks], region[picks], plate, weight[picks]),
        }
    )
    gap = np.full((4, rows.shape[2], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1])


def keep_maps(frames, masks, source, aligned, r, threshold: float, info: dict):
    """The edit region, the source's clean plate and where it replaces the edit (zero for a moving
    camera); their figures go into ``info``."""
    size, source_core, target_core = people(masks, aligned, source, r.limb_width, threshold)
    region = feathered(source_core | target_core, size, r.margin, r.feather)
    occupied = feathered(source_core, size, r.margin, r.feather) > 0  # the source person with its feather
    plate, shown = clean_plate(frames, occupied)
    motion = background_motion(frames, occupied)
    target = feathered(target_core, size, r.margin, r.feather)
    weight = plate_weight(region, target, shown, r.feather * size)
    if motion > r.max_motion:
        weight[:] = 0.0
    vacated = (region > 0.5) & occupied & (target < 1)  # 1: the target's place grown by the margin
    info.update(
        region_area=float(region.mean()),
        background_motion=round(motion, 3),
        still_camera=bool(motion <= r.max_motion),
        plate_coverage=float((weight > 0.5)[vacated].mean()) if vacated.any() else 1.0,
    )
    return region, plate, weight


def run(case_dir: Path, params: dict) -> dict:
    """Skeleton offset: the reference's motion retargeted onto the source person, with a verdict and a preview."""
    p = section(params, "offset")
    case_dir = Path(case_dir)
    source, meta = read_keypoints(read_case(case_dir).prepared_dir / POSE / "source.parquet")
    reference, _ = read_keypoints(case_dir / POSE / "reference.parquet")
    width, height = int(meta["width"]), int(meta["height"])
    threshold = float(p.min_confidence)
    aligned, info = align(
        source,
        reference,
        p.retarget,
        p.anchor,
        p.mode,
        threshold,
        width,
        height,
        float(p.min_visible_fraction),
        p.verdict.model_dump(),
    )
    info["warnings"] = list(dict.fromkeys([*earlier_warnings(case_dir), *info["warnings"]]))
    masks = read_masks(read_case(case_dir).prepared_dir / MASKS / "masks")
    frames = read_frames(read_case(case_dir).prepared_dir / FRAMES / "source")
    region, plate, weight = keep_maps(frames, masks, source, aligned, p.region, threshold, info)
    with atomic_path(case_dir / OFFSET) as out:
        out.mkdir()
        write_keypoints(out / "aligned.parquet", aligned, width, height, role="aligned_reference", **info)
        write_frames(out / "aligned_skeleton", draw_skeletons(aligned, height, width, threshold))
        write_frames(out / "region", to_png(region))
        write_image(out / "plate.png", plate)
        write_frames(out / "plate_weight", to_png(weight))
        write_json(out / "meta.json", info)
        maps = (region, plate, weight)
        picture = preview(case_dir, frames, (source, reference), aligned, maps, int(p.preview_frames), threshold)
        write_image(out / "preview.png", picture)
    log.info(
        "offset: %s retargeting, scale %.3f from %s, anchor %s (%s mode), %.0f%% of the joints inside the frame, "
        "the edit may change %.0f%% of the pixels (clean plate: %s): %s",
        info["retarget"],
        info["scale"],
        ", ".join(info["segments"]) or "no segment",
        info["anchor"],
        info["mode"],
        100 * info["inside_fraction"],
        100 * info["region_area"],
        f"{info['plate_coverage']:.0%} of the vacated area" if info["still_camera"] else "none, the camera moves",
        info["verdict"],
    )
    for warning in info["warnings"]:
        log.warning("offset: %s", warning)
    if info["problems"]:
        raise InputError(
            f"{case_dir / OFFSET}: the retargeting looks wrong, so the case stops before any tuning: "
            + "; and ".join(info["problems"])
            + f" (preview: {case_dir / OFFSET / 'preview.png'})"
        )
    return info


if __name__ == "__main__":
    sys.exit(stage_main("offset", run))
