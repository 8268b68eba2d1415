"""Pose extraction: OpenPose-18 keypoints per frame for the source and the reference, plus their
skeleton images for ControlNet. The source's pose is found on its full frames by default, or on its
background-masked frames as the paper does (``pose.source_frames: masked``): MediaPipe finds people
seen from the waist or the knees up far more often in the full frames (docs/benchmarks.md).

Backends: ``mediapipe`` (BlazePose mapped to OpenPose-18; offline, default), ``openpose``
(controlnet_aux's body network) and ``dwpose`` (DWPose ONNX models). When a frame holds several
people the largest is kept and the frames are reported. Short gaps are filled by interpolating
each joint over time. Writes ``pose/{source,reference}.parquet``, ``pose/{source,reference}_skeleton/``
and ``pose/meta.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from eym.atomic import atomic_path, write_json
from eym.detect.pose import PoseDetector
from eym.errors import InputError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import read_frames, write_frames
from eym.schema import Pose
from eym.skeleton import draw_skeletons, visible

from .common import FRAMES, MASKS, POSE, log, read_case, section, stage_main


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
    """Frames without a usable body: fewer than 2 of neck, shoulders and hips (a person seen from the
    waist up, or with the head cut off, still counts)."""
    core = [1, 2, 5, 8, 11]
    return [int(f) for f in np.where(visible(kp, min_confidence)[:, core].sum(1) < 2)[0]]


def _finish(kp: np.ndarray, several: list[int], p: Pose, what: str, where: Path) -> tuple[np.ndarray, dict]:
    threshold = float(p.min_confidence)
    missing = missing_frames(kp, threshold)
    if len(missing) > float(p.max_missing_fraction) * len(kp):
        hint = ""
        if p.backend == "mediapipe":
            hint = (
                ". MediaPipe's pose detector starts from the face: if the head is out of the frame, use "
                "pose.backend: dwpose or openpose"
            )
            if p.source_frames == "masked" and what == "source":
                hint += "; it also finds people more often in the full frames (pose.source_frames: full)"
        raise InputError(
            f"{where}: no person found in {len(missing)} of {len(kp)} {what} frames (frames {missing}); "
            f"pose.max_missing_fraction allows {float(p.max_missing_fraction):.0%}{hint}"
        )
    if several:
        log.warning("pose: several people in %s frames %s: kept the largest", what, several)
    filled = 0
    if p.interpolate_missing:
        kp, filled = fill_gaps(kp, threshold)
    return kp, {"frames_without_person": missing, "frames_with_several_people": several, "joints_interpolated": filled}


def never_seen_warnings(kp: np.ndarray, min_confidence: float, what: str) -> list[str]:
    """A warning naming the joints missing in every frame (ControlNet will draw no limb for them)."""
    from eym.skeleton import JOINTS

    missing = [JOINTS[j] for j in np.where(~visible(kp, min_confidence).any(0))[0]]
    if not missing:
        return []
    return [
        f"the {what} never shows {len(missing)} of 18 joints ({', '.join(missing)}): the edit gets no "
        "skeleton for them and is free to draw those limbs anywhere"
    ]


def run(case_dir: Path, params: dict) -> dict:
    """Pose extraction: keypoints and skeleton images of the folder's source and/or reference."""
    p = section(params, "pose")
    case_dir = Path(case_dir)
    case = read_case(case_dir)
    if p.source_frames not in ("full", "masked"):
        raise InputError(f"params: pose.source_frames must be full or masked, not {p.source_frames!r}")
    meta = json.loads((case_dir / FRAMES / "meta.json").read_text())
    width, height = int(meta["width"]), int(meta["height"])
    threshold = float(p.min_confidence)
    detect = PoseDetector(p)
    found, info = {}, {"backend": p.backend, "warnings": []}
    if case.source is not None:
        frames_dir = case_dir / (MASKS + "/masked" if p.source_frames == "masked" else FRAMES + "/source")
        kp, several = detect(read_frames(frames_dir), "source")
        found["source"], info["source"] = _finish(kp, several, p, "source", frames_dir)
    if case.reference is not None:
        frames_dir = case_dir / FRAMES / "reference"
        if frames_dir.is_dir():
            kp, several = detect(read_frames(frames_dir), "reference")
            found["reference"], info["reference"] = _finish(kp, several, p, "reference", frames_dir)
        else:
            found["reference"], _ = read_keypoints(case_dir / FRAMES / "reference_keypoints.parquet")
            info["reference"] = {"from_keypoints_file": True}
        info["warnings"] = never_seen_warnings(found["reference"], threshold, "reference")
    for warning in info["warnings"]:
        log.warning("pose: %s", warning)
    with atomic_path(case_dir / POSE) as out:
        out.mkdir()
        for role, kp in found.items():
            write_keypoints(out / f"{role}.parquet", kp, width, height, role=role, backend=p.backend)
            write_frames(out / f"{role}_skeleton", draw_skeletons(kp, height, width, threshold))
        write_json(out / "meta.json", info)
    log.info(
        "pose (%s): %s",
        p.backend,
        ", ".join(f"{role} joints found {100 * visible(kp, threshold).mean():.0f}%" for role, kp in found.items()),
    )
    return info


if __name__ == "__main__":
    sys.exit(stage_main("pose", run))
