"""Where an edit may change pixels: per frame, the source person (its mask and its skeleton drawn as a
body) joined with the place the target person will take (the aligned skeleton as a body), grown and feathered.

Sizes are shares of the source person's height (the median height of its masks), so one setting fits
a person filling the frame and one far away. Outside the region the sampling keeps the source
(``sampling.preserve``); the region's alpha is exactly 0 beyond the feather, 1 inside the grown region.
"""

from __future__ import annotations

import cv2
import numpy as np

from .skeleton import LIMBS, J, visible

TORSO = (J["right_shoulder"], J["left_shoulder"], J["left_hip"], J["right_hip"])
HEAD = (J["nose"], J["right_eye"], J["left_eye"], J["right_ear"], J["left_ear"])
# (elbow, wrist) and (knee, ankle), and how far the hand or foot reaches on, as a share of the forearm or shin
EXTREMITIES = ((J["right_elbow"], J["right_wrist"], 0.5), (J["left_elbow"], J["left_wrist"], 0.5),
               (J["right_knee"], J["right_ankle"], 0.3), (J["left_knee"], J["left_ankle"], 0.3))  # fmt: skip
HEAD_RADIUS = 0.09  # of the person's height: a head is about an eighth of a standing adult


def person_height(masks: np.ndarray, keypoints: np.ndarray, min_confidence: float = 0.3) -> float:
    """The source person's height in pixels: the median over frames of its mask's rows, else of its
    skeleton's extent (a skeleton stops at the ankles and the eyes: a little shorter), else half the frame."""
    rows = [np.flatnonzero(m.any(axis=1)) for m in masks]
    heights = [r[-1] - r[0] + 1 for r in rows if len(r)]
    if heights:
        return float(np.median(heights))
    seen = visible(keypoints, min_confidence)
    spans = [np.ptp(kp[v, 1]) * 1.15 for kp, v in zip(keypoints, seen) if v.sum() >= 2]
    return float(np.median(spans)) if spans else masks.shape[1] / 2


def body_masks(keypoints: np.ndarray, height: int, width: int, size: float, limb_width: float, min_confidence=0.3):
    """Bool (frames, H, W): a skeleton drawn as a body: limbs ``limb_width × size`` thick, the torso
    between shoulders and hips filled, a head around the face joints."""
    seen = visible(keypoints, min_confidence)
    thickness = max(1, int(round(limb_width * size)))
    radius = max(1, int(round(HEAD_RADIUS * size)))
    out = np.zeros((len(keypoints), height, width), np.uint8)
    for frame, (kp, v) in enumerate(zip(keypoints, seen)):
        canvas = out[frame]
        points = np.round(np.nan_to_num(kp[:, :2])).astype(np.int32)
        for a, b in LIMBS:
            if v[a] and v[b]:
                cv2.line(canvas, tuple(points[a]), tuple(points[b]), 1, thickness, cv2.LINE_8)
        for a, b, reach in EXTREMITIES:  # hands and feet go on past the wrists and ankles
            if v[a] and v[b]:
                end = np.round(kp[b, :2] + reach * (kp[b, :2] - kp[a, :2])).astype(np.int32)
                cv2.line(canvas, tuple(points[b]), tuple(end), 1, thickness, cv2.LINE_8)
        for joint in np.flatnonzero(v):
            cv2.circle(canvas, tuple(points[joint]), thickness // 2 + 1, 1, -1)
        torso = [points[j] for j in TORSO if v[j]]
        if len(torso) >= 3:
            cv2.fillPoly(canvas, [cv2.convexHull(np.array(torso))], 1)
        face = [points[j] for j in HEAD if v[j]]
        if face:
            centre = np.mean(face, axis=0).round().astype(int)
            cv2.circle(canvas, tuple(centre), radius, 1, -1)
    return out.astype(bool)


def people(source_masks, aligned, source_keypoints, limb_width: float, min_confidence: float = 0.3):
    """The source person's height, and bool (frames, H, W) of where the source person is (its mask and its
    skeleton as a body) and where the target will be (the aligned skeleton as a body)."""
    frames, height, width = source_masks.shape
    size = person_height(source_masks, source_keypoints, min_confidence)
    target = body_masks(aligned, height, width, size, limb_width, min_confidence)
    # the source's skeleton too: segmentation misses thin limbs, which would otherwise come back as ghosts
    source = body_masks(source_keypoints, height, width, size, limb_width, min_confidence)
    return size, source_masks | source, target


def smoothstep(ramp: np.ndarray) -> np.ndarray:
    """0 to 1 with no visible edge where a linear ramp starts or ends."""
    return ramp * ramp * (3 - 2 * ramp)


def feathered(core: np.ndarray, size: float, margin: float, feather: float) -> np.ndarray:
    """Float32 (frames, H, W): 1 on ``core`` grown by ``margin × size``, falling to 0 over ``feather × size``."""
    grow, fade = margin * size, max(feather * size, 1e-6)
    out = np.zeros(core.shape, np.float32)
    for i, frame in enumerate(core.astype(np.uint8)):
        if not frame.any():  # no person in this frame: nothing may change
            continue
        outside = cv2.distanceTransform(1 - frame, cv2.DIST_L2, 5)  # pixels to the nearest region pixel
        ramp = np.clip(1.0 - (outside - grow) / fade, 0.0, 1.0)
        out[i] = smoothstep(ramp)
    return out


def edit_region(
    source_masks: np.ndarray,
    aligned: np.ndarray,
    source_keypoints: np.ndarray,
    limb_width: float,
    margin: float,
    feather: float,
    min_confidence: float = 0.3,
) -> np.ndarray:
    """Float32 (frames, H, W) in [0, 1]: 1 on both people's grown region, falling to 0 over the feather."""
    size, source, target = people(source_masks, aligned, source_keypoints, limb_width, min_confidence)
    return feathered(source | target, size, margin, feather)


def to_png(region: np.ndarray) -> np.ndarray:
    """uint8 frames of a region (exact 0 and 1 stay exact)."""
    return np.round(region * 255).astype(np.uint8)


def read_region(folder) -> np.ndarray:
    """A region written by the offset stage (``offset/region/``) as float32 (frames, H, W) in [0, 1]."""
    from .media import read_frames

    return read_frames(folder)[..., 0].astype(np.float32) / 255.0
