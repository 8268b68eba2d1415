"""The OpenPose-18 (COCO) body skeleton: joint layout, body measurements and skeleton images.

Keypoint arrays everywhere in the project are float32 (frames, 18, 3) holding x, y in pixels and
a confidence in [0, 1]; a missing joint has confidence 0 and x = y = NaN.
"""

from __future__ import annotations

import numpy as np

JOINTS = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
NUM_JOINTS = len(JOINTS)
J = {name: i for i, name in enumerate(JOINTS)}

# Limbs in controlnet_aux's drawing order (0-based), the order that fixes each limb's colour.
LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)


def empty_keypoints(num_frames: int) -> np.ndarray:
    kp = np.full((num_frames, NUM_JOINTS, 3), np.nan, dtype=np.float32)
    kp[..., 2] = 0.0
    return kp


def visible(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """Boolean (..., 18): joints present with at least ``min_confidence``."""
    return (kp[..., 2] >= min_confidence) & np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1])


def _midpoint(kp: np.ndarray, a: int, b: int, vis: np.ndarray) -> np.ndarray:
    """Mean of joints a and b where both are visible, the visible one alone otherwise, else NaN."""
    pa, pb = kp[..., a, :2], kp[..., b, :2]
    va, vb = vis[..., a, None], vis[..., b, None]
    both = np.where(va & vb, (pa + pb) / 2, np.nan)
    return np.where(va & ~vb, pa, np.where(vb & ~va, pb, both))


def _segment(kp: np.ndarray, a: int, b: int, vis: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(kp[..., a, :2] - kp[..., b, :2], axis=-1)
    return np.where(vis[..., a] & vis[..., b], d, np.nan)


def mid_hip(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) centre of the hips (NaN where neither hip is found)."""
    return _midpoint(kp, J["right_hip"], J["left_hip"], visible(kp, min_confidence))


def feet_centre(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) bottom-centre of the feet: mean ankle x, lowest ankle y."""
    vis = visible(kp, min_confidence)
    centre = _midpoint(kp, J["right_ankle"], J["left_ankle"], vis)
    ankles = [J["right_ankle"], J["left_ankle"]]
    ys = np.where(vis[..., ankles], kp[..., ankles, 1], -np.inf).max(-1)
    lowest = np.where(np.isfinite(ys), ys, np.nan)
    return np.stack([centre[..., 0], lowest], axis=-1)


ANCHORS = {"mid_hip": mid_hip, "feet": feet_centre}


def body_chain_length(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(...) nose-neck + neck-hips + thigh + shin length: a body size that does not change with pose.

    Bounding-box height shrinks when a person squats or raises the arms; the sum of rigid segment
    lengths does not. Thigh and shin are averaged over the sides that are visible. NaN where the
    chain is incomplete.
    """
    vis = visible(kp, min_confidence)
    head = _segment(kp, J["nose"], J["neck"], vis)
    hips = _midpoint(kp, J["right_hip"], J["left_hip"], vis)
    neck = np.where(vis[..., J["neck"], None], kp[..., J["neck"], :2], np.nan)
    torso = np.linalg.norm(neck - hips, axis=-1)
    thigh = _nanmean2(
        _segment(kp, J["right_hip"], J["right_knee"], vis), _segment(kp, J["left_hip"], J["left_knee"], vis)
    )
    shin = _nanmean2(
        _segment(kp, J["right_knee"], J["right_ankle"], vis), _segment(kp, J["left_knee"], J["left_ankle"], vis)
    )
    return head + torso + thigh + shin


def _nanmean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of two arrays ignoring NaN; NaN where both are NaN."""
    count = np.isfinite(a).astype(np.float32) + np.isfinite(b)
    total = np.nan_to_num(a) + np.nan_to_num(b)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bounding_boxes(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(frames, 4) x0, y0, x1, y1 of the visible joints (NaN for frames with none)."""
    vis = visible(kp, min_confidence)
    any_vis = vis.any(-1)
    xs, ys = kp[..., 0], kp[..., 1]
    box = np.stack(
        [
            np.where(vis, xs, np.inf).min(-1),
            np.where(vis, ys, np.inf).min(-1),
            np.where(vis, xs, -np.inf).max(-1),
            np.where(vis, ys, -np.inf).max(-1),
        ],
        -1,
    )
    return np.where(any_vis[..., None], box, np.nan)


def pck(pred: np.ndarray, truth: np.ndarray, alpha: float = 0.1, min_confidence: float = 0.3) -> float:
    """Percentage of correct keypoints: a predicted joint is correct within alpha x the larger side
    of the true person's box. Joints missing in the truth are skipped; joints missing in the
    prediction count as wrong."""
    boxes = bounding_boxes(truth, min_confidence)
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    true_vis = visible(truth, min_confidence)
    pred_vis = visible(pred, min_confidence)
    dist = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1)
    correct = pred_vis & (np.nan_to_num(dist, nan=np.inf) <= alpha * size[:, None])
    total = true_vis.sum()
    return float((correct & true_vis).sum() / total) if total else float("nan")


def draw_skeletons(kp: np.ndarray, height: int, width: int, min_confidence: float = 0.3) -> np.ndarray:
    """(frames, H, W, 3) uint8 OpenPose skeleton images, drawn by controlnet_aux's own code."""
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    vis = visible(kp, min_confidence)
    out = np.zeros((len(kp), height, width, 3), dtype=np.uint8)
    for f in range(len(kp)):
        points = [
            Keypoint(float(kp[f, j, 0]) / width, float(kp[f, j, 1]) / height) if vis[f, j] else None
            for j in range(NUM_JOINTS)
        ]
        draw_bodypose(out[f], points)
    return out
