"""The pose detector of the configured backend (``pose.backend``): OpenPose-18 keypoints of the largest
person per frame, used by the pose stage and by the evaluation's re-detection of the edited frames."""

from __future__ import annotations

import numpy as np

from eym.errors import InputError
from eym.progress import Progress
from eym.schema import Pose
from eym.skeleton import NUM_JOINTS, bounding_boxes


class PoseDetector:
    """The configured pose backend, its network loaded once and used for every clip. ``margin``: MediaPipe's
    border (``detect_poses``); the pose stage uses none, the evaluation's re-detection ``evaluation.pose_margin``."""

    def __init__(self, p: Pose, margin: float = 0.0):
        self.p, self.backend, self.margin = p, p.backend, margin
        if self.backend == "openpose":
            from eym.detect import openpose_backend as module

            self.model = module.open_detector(p.annotator, bool(p.allow_download))
        elif self.backend == "dwpose":
            from eym.detect import dwpose_backend as module

            self.model = module.open_detector(p.dwpose, bool(p.allow_download))
        elif self.backend != "mediapipe":
            raise InputError(f"params: pose.backend must be mediapipe, openpose or dwpose, not {self.backend!r}")
        self.module = None if self.backend == "mediapipe" else module

    def __call__(self, frames: np.ndarray, what: str) -> tuple[np.ndarray, list[int]]:
        """Keypoints (frames, 18, 3) of the largest person per frame, and the frames that had several."""
        with Progress(len(frames), f"pose {what} ({self.backend})", unit="frame") as bar:
            if self.module is None:
                from eym.detect.mediapipe_backend import detect_poses

                complexity = int(self.p.mediapipe_complexity)
                return detect_poses(frames, model_complexity=complexity, margin=self.margin, progress=bar.update), []
            people = self.module.detect_people(frames, self.model, progress=bar.update)
        return pick_largest(people, float(self.p.min_confidence))


def pick_largest(people: list[list[np.ndarray]], min_confidence: float) -> tuple[np.ndarray, list[int]]:
    """Per frame, the keypoints of the person with the largest box, and the frames that showed several."""
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
