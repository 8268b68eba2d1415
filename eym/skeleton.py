"""The OpenPose-18 (COCO) body skeleton: joint layout, body measurements and skeleton images.

Keypoint arrays everywhere in the project are float32 (frames, 18, 3) holding x, y in pixels and
a confidence in [0, 1]; a missing joint has confidence 0 and x = y = NaN.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys

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


def _midpoint(kp: np.ndarray, a: int, b: int, vis: np.ndarray, strict: bool = False) -> np.ndarray:
    """Mean of joints a and b where both are visible; where one is, that one (unless ``strict``); else NaN."""
    pa, pb = kp[..., a, :2], kp[..., b, :2]
    va, vb = vis[..., a, None], vis[..., b, None]
    both = np.where(va & vb, (pa + pb) / 2, np.nan)
    if strict:
        return both
    return np.where(va & ~vb, pa, np.where(vb & ~va, pb, both))


def _segment(kp: np.ndarray, a: int, b: int, vis: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(kp[..., a, :2] - kp[..., b, :2], axis=-1)
    return np.where(vis[..., a] & vis[..., b], d, np.nan)


def mid_hip(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) centre of the hips (NaN unless both hips are found)."""
    return _midpoint(kp, J["right_hip"], J["left_hip"], visible(kp, min_confidence), strict=True)


def shoulder_centre(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) centre of the shoulders (NaN unless both are found)."""
    return _midpoint(kp, J["right_shoulder"], J["left_shoulder"], visible(kp, min_confidence), strict=True)


def neck(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) the neck joint (NaN where it is not found)."""
    return np.where(visible(kp, min_confidence)[..., J["neck"], None], kp[..., J["neck"], :2], np.nan)


def feet_centre(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(..., 2) bottom-centre of the feet: mean ankle x, lowest ankle y."""
    vis = visible(kp, min_confidence)
    centre = _midpoint(kp, J["right_ankle"], J["left_ankle"], vis)
    ankles = [J["right_ankle"], J["left_ankle"]]
    ys = np.where(vis[..., ankles], kp[..., ankles, 1], -np.inf).max(-1)
    lowest = np.where(np.isfinite(ys), ys, np.nan)
    return np.stack([centre[..., 0], lowest], axis=-1)


# Anchors of the skeleton offset, in the order tried when the anchor is chosen automatically: the
# feet keep the person on the source's floor; the others still work when the legs are out of view.
ANCHORS = {"feet": feet_centre, "mid_hip": mid_hip, "neck": neck, "shoulder_centre": shoulder_centre}

# Body segments whose length ratios give the scale between two people (left and right averaged).
SEGMENTS = {
    "shoulder_width": ((2, 5),),
    "neck_hip": ((1, 8), (1, 11)),
    "upper_arm": ((2, 3), (5, 6)),
    "forearm": ((3, 4), (6, 7)),
    "thigh": ((8, 9), (11, 12)),
    "shin": ((9, 10), (12, 13)),
    "neck_nose": ((1, 0),),
    "eye_distance": ((14, 15),),
}

# The skeleton as a tree rooted at the neck: each joint's parent (the bones of per-bone retargeting).
PARENT = {0: 1, 2: 1, 3: 2, 4: 3, 5: 1, 6: 5, 7: 6, 8: 1, 9: 8, 10: 9, 11: 1, 12: 11, 13: 12}
PARENT.update({14: 0, 15: 0, 16: 14, 17: 15})  # eyes on the nose, ears on the eyes


def segment_lengths(kp: np.ndarray, min_confidence: float = 0.3) -> dict[str, np.ndarray]:
    """Per frame, the length of each segment of SEGMENTS (mean over the visible sides; NaN if none)."""
    vis = visible(kp, min_confidence)
    out = {}
    for name, pairs in SEGMENTS.items():
        sides = np.stack([_segment(kp, a, b, vis) for a, b in pairs])
        seen = np.isfinite(sides)
        out[name] = np.where(seen.any(0), np.nansum(sides, 0) / np.maximum(seen.sum(0), 1), np.nan)
    return out


def bone_lengths(kp: np.ndarray, min_confidence: float = 0.3) -> np.ndarray:
    """(18,) median length over frames of each joint's bone to its parent (NaN: never seen; the neck: 0)."""
    vis = visible(kp, min_confidence)
    out = np.zeros(NUM_JOINTS)
    for child, parent in PARENT.items():
        lengths = _segment(kp, child, parent, vis)
        out[child] = np.nanmedian(lengths) if np.isfinite(lengths).any() else np.nan
    return out


def bone_length_errors(kp: np.ndarray, truth: np.ndarray, min_confidence: float = 0.3, shortest: float = 3.0):
    """Relative length error of every bone (PARENT) seen in both skeletons, over all frames; bones
    shorter than ``shortest`` pixels in the truth are left out."""
    both = visible(kp, min_confidence) & visible(truth, min_confidence)
    out = []
    for child, parent in PARENT.items():
        ok = both[:, child] & both[:, parent]
        a = np.linalg.norm(kp[ok, child, :2] - kp[ok, parent, :2], axis=-1)
        t = np.linalg.norm(truth[ok, child, :2] - truth[ok, parent, :2], axis=-1)
        out += list(np.abs(a - t)[t > shortest] / t[t > shortest])
    return np.array(out)


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


def _within(pred: np.ndarray, truth: np.ndarray, alpha: float, min_confidence: float) -> np.ndarray:
    """(frames, joints): the predicted joint is within alpha x the larger side of the true person's box."""
    boxes = bounding_boxes(truth, min_confidence)
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    dist = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1)
    return visible(pred, min_confidence) & (np.nan_to_num(dist, nan=np.inf) <= alpha * size[:, None])


def pck(
    pred: np.ndarray, truth: np.ndarray, alpha: float = 0.1, min_confidence: float = 0.3, only: np.ndarray | None = None
) -> float:
    """Percentage of correct keypoints: a predicted joint is correct within alpha x the larger side
    of the true person's box. Joints missing in the truth are skipped; joints missing in the
    prediction count as wrong. ``only``: a (frames, joints) mask of the joints to count."""
    correct = _within(pred, truth, alpha, min_confidence)
    true_vis = visible(truth, min_confidence)
    if only is not None:
        true_vis &= only
    total = true_vis.sum()
    return float((correct & true_vis).sum() / total) if total else float("nan")


def moved_joints(source: np.ndarray, target: np.ndarray, alpha: float = 0.1, min_confidence: float = 0.3):
    """(frames, joints) mask of the target's joints that the source's own do not already match at
    PCK's threshold (seen in both): what an edit from ``source`` to ``target`` has to move."""
    return (
        visible(source, min_confidence)
        & visible(target, min_confidence)
        & ~_within(source, target, alpha, min_confidence)
    )


def draw_skeletons(kp: np.ndarray, height: int, width: int, min_confidence: float = 0.3) -> np.ndarray:
    """(frames, H, W, 3) uint8 OpenPose skeleton images, drawn by controlnet_aux's own code."""
    draw_bodypose, Keypoint = _bodypose_drawing()
    vis = visible(kp, min_confidence)
    out = np.zeros((len(kp), height, width, 3), dtype=np.uint8)
    for f in range(len(kp)):
        points = [
            Keypoint(float(kp[f, j, 0]) / width, float(kp[f, j, 1]) / height) if vis[f, j] else None
            for j in range(NUM_JOINTS)
        ]
        draw_bodypose(out[f], points)
    return out


@functools.cache
def _bodypose_drawing():
    """controlnet_aux's ``draw_bodypose`` and ``Keypoint``: how ControlNet-OpenPose's images were drawn.
    ``import controlnet_aux`` runs the package's __init__, which imports every annotator it ships
    (depth, SAM, line art, faces: 3 s of each stage process's 4.5 s, to draw lines). When nothing has
    imported the package yet, its ``open_pose`` files are loaded under placeholder packages that are
    dropped again, so a later ``import controlnet_aux`` still runs the package's own __init__."""
    if "controlnet_aux" in sys.modules:
        from controlnet_aux.open_pose.body import Keypoint
        from controlnet_aux.open_pose.util import draw_bodypose

        return draw_bodypose, Keypoint
    root = importlib.util.find_spec("controlnet_aux").submodule_search_locations[0]
    loaded = set(sys.modules)
    try:
        for name, folder in (("controlnet_aux", root), ("controlnet_aux.open_pose", f"{root}/open_pose")):
            spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
            spec.submodule_search_locations = [folder]
            sys.modules[name] = importlib.util.module_from_spec(spec)
        util = importlib.import_module("controlnet_aux.open_pose.util")
        return util.draw_bodypose, sys.modules["controlnet_aux.open_pose.body"].Keypoint
    finally:
        for name in set(sys.modules) - loaded:
            if name.split(".")[0] == "controlnet_aux":
                del sys.modules[name]
