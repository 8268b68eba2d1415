"""Pose extraction: OpenPose-18 keypoints per frame for the source (from its masked frames, as the
paper does) and the reference, plus their skeleton images for ControlNet.

Backends: ``mediapipe`` (BlazePose mapped to OpenPose-18; offline, default), ``openpose``
(controlnet_aux's body network) and ``dwpose`` (DWPose ONNX models). When a frame holds several
people the largest is kept and the frames are reported. Short gaps are filled by interpolating
each joint over time. Writes ``pose/{source,reference}.parquet``, ``pose/{source,reference}_skeleton/``
and ``pose/meta.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from eym.atomic import atomic_path, write_json
from eym.errors import InputError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import read_frames, write_frames
from eym.progress import Progress
from eym.skeleton import NUM_JOINTS, bounding_boxes, draw_skeletons, visible

from .common import FRAMES, MASKS, POSE, log, section, stage_main

PARAMS = (
    "backend",
    "min_confidence",
    "max_missing_fraction",
    "interpolate_missing",
    "mediapipe_complexity",
    "annotator",
    "dwpose",
    "allow_download",
)


def detect(frames: np.ndarray, p: dict, what: str) -> tuple[np.ndarray, list[int]]:
    """Keypoints (frames, 18, 3) of the largest person per frame, and the frames that had several."""
    backend = p["backend"]
    with Progress(len(frames), f"pose {what} ({backend})") as bar:
        if backend == "mediapipe":
            from eym.detect.mediapipe_backend import detect_poses

            return detect_poses(frames, model_complexity=int(p["mediapipe_complexity"]), progress=bar.update), []
        if backend == "openpose":
            from eym.detect import openpose_backend

            detector = openpose_backend.open_detector(p["annotator"], bool(p["allow_download"]))
            people = openpose_backend.detect_people(frames, detector, progress=bar.update)
        elif backend == "dwpose":
            from eym.detect import dwpose_backend

            detector = dwpose_backend.open_detector(p["dwpose"], bool(p["allow_download"]))
            people = dwpose_backend.detect_people(frames, detector, progress=bar.update)
        else:
            raise InputError(f"params: pose.backend must be mediapipe, openpose or dwpose, not {backend!r}")
    return pick_largest(people, float(p["min_confidence"]))


def pick_largest(people: list[list[np.ndarray]], min_confidence: float) -> tuple[np.ndarray, list[int]]:
    kp = np.full((len(people), NUM_JOINTS, 3), np.nan, np.float32)
    kp[..., 2] = 0
    several = []
    for f, found in enumerate(people):
        if not found:
            continue
        boxes = bounding_boxes(np.stack(found), min_confidence)
        areas = np.nan_to_num((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), nan=-1)
        kp[f] = found[int(np.argmax(areas))]
        if (areas > 0).sum() > 1:
            several.append(f)
    return kp, several


def fill_gaps(kp: np.ndarray, min_confidence: float) -> tuple[np.ndarray, int]:
    """Interpolate each joint linearly over frames where it is missing (holding the ends).

    Filled joints get confidence ``min_confidence``; joints never seen stay missing. Returns the
    keypoints and how many joint positions were filled.
    """
    out = kp.copy()
    seen = visible(kp, min_confidence)
    frames = np.arange(len(kp))
    filled = 0
    for j in range(kp.shape[1]):
        ok = seen[:, j]
        if ok.all() or not ok.any():
            continue
        for axis in (0, 1):
            out[~ok, j, axis] = np.interp(frames[~ok], frames[ok], kp[ok, j, axis])
        out[~ok, j, 2] = min_confidence
        filled += int((~ok).sum())
    return out, filled


def missing_frames(kp: np.ndarray, min_confidence: float) -> list[int]:
    """Frames without a usable body: fewer than 4 of neck, shoulders and hips."""
    core = [1, 2, 5, 8, 11]
    return [int(f) for f in np.where(visible(kp, min_confidence)[:, core].sum(1) < 4)[0]]


def _finish(kp: np.ndarray, several: list[int], p: dict, what: str, where: Path) -> tuple[np.ndarray, dict]:
    threshold = float(p["min_confidence"])
    missing = missing_frames(kp, threshold)
    if len(missing) > float(p["max_missing_fraction"]) * len(kp):
        raise InputError(
            f"{where}: no person found in {len(missing)} of {len(kp)} {what} frames (frames {missing}); "
            f"pose.max_missing_fraction allows {float(p['max_missing_fraction']):.0%}"
        )
    if several:
        log.warning("pose: several people in %s frames %s: kept the largest", what, several)
    filled = 0
    if p["interpolate_missing"]:
        kp, filled = fill_gaps(kp, threshold)
    return kp, {"frames_without_person": missing, "frames_with_several_people": several, "joints_interpolated": filled}


def run(case_dir: Path, params: dict) -> dict:
    """Pose extraction: source and reference keypoints and skeleton images."""
    p = section(params, "pose", PARAMS)
    case_dir = Path(case_dir)
    masked_dir = case_dir / MASKS / "masked"
    masked = read_frames(masked_dir)
    height, width = masked.shape[1:3]
    source, several = detect(masked, p, "source")
    source, source_info = _finish(source, several, p, "source", masked_dir)

    ref_frames_dir = case_dir / FRAMES / "reference"
    if ref_frames_dir.is_dir():
        reference, several = detect(read_frames(ref_frames_dir), p, "reference")
        reference, reference_info = _finish(reference, several, p, "reference", ref_frames_dir)
    else:
        reference, _ = read_keypoints(case_dir / FRAMES / "reference_keypoints.parquet")
        reference_info = {"from_keypoints_file": True}

    threshold = float(p["min_confidence"])
    with atomic_path(case_dir / POSE) as out:
        out.mkdir()
        for role, kp in (("source", source), ("reference", reference)):
            write_keypoints(out / f"{role}.parquet", kp, width, height, role=role, backend=p["backend"])
            write_frames(out / f"{role}_skeleton", draw_skeletons(kp, height, width, threshold))
        meta = {"backend": p["backend"], "source": source_info, "reference": reference_info}
        write_json(out / "meta.json", meta)
    log.info(
        "pose (%s): %d frames, source joints found %.0f%%, reference %.0f%%",
        p["backend"],
        len(source),
        100 * visible(source, threshold).mean(),
        100 * visible(reference, threshold).mean(),
    )
    return meta


if __name__ == "__main__":
    sys.exit(stage_main("pose", run))
