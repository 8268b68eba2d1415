"""Puppet bodies: proportions, poses and the 2-D forward kinematics that turn them into keypoints.

A puppet is a planar articulated figure facing the camera. Segments are rigid, so every limb has
the same length in every pose: the ground truth for retargeting. Angles are radians; limb angles
are measured from hanging straight down, positive outward (away from the body's centre line).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from eym.skeleton import NUM_JOINTS, J


@dataclass(frozen=True)
class Proportions:
    """Segment lengths as fractions of standing height (ground to crown)."""

    ankle_height: float = 0.045
    shin: float = 0.235
    thigh: float = 0.245
    torso: float = 0.30
    neck_to_nose: float = 0.105
    nose_to_crown: float = 0.07
    upper_arm: float = 0.165
    forearm: float = 0.145
    shoulder_half_width: float = 0.105
    hip_half_width: float = 0.06

    @staticmethod
    def sample(rng: np.random.Generator, body: str = "adult") -> "Proportions":
        """Each segment within 8 % of the average adult's, times the multipliers of ``body`` (BODY_TYPES)."""
        if body not in BODY_TYPES:
            raise ValueError(f"unknown body type {body!r}; choose from {sorted(BODY_TYPES)}")
        base, factors = Proportions(), BODY_TYPES[body]
        return Proportions(
            **{f.name: getattr(base, f.name) * rng.uniform(0.92, 1.08) * factors.get(f.name, 1.0) for f in fields(base)}
        )


# Body types with deliberately different proportions (multipliers of the adult segments), to test
# retargeting between people whose bodies differ more than one scale can express.
BODY_TYPES = {
    "adult": {},
    "child": {
        "neck_to_nose": 1.35,
        "nose_to_crown": 1.35,
        "torso": 0.9,
        "thigh": 0.78,
        "shin": 0.78,
        "upper_arm": 0.82,
        "forearm": 0.82,
        "shoulder_half_width": 0.85,
    },
    "long_limbed": {"thigh": 1.18, "shin": 1.18, "upper_arm": 1.15, "forearm": 1.15, "torso": 0.92},
}


@dataclass(frozen=True)
class Pose:
    root_dx: float = 0.0  # horizontal shift of the hips, in heights
    root_dy: float = 0.0  # vertical lift of the whole body (negative = up), in heights
    lean: float = 0.0  # torso tilt, positive towards image right
    head_tilt: float = 0.0
    yaw: float = 0.0  # body turn: narrows shoulders and hips, turns the face
    right_arm: float = 0.15
    right_elbow: float = 0.1
    left_arm: float = 0.15
    left_elbow: float = 0.1
    right_leg: float = 0.05
    right_knee: float = 0.0
    left_leg: float = 0.05
    left_knee: float = 0.0


@dataclass(frozen=True)
class Placement:
    """Where a puppet stands in the frame, as fractions of the frame size."""

    x: float  # hips' horizontal position / width
    ground: float  # ground line / height
    height: float  # standing height / frame height

    def to_dict(self) -> dict:
        return asdict(self)


def _limb(side: float, angle: float) -> np.ndarray:
    """Unit vector of a limb on `side` (-1: person's right = image left, +1: left) at `angle`."""
    return np.array([side * math.sin(angle), math.cos(angle)])


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def pose_keypoints(pose: Pose, prop: Proportions, place: Placement, width: int, height: int) -> np.ndarray:
    """18 OpenPose keypoints (x, y, confidence=1) in pixels for one pose."""
    h = place.height * height  # standing height in pixels
    kp = np.zeros((NUM_JOINTS, 3), dtype=np.float64)
    hips = np.zeros(2)
    yaw_c = math.cos(pose.yaw)
    up = np.array([math.sin(pose.lean), -math.cos(pose.lean)])
    across = np.array([math.cos(pose.lean), math.sin(pose.lean)])  # towards image right

    neck = hips + prop.torso * h * up
    for side, name in ((-1, "right"), (1, "left")):
        hip = hips + np.array([side * prop.hip_half_width * h * yaw_c, 0.0])
        leg, knee_bend = getattr(pose, f"{name}_leg"), getattr(pose, f"{name}_knee")
        knee = hip + prop.thigh * h * _limb(side, leg)
        ankle = knee + prop.shin * h * _limb(side, leg - knee_bend)
        shoulder = neck + side * prop.shoulder_half_width * h * yaw_c * across
        arm, elbow_bend = getattr(pose, f"{name}_arm"), getattr(pose, f"{name}_elbow")
        elbow = shoulder + prop.upper_arm * h * _rotate(_limb(side, arm), pose.lean)
        wrist = elbow + prop.forearm * h * _rotate(_limb(side, arm + elbow_bend), pose.lean)
        for joint, point in (
            ("hip", hip),
            ("knee", knee),
            ("ankle", ankle),
            ("shoulder", shoulder),
            ("elbow", elbow),
            ("wrist", wrist),
        ):
            kp[J[f"{name}_{joint}"], :2] = point
    kp[J["neck"], :2] = neck

    # Turning the head moves the nose sideways: a rotation about the neck keeps the segment rigid.
    head_up = _rotate(up, pose.head_tilt + 0.25 * math.sin(pose.yaw))
    head_across = np.array([-head_up[1], head_up[0]])
    nose = neck + prop.neck_to_nose * h * head_up
    kp[J["nose"], :2] = nose
    turn = math.sin(pose.yaw)
    for side, name in ((-1, "right"), (1, "left")):
        eye_x = (side * 0.024 * yaw_c + 0.012 * turn) * h
        ear_x = (side * 0.052 * yaw_c + 0.01 * turn) * h
        kp[J[f"{name}_eye"], :2] = nose + eye_x * head_across + 0.022 * h * head_up
        kp[J[f"{name}_ear"], :2] = nose + ear_x * head_across + 0.012 * h * head_up

    # Stand on the ground: the lower ankle sits at ankle height above the ground line.
    ankles_y = kp[[J["right_ankle"], J["left_ankle"]], 1]
    offset_y = place.ground * height - prop.ankle_height * h - ankles_y.max() + pose.root_dy * h
    kp[:, 0] += place.x * width + pose.root_dx * h
    kp[:, 1] += offset_y
    kp[:, 2] = 1.0
    return kp
