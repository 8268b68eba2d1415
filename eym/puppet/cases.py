"""Puppet cases: a source clip, a reference clip, and the ground-truth motion edit, from one seed.

Source: character A on background B performing motion M1. Reference: character C on background D
performing M2. Ground truth: A on B performing M2, with C's skeleton scaled by A's/C's body chain
length and moved so that the feet (bottom-centre of the ankles) of frame 0 coincide with A's: the
skeleton offset that ``stages.offset`` reconstructs from detected keypoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..keypoints import write_keypoints
from ..media import write_frames, write_image, write_video
from ..skeleton import feet_centre
from .body import Placement, Proportions, pose_keypoints
from .motions import MOTIONS, MotionSpec
from .render import Appearance, draw_puppet, make_background

# Files of a case folder, relative to it.
SOURCE_VIDEO, SOURCE_IMAGE, REFERENCE_VIDEO = "source.mp4", "source.png", "reference.mp4"
GT_EDIT_VIDEO = "gt/edit.mp4"
KEYPOINTS = {
    "source": "gt/source_keypoints.parquet",
    "reference": "gt/reference_keypoints.parquet",
    "edit": "gt/edit_keypoints.parquet",
}
MASKS = {"source": "gt/source_masks", "reference": "gt/reference_masks", "edit": "gt/edit_masks"}
CASE_INFO = "case.json"


@dataclass(frozen=True)
class Actor:
    look: Appearance
    body: Proportions
    place: Placement
    motion: MotionSpec

    @staticmethod
    def sample(rng: np.random.Generator, motion: str) -> "Actor":
        place = Placement(
            x=float(rng.uniform(0.34, 0.66)),
            ground=float(rng.uniform(0.9, 0.96)),
            height=float(rng.uniform(0.55, 0.68)),
        )
        return Actor(Appearance.sample(rng), Proportions.sample(rng), place, MotionSpec.sample(rng, motion))

    def keypoints(self, num_frames: int, fps: float, width: int, height: int) -> np.ndarray:
        return np.stack(
            [
                pose_keypoints(self.motion.pose_at(f / fps), self.body, self.place, width, height)
                for f in range(num_frames)
            ]
        ).astype(np.float32)

    def height_px(self, frame_height: int) -> float:
        return self.place.height * frame_height

    def chain_length_px(self, frame_height: int) -> float:
        return self.body.chain_length * self.height_px(frame_height)

    def to_dict(self) -> dict:
        return {
            "appearance": self.look.to_dict(),
            "proportions": self.body.__dict__,
            "placement": self.place.to_dict(),
            "motion": self.motion.to_dict(),
        }


def render(actor: Actor, kp: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height_px = actor.height_px(background.shape[0])
    drawn = [draw_puppet(background, k, actor.look, height_px) for k in kp]
    return np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn])


def offset_onto(reference_kp: np.ndarray, scale: float, source_anchor: np.ndarray) -> np.ndarray:
    """Scale reference keypoints about the origin and move the frame-0 feet onto source_anchor."""
    out = reference_kp.copy()
    out[..., :2] = scale * reference_kp[..., :2] + (source_anchor - scale * feet_centre(reference_kp[0]))
    return out


def choose_motions(rng: np.random.Generator, source_motion: str | None, reference_motion: str | None):
    names = sorted(MOTIONS)
    m1 = source_motion or names[rng.integers(len(names))]
    m2 = reference_motion or [n for n in names if n != m1][rng.integers(len(names) - 1)]
    for m in (m1, m2):
        if m not in MOTIONS:
            raise ValueError(f"unknown motion {m!r}; choose from {names}")
    return m1, m2


def make_case(
    out_dir: str | Path,
    seed: int,
    size: int = 512,
    num_frames: int = 24,
    fps: float = 12.0,
    source_motion: str | None = None,
    reference_motion: str | None = None,
) -> dict:
    """Generate one case into ``out_dir`` and return its description (also written to case.json)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    m1, m2 = choose_motions(rng, source_motion, reference_motion)
    source, reference = Actor.sample(rng, m1), Actor.sample(rng, m2)
    bg_source, wall_source = make_background(rng, size, size, source.place.ground)
    bg_reference, _ = make_background(rng, size, size, reference.place.ground)

    kp_source = source.keypoints(num_frames, fps, size, size)
    kp_reference = reference.keypoints(num_frames, fps, size, size)
    scale = source.chain_length_px(size) / reference.chain_length_px(size)
    source_feet0 = feet_centre(kp_source[0])
    kp_edit = offset_onto(kp_reference, scale, source_feet0)

    frames_source, masks_source = render(source, kp_source, bg_source)
    frames_reference, masks_reference = render(reference, kp_reference, bg_reference)
    frames_edit, masks_edit = render(source, kp_edit, bg_source)

    write_video(out / SOURCE_VIDEO, frames_source, fps)
    write_image(out / SOURCE_IMAGE, frames_source[0])
    write_video(out / REFERENCE_VIDEO, frames_reference, fps)
    write_video(out / GT_EDIT_VIDEO, frames_edit, fps)
    for role, kp, masks in (
        ("source", kp_source, masks_source),
        ("reference", kp_reference, masks_reference),
        ("edit", kp_edit, masks_edit),
    ):
        write_keypoints(out / KEYPOINTS[role], kp, size, size, fps=fps, role=role, seed=seed)
        write_frames(out / MASKS[role], masks)

    prompt = f"{source.look.describe()} {MOTIONS[m2][2]} in front of a {wall_source} wall"
    info = {
        "seed": seed,
        "size": size,
        "num_frames": num_frames,
        "fps": fps,
        "prompt": prompt,
        "source": source.to_dict(),
        "reference": reference.to_dict(),
        "edit_transform": {"scale": float(scale), "anchor": "feet", "source_anchor": source_feet0.tolist()},
    }
    write_json(out / CASE_INFO, info)
    return info


def read_case_info(case_dir: str | Path) -> dict:
    return json.loads((Path(case_dir) / CASE_INFO).read_text())
