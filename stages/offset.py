"""Skeleton offset: move and scale the reference skeleton onto the source person.

The paper's Algorithm 1 is missing from the text we have; this is the reconstruction documented
in the README (method section):

- scale ``s`` = median source body chain length / median reference body chain length (the chain
  nose-neck + neck-hips + thigh + shin does not change with pose, unlike a bounding box);
- ``mode: video``: one translation ``t`` = source anchor - s x reference anchor on the first frame
  where both are found, applied to every frame, so the reference keeps its own trajectory (a
  jump still leaves the ground); ``mode: frame``: a translation per frame, pinning the reference
  anchor to the source anchor in every frame;
- anchor ``feet`` (bottom-centre of the ankles: keeps the person on the source's floor) or
  ``mid_hip``; joints under ``min_confidence`` are dropped, joints that land outside the frame are
  dropped (clipped to the canvas).

Writes ``offset/aligned.parquet``, ``offset/aligned_skeleton/`` and ``offset/offset.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from eym.atomic import atomic_path, write_json
from eym.errors import InputError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import write_frames
from eym.skeleton import ANCHORS, body_chain_length, bounding_boxes, draw_skeletons, visible

from .common import OFFSET, POSE, log, section, stage_main

PARAMS = ("anchor", "scale", "mode", "min_confidence")


def body_scale(source: np.ndarray, reference: np.ndarray, min_confidence: float) -> float:
    """Median chain-length ratio; the median box-height ratio when no frame has a full chain."""
    src, ref = body_chain_length(source, min_confidence), body_chain_length(reference, min_confidence)
    if np.isfinite(src).any() and np.isfinite(ref).any():
        return float(np.nanmedian(src) / np.nanmedian(ref))
    src_h, ref_h = (np.diff(bounding_boxes(k, min_confidence)[:, 1::2], axis=1)[:, 0] for k in (source, reference))
    if np.isfinite(src_h).any() and np.isfinite(ref_h).any():
        return float(np.nanmedian(src_h) / np.nanmedian(ref_h))
    raise InputError("skeleton offset: cannot measure the body size of the source or the reference")


def align(
    source: np.ndarray,
    reference: np.ndarray,
    anchor: str = "feet",
    scale: bool = True,
    mode: str = "video",
    min_confidence: float = 0.3,
    width: int | None = None,
    height: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Reference keypoints moved onto the source person; returns them and the transform used."""
    if anchor not in ANCHORS:
        raise InputError(f"params: offset.anchor must be one of {sorted(ANCHORS)}, not {anchor!r}")
    if mode not in ("video", "frame"):
        raise InputError(f"params: offset.mode must be video or frame, not {mode!r}")
    if len(source) != len(reference):
        raise InputError(f"skeleton offset: source has {len(source)} frames, reference {len(reference)}")
    s = body_scale(source, reference, min_confidence) if scale else 1.0
    src_anchor = ANCHORS[anchor](source, min_confidence)
    ref_anchor = ANCHORS[anchor](reference, min_confidence)
    both = np.isfinite(src_anchor).all(-1) & np.isfinite(ref_anchor).all(-1)
    if not both.any():
        raise InputError(f"skeleton offset: the {anchor} anchor is never found in both source and reference")
    if mode == "video":
        f0 = int(np.argmax(both))
        shift = np.broadcast_to(src_anchor[f0] - s * ref_anchor[f0], (len(reference), 2))
    else:
        # Frames where an anchor is missing borrow the nearest frame's translation.
        good = np.where(both)[0]
        nearest = good[np.abs(np.arange(len(reference))[:, None] - good[None]).argmin(1)]
        shift = src_anchor[nearest] - s * ref_anchor[nearest]
    aligned = reference.copy()
    aligned[..., :2] = s * reference[..., :2] + shift[:, None, :]
    keep = visible(reference, min_confidence)
    if width and height:
        x, y = aligned[..., 0], aligned[..., 1]
        keep &= (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    clipped = int((visible(reference, min_confidence) & ~keep).sum())
    aligned[~keep] = (np.nan, np.nan, 0.0)
    info = {
        "scale": s,
        "translation": shift[0].tolist() if mode == "video" else shift.tolist(),
        "anchor": anchor,
        "mode": mode,
        "joints_outside_frame": clipped,
    }
    return aligned, info


def run(case_dir: Path, params: dict) -> dict:
    """Skeleton offset: the reference skeleton scaled and moved onto the source person."""
    p = section(params, "offset", PARAMS)
    case_dir = Path(case_dir)
    source, meta = read_keypoints(case_dir / POSE / "source.parquet")
    reference, _ = read_keypoints(case_dir / POSE / "reference.parquet")
    width, height = int(meta["width"]), int(meta["height"])
    aligned, info = align(
        source, reference, p["anchor"], bool(p["scale"]), p["mode"], float(p["min_confidence"]), width, height
    )
    with atomic_path(case_dir / OFFSET) as out:
        out.mkdir()
        write_keypoints(out / "aligned.parquet", aligned, width, height, role="aligned_reference", **info)
        write_frames(out / "aligned_skeleton", draw_skeletons(aligned, height, width, float(p["min_confidence"])))
        write_json(out / "offset.json", info)
    log.info(
        "offset: scale %.3f, anchor %s (%s mode), %d joints outside the frame dropped",
        info["scale"],
        info["anchor"],
        info["mode"],
        info["joints_outside_frame"],
    )
    return info


if __name__ == "__main__":
    sys.exit(stage_main("offset", run))
