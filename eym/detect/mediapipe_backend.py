"""MediaPipe pose and selfie segmentation: offline, their models ship inside the mediapipe wheel.

Pose landmarks (BlazePose, 33 points) are mapped to the OpenPose-18 layout; the neck, which
BlazePose lacks, is the shoulders' midpoint. BlazePose finds one person per frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import MissingWeightsError
from ..skeleton import J, empty_keypoints

# OpenPose-18 joint -> BlazePose landmark index.
BLAZEPOSE = {
    "nose": 0,
    "left_eye": 2,
    "right_eye": 5,
    "left_ear": 7,
    "right_ear": 8,
    "left_shoulder": 11,
    "right_shoulder": 12,
    "left_elbow": 13,
    "right_elbow": 14,
    "left_wrist": 15,
    "right_wrist": 16,
    "left_hip": 23,
    "right_hip": 24,
    "left_knee": 25,
    "right_knee": 26,
    "left_ankle": 27,
    "right_ankle": 28,
}
SHIPPED_POSE_COMPLEXITY = 1  # pose_landmark_full.tflite; lite (0) and heavy (2) are downloaded on use


def detect_poses(
    frames: np.ndarray,
    min_detection_confidence: float = 0.5,
    video_mode: bool = True,
    model_complexity: int = SHIPPED_POSE_COMPLEXITY,
    margin: float = 0.0,
    progress=None,
) -> np.ndarray:
    """OpenPose-18 keypoints (frames, 18, 3) for RGB uint8 frames; undetected frames are empty.

    ``margin`` pads each frame on every side by that fraction of its larger side, repeating the
    edge pixels, before detection (keypoints stay in the frame's own coordinates): BlazePose misses
    many single images of people who fill the frame, and finds them with room around them
    (docs/benchmarks.md, eym-mini's ControlNet check).
    """
    import cv2
    import mediapipe as mp

    _check_pose_model(model_complexity)
    if not 0 <= margin <= 1:
        raise ValueError(f"mediapipe pose margin must be between 0 and 1, not {margin}")
    height, width = frames.shape[1:3]
    pad = int(round(margin * max(height, width)))
    kp = empty_keypoints(len(frames))
    with mp.solutions.pose.Pose(
        static_image_mode=not video_mode,
        model_complexity=model_complexity,
        min_detection_confidence=min_detection_confidence,
    ) as pose:
        for f, frame in enumerate(frames):
            if pad:
                frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            result = pose.process(np.ascontiguousarray(frame))
            if result.pose_landmarks:
                landmarks = result.pose_landmarks.landmark
                for name, index in BLAZEPOSE.items():
                    lm = landmarks[index]
                    x, y = lm.x * (width + 2 * pad) - pad, lm.y * (height + 2 * pad) - pad
                    kp[f, J[name]] = (x, y, lm.visibility)
                shoulders = kp[f, [J["right_shoulder"], J["left_shoulder"]]]
                kp[f, J["neck"]] = (*shoulders[:, :2].mean(0), shoulders[:, 2].min())
            if progress:
                progress()
    return kp


def segment_people(frames: np.ndarray, model_selection: int = 0, progress=None) -> np.ndarray:
    """Person probability (frames, H, W) float32 in [0, 1] from MediaPipe selfie segmentation."""
    import mediapipe as mp

    out = np.zeros(frames.shape[:3], np.float32)
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection) as seg:
        for f, frame in enumerate(frames):
            out[f] = seg.process(np.ascontiguousarray(frame)).segmentation_mask
            if progress:
                progress()
    return out


def _check_pose_model(model_complexity: int) -> None:
    from pathlib import Path

    import mediapipe

    name = {0: "lite", 1: "full", 2: "heavy"}.get(model_complexity)
    if name is None:
        raise ValueError(f"mediapipe model_complexity must be 0, 1 or 2, not {model_complexity}")
    model = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / f"pose_landmark_{name}.tflite"
    if not model.is_file():
        raise MissingWeightsError(
            f"mediapipe pose model_complexity={model_complexity} needs {model}, which the mediapipe wheel does not "
            f"ship (only 'full', complexity 1, is included). Use model_complexity: 1, or copy "
            f"pose_landmark_{name}.tflite from https://github.com/google/mediapipe (mediapipe/modules/pose_landmark) "
            f"to {model}."
        )
