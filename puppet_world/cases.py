"""Puppet cases: a source clip, a reference clip, and the ground-truth motion edit, from one seed.

Source: character A on background B performing motion M1. Reference: character C (of any body
type) on background D performing M2. Ground truth: A on B performing M2: A's own body (its bone
lengths) with C's joint angles and C's trajectory in units of body height, moved so that the feet
(bottom-centre of the ankles) of frame 0 coincide with A's. That is what ``stages.offset``
reconstructs from detected keypoints. The source (and the ground truth, filmed by the same camera)
may be a partial view: upper body, knees up, or the head cut off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eym.atomic import write_json
from eym.keypoints import write_keypoints
from eym.media import write_frames, write_image, write_video
from eym.skeleton import feet_centre

from .body import Placement, Proportions, pose_keypoints
from .files import (  # noqa: F401 (the case folder's files: part of this module's API)
    CASE_INFO,
    GT_EDIT_VIDEO,
    KEYPOINTS,
    MASKS,
    REFERENCE_VIDEO,
    SOURCE_IMAGE,
    SOURCE_VIDEO,
    is_puppet_source,
)
from .motions import MOTIONS, MotionSpec
from .render import Appearance, draw_puppet, make_background
from .seeds import check_seed


@dataclass(frozen=True)
class Actor:
    look: Appearance
    body: Proportions
    place: Placement
    motion: MotionSpec

    @staticmethod
    def sample(rng: np.random.Generator, motion: str, body: str = "adult") -> "Actor":
        place = Placement(
            x=float(rng.uniform(0.34, 0.66)),
            ground=float(rng.uniform(0.9, 0.96)),
            height=float(rng.uniform(0.55, 0.68)),
        )
        return Actor(Appearance.sample(rng), Proportions.sample(rng, body), place, MotionSpec.sample(rng, motion))

    def keypoints(self, num_frames: int, fps: float, size: int, motion: MotionSpec | None = None) -> np.ndarray:
        """Keypoints of this body (in its place) performing its own motion, or ``motion``."""
        motion = motion or self.motion
        return np.stack(
            [pose_keypoints(motion.pose_at(f / fps), self.body, self.place, size, size) for f in range(num_frames)]
        ).astype(np.float32)

    def height_px(self, frame_height: int) -> float:
        return self.place.height * frame_height

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


def describe_scene(look: Appearance, motion: str, wall: str) -> str:
    """The prompt of a puppet clip, in the benchmark's style."""
    return f"{look.describe()} {MOTIONS[motion][2]} in front of a {wall} wall"


def edit_keypoints(source: Actor, reference: Actor, num_frames: int, fps: float, size: int, anchor0) -> np.ndarray:
    """The ground-truth edit: the source's body, in its place, performing the reference's motion (its
    joint angles, and its trajectory in units of body height), moved so that the feet of frame 0 land
    on ``anchor0`` (the source's feet on its frame 0)."""
    kp = source.keypoints(num_frames, fps, size, motion=reference.motion)
    kp[..., :2] += anchor0 - feet_centre(kp[0])
    return kp


# Camera views of the source (and of the ground-truth edit, filmed by the same camera): a square crop
# around the source person, as (top, bottom) in units of standing height above the ground line.
VIEWS = {
    "full": None,
    "upper_body": (1.08, 0.4),  # crown to just below the hips: legs out of the frame
    "knees_up": (1.08, 0.22),
    "no_head": (0.8, -0.03),  # from the shoulders down: the head cut off
}


def view_box(place: Placement, view: str) -> tuple[float, float, float] | None:
    """(left, top, side) of the view's crop as fractions of the full frame, or None for the full frame."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {sorted(VIEWS)}")
    if VIEWS[view] is None:
        return None
    above, below = VIEWS[view]
    top = place.ground - above * place.height
    side = min(1.0, (above - below) * place.height)
    top = float(np.clip(top, 0.0, 1.0 - side))
    left = float(np.clip(place.x - side / 2, 0.0, 1.0 - side))
    return left, top, side


def crop_view(frames, masks, keypoints, box, size: int):
    """The crop ``box`` of frames rendered at size / side: size x size pixels; joints outside it are dropped."""
    if box is None:
        return frames, masks, keypoints
    left, top, side = box
    render_size = frames.shape[1]
    x0 = min(int(round(left * render_size)), render_size - size)
    y0 = min(int(round(top * render_size)), render_size - size)
    kp = keypoints.copy()
    kp[..., 0] -= x0
    kp[..., 1] -= y0
    outside = (kp[..., 0] < 0) | (kp[..., 0] > size - 1) | (kp[..., 1] < 0) | (kp[..., 1] > size - 1)
    kp[outside] = (np.nan, np.nan, 0.0)
    return frames[:, y0 : y0 + size, x0 : x0 + size], masks[:, y0 : y0 + size, x0 : x0 + size], kp


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
    reference_body: str = "adult",
    source_view: str = "full",
) -> dict:
    """Generate one case into ``out_dir`` and return its description (also written to case.json).

    ``reference_body``: the reference character's body type (puppet_world.body.BODY_TYPES);
    ``source_view``: a partial view of the source (and of the ground-truth edit), see VIEWS.
    """
    rng = np.random.default_rng(check_seed(seed, "evaluation"))
    m1, m2 = choose_motions(rng, source_motion, reference_motion)
    return make_source_cases(out_dir, seed, rng, m1, [(m2, reference_body)], size, num_frames, fps, source_view)[0]


def make_source_cases(
    out_dir: str | Path,
    seed: int,
    rng: np.random.Generator,
    source_motion: str,
    references: list[tuple[str, str]],
    size: int = 512,
    num_frames: int = 24,
    fps: float = 12.0,
    source_view: str = "full",
) -> list[dict]:
    """One source and one case per (motion, body type) of ``references``, with each one's ground truth.

    One reference: everything in ``out_dir`` (source.mp4, reference.mp4, gt/, case.json). Several:
    the source in ``out_dir`` and reference k with its ground truth and case.json in ``out_dir/r<k>``.
    """
    out = Path(out_dir)
    source = Actor.sample(rng, source_motion)
    actors = [Actor.sample(rng, motion, body) for motion, body in references]
    box = view_box(source.place, source_view)
    # A partial view is rendered at the size that makes its crop size x size pixels: no upscaling.
    source_size = size if box is None else int(np.ceil(size / box[2]))
    bg_source, wall_source = make_background(rng, source_size, source_size, source.place.ground)
    backgrounds = [make_background(rng, size, size, actor.place.ground)[0] for actor in actors]

    kp_source = source.keypoints(num_frames, fps, source_size)
    source_feet0 = feet_centre(kp_source[0])
    frames_source, masks_source = render(source, kp_source, bg_source)
    frames_source, masks_source, kp_source = crop_view(frames_source, masks_source, kp_source, box, size)
    write_video(out / SOURCE_VIDEO, frames_source, fps)
    write_image(out / SOURCE_IMAGE, frames_source[0])
    write_keypoints(out / KEYPOINTS["source"], kp_source, size, size, fps=fps, role="source", seed=seed)
    write_frames(out / MASKS["source"], masks_source)
    crop = [0, 0] if box is None else [min(round(b * source_size), source_size - size) for b in box[:2]]

    infos = []
    for k, ((motion, body), reference, background) in enumerate(zip(references, actors, backgrounds)):
        folder = out if len(references) == 1 else out / f"r{k}"
        kp_reference = reference.keypoints(num_frames, fps, size)
        kp_edit = edit_keypoints(source, reference, num_frames, fps, source_size, source_feet0)
        frames_reference, masks_reference = render(reference, kp_reference, background)
        frames_edit, masks_edit = render(source, kp_edit, bg_source)
        frames_edit, masks_edit, kp_edit = crop_view(frames_edit, masks_edit, kp_edit, box, size)
        write_video(folder / REFERENCE_VIDEO, frames_reference, fps)
        write_video(folder / GT_EDIT_VIDEO, frames_edit, fps)
        for role, kp, masks in (("reference", kp_reference, masks_reference), ("edit", kp_edit, masks_edit)):
            write_keypoints(folder / KEYPOINTS[role], kp, size, size, fps=fps, role=role, seed=seed)
            write_frames(folder / MASKS[role], masks)
        info = {
            "seed": seed,
            "size": size,
            "num_frames": num_frames,
            "fps": fps,
            "prompt": describe_scene(source.look, motion, wall_source),
            "source_prompt": describe_scene(source.look, source_motion, wall_source),
            "source": source.to_dict(),
            "reference": {**reference.to_dict(), "body_type": body},
            "source_view": source_view,
            "edit_transform": {
                "method": "the source's body performing the reference's motion, frame-0 feet on the source's",
                "trajectory_scale": source.place.height / reference.place.height,
                "anchor": "feet",
                "source_anchor": (source_feet0 - np.array(crop)).tolist(),
            },
        }
        write_json(folder / CASE_INFO, info)
        infos.append(info)
    return infos


def read_case_info(case_dir: str | Path) -> dict:
    return json.loads((Path(case_dir) / CASE_INFO).read_text())
