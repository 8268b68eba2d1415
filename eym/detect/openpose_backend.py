"""OpenPose body keypoints through controlnet_aux (the annotator ControlNet-OpenPose was trained on).

Only the body network is loaded (``body_pose_model.pth``, from a folder, a file, or a hub id such
as ``lllyasviel/Annotators`` found in the local Hugging Face cache).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingWeightsError

BODY_FILE = "body_pose_model.pth"


def locate_body_model(annotator: str, allow_download: bool = False) -> Path:
    path = Path(annotator).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / BODY_FILE).is_file():
            return path / BODY_FILE
        raise MissingWeightsError(f"OpenPose annotator folder {path} has no {BODY_FILE}")
    if annotator.count("/") != 1:
        raise MissingWeightsError(f"OpenPose annotator {annotator!r}: no such file or folder, and not a hub id")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(annotator, BODY_FILE, local_files_only=not allow_download))
    except Exception as exc:
        raise MissingWeightsError(
            f"OpenPose body model {annotator}/{BODY_FILE} is not in the local Hugging Face cache "
            f"({type(exc).__name__}). Download it where you have network (hf download {annotator} {BODY_FILE} "
            f"--local-dir models/annotators) and set pose.annotator to that folder, or use pose.backend: mediapipe."
        ) from exc


def open_detector(annotator: str, allow_download: bool = False, device: str = "cpu"):
    from controlnet_aux.open_pose import OpenposeDetector
    from controlnet_aux.open_pose.body import Body

    body = Body(str(locate_body_model(annotator, allow_download)))
    body.to(device)
    return OpenposeDetector(body)


def detect_people(frames: np.ndarray, detector, progress=None) -> list[list[np.ndarray]]:
    """Per frame, a list of people as (18, 3) arrays of x, y (pixels) and confidence."""
    from controlnet_aux.open_pose.body import Body

    people = []
    for frame in frames:
        candidate, subset = detector.body_estimation(np.ascontiguousarray(frame[:, :, ::-1]))  # it expects BGR
        found = []
        for body in Body.format_body_result(candidate, subset):
            kp = np.full((18, 3), np.nan, np.float32)
            kp[:, 2] = 0
            for j, point in enumerate(body.keypoints):
                if point is not None:
                    kp[j] = (point.x, point.y, point.score)
            found.append(kp)
        people.append(found)
        if progress:
            progress()
    return people
