"""The puppet motion library: each motion maps time to a Pose, varied by speed, amplitude and phase."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .body import Pose


def _rise(x: float) -> float:
    """0 -> 1 -> 0 over a cycle phase in radians, smooth at both ends."""
    return 0.5 - 0.5 * math.cos(x)


def walk_in_place(phi: float, amp: float) -> Pose:
    right, left = max(0.0, math.sin(phi)), max(0.0, -math.sin(phi))
    return Pose(
        root_dy=-0.012 * abs(math.sin(phi)),
        right_leg=0.06 + 0.38 * amp * right,
        right_knee=1.0 * amp * right,
        left_leg=0.06 + 0.38 * amp * left,
        left_knee=1.0 * amp * left,
        right_arm=0.2 + 0.3 * amp * left,
        right_elbow=0.5 + 0.5 * amp * left,
        left_arm=0.2 + 0.3 * amp * right,
        left_elbow=0.5 + 0.5 * amp * right,
        head_tilt=0.04 * math.sin(phi),
    )


def wave(phi: float, amp: float) -> Pose:
    return Pose(
        lean=0.04 * math.sin(phi / 2),
        head_tilt=0.07 * math.sin(phi),
        right_arm=2.35,
        right_elbow=0.55 + 0.55 * amp * math.sin(phi),
        left_arm=0.14,
        left_elbow=0.1,
    )


def jump(phi: float, amp: float) -> Pose:
    p = (phi / (2 * math.pi)) % 1.0
    crouch = (
        _rise(2 * math.pi * p / 0.25) if p < 0.25 else (_rise(2 * math.pi * (p - 0.75) / 0.25) if p > 0.75 else 0.0)
    )
    air = math.sin(math.pi * (p - 0.25) / 0.5) if 0.25 <= p <= 0.75 else 0.0
    arms = 0.15 + 2.4 * air * amp
    return Pose(
        root_dy=-0.17 * amp * air,
        right_leg=0.05 + 0.5 * crouch,
        right_knee=1.0 * crouch,
        left_leg=0.05 + 0.5 * crouch,
        left_knee=1.0 * crouch,
        right_arm=arms,
        right_elbow=0.15,
        left_arm=arms,
        left_elbow=0.15,
    )


def squat(phi: float, amp: float) -> Pose:
    d = amp * _rise(phi)
    return Pose(
        right_leg=0.06 + 0.72 * d,
        right_knee=1.45 * d,
        left_leg=0.06 + 0.72 * d,
        left_knee=1.45 * d,
        right_arm=0.15 + 1.35 * d,
        right_elbow=0.1,
        left_arm=0.15 + 1.35 * d,
        left_elbow=0.1,
    )


def arms_raise(phi: float, amp: float) -> Pose:
    u = min(1.0, amp) * _rise(phi)
    return Pose(
        right_arm=0.15 + 2.75 * u, right_elbow=0.08, left_arm=0.15 + 2.75 * u, left_elbow=0.08, head_tilt=-0.05 * u
    )


def dance(phi: float, amp: float) -> Pose:
    s, s2 = math.sin(phi), math.sin(2 * phi)
    return Pose(
        root_dx=0.05 * amp * s,
        lean=-0.12 * amp * s,
        head_tilt=0.1 * s,
        right_arm=1.25 + 0.9 * amp * s,
        right_elbow=0.7 + 0.5 * s2,
        left_arm=1.25 - 0.9 * amp * s,
        left_elbow=0.7 - 0.5 * s2,
        right_leg=0.12 + 0.15 * max(0.0, s),
        right_knee=0.45 * amp * max(0.0, s),
        left_leg=0.12 + 0.15 * max(0.0, -s),
        left_knee=0.45 * amp * max(0.0, -s),
    )


def turn(phi: float, amp: float) -> Pose:
    return Pose(
        yaw=0.85 * amp * math.sin(phi),
        lean=0.03 * math.sin(phi),
        right_arm=0.35,
        right_elbow=0.35,
        left_arm=0.35,
        left_elbow=0.35,
        right_leg=0.08,
        left_leg=0.08,
    )


# name -> (pose function, cycles per second at speed 1, verb for prompts)
MOTIONS: dict[str, tuple[Callable[[float, float], Pose], float, str]] = {
    "walk_in_place": (walk_in_place, 0.9, "walking in place"),
    "wave": (wave, 1.4, "waving"),
    "jump": (jump, 0.75, "jumping"),
    "squat": (squat, 0.5, "squatting"),
    "arms_raise": (arms_raise, 0.5, "raising both arms"),
    "dance": (dance, 0.9, "dancing"),
    "turn": (turn, 0.4, "turning from side to side"),
}


@dataclass(frozen=True)
class MotionSpec:
    name: str
    speed: float = 1.0
    amplitude: float = 1.0
    phase: float = 0.0  # fraction of a cycle

    @staticmethod
    def sample(rng: np.random.Generator, name: str) -> "MotionSpec":
        return MotionSpec(
            name,
            speed=float(rng.uniform(0.8, 1.25)),
            amplitude=float(rng.uniform(0.75, 1.15)),
            phase=float(rng.uniform(0, 1)),
        )

    def pose_at(self, seconds: float) -> Pose:
        fn, cycles, _ = MOTIONS[self.name]
        return fn(2 * math.pi * (cycles * self.speed * seconds + self.phase), self.amplitude)

    @property
    def verb(self) -> str:
        return MOTIONS[self.name][2]

    def to_dict(self) -> dict:
        return asdict(self)
