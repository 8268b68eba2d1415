"""eym-mini's training and held-out frames, drawn from the puppet world with seeds no evaluation case uses.

Each seed gives one character (look, proportions, placement, motion) on one background, shown in
``poses_per_actor`` poses at random times of its motion, with its exact keypoints, person mask and
benchmark-style prompt. Placement varies more widely than in evaluation cases (size and position),
so that the model also draws the scaled and shifted people that retargeting produces.

A set is a folder: ``frames.npy`` (N, H, W, 3) uint8, ``masks.npy`` (N, H, W) bool,
``keypoints.npy`` (N, 18, 3) float32, and ``rows.parquet`` (seed, motion, time, prompt per frame).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eym.atomic import atomic_path
from eym.errors import InputError
from puppet_world.body import Placement, Proportions, pose_keypoints
from puppet_world.cases import Actor, describe_scene, render
from puppet_world.motions import MOTIONS, MotionSpec
from puppet_world.render import Appearance, make_background
from puppet_world.seeds import check_seed, seeds_for

FILES = ("frames.npy", "masks.npy", "keypoints.npy", "rows.parquet")


@dataclass
class FrameSet:
    frames: np.ndarray
    masks: np.ndarray
    keypoints: np.ndarray
    prompts: list[str]
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def actor_frames(seed: int, purpose: str, size: int, poses: int) -> dict:
    """One character in ``poses`` random poses of its motion, with keypoints, masks and its prompt."""
    rng = np.random.default_rng(check_seed(seed, purpose))
    names = sorted(MOTIONS)
    motion = names[rng.integers(len(names))]
    place = Placement(
        x=float(rng.uniform(0.22, 0.78)), ground=float(rng.uniform(0.84, 0.98)), height=float(rng.uniform(0.42, 0.8))
    )
    actor = Actor(Appearance.sample(rng), Proportions.sample(rng), place, MotionSpec.sample(rng, motion))
    background, wall = make_background(rng, size, size, place.ground)
    times = rng.uniform(0.0, 6.0, poses)
    kp = np.stack([pose_keypoints(actor.motion.pose_at(t), actor.body, place, size, size) for t in times])
    frames, masks = render(actor, kp.astype(np.float32), background)
    return {
        "frames": frames,
        "masks": masks,
        "keypoints": kp.astype(np.float32),
        "prompt": describe_scene(actor.look, motion, wall),
        "motion": motion,
        "times": times,
    }


def _job(args):
    return actor_frames(*args)


def make_set(out_dir: Path, purpose: str, actors: int, poses: int, size: int, workers: int = 2) -> Path:
    """Draw ``actors`` characters of ``purpose``'s seed range into ``out_dir`` (written atomically)."""
    seeds = list(seeds_for(purpose, actors))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(pool.map(_job, [(s, purpose, size, poses) for s in seeds], chunksize=32))
    rows = {
        "seed": np.repeat(seeds, poses).astype(np.int64),
        "motion": [p["motion"] for p in parts for _ in range(poses)],
        "time": np.concatenate([p["times"] for p in parts]),
        "prompt": [p["prompt"] for p in parts for _ in range(poses)],
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in ("frames", "masks", "keypoints"):
            np.save(tmp / f"{name}.npy", np.concatenate([p[name] for p in parts]))
        pq.write_table(pa.table(rows), tmp / "rows.parquet")
    return out_dir


def load_set(folder: Path, mmap: bool = True) -> FrameSet:
    folder = Path(folder)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise InputError(f"{folder}: eym-mini frame set lacks {missing} (run `dvc repro eym_mini_data`)")
    mode = "r" if mmap else None
    rows = pq.read_table(folder / "rows.parquet")
    return FrameSet(
        frames=np.load(folder / "frames.npy", mmap_mode=mode),
        masks=np.load(folder / "masks.npy", mmap_mode=mode),
        keypoints=np.load(folder / "keypoints.npy"),
        prompts=rows.column("prompt").to_pylist(),
        seeds=rows.column("seed").to_numpy(),
    )


def jittered_skeletons(keypoints: np.ndarray, size: int, rng: np.random.Generator, drop: float, jitter: float):
    """Skeleton images of ``keypoints`` as the pose stage draws them, with detector-like noise:
    each joint moved by up to ``jitter`` pixels, and with probability ``drop`` a frame loses 1-3 joints."""
    from eym.skeleton import draw_skeletons

    kp = keypoints.copy()
    kp[..., :2] += rng.normal(0.0, jitter, kp[..., :2].shape)
    for f in np.where(rng.random(len(kp)) < drop)[0]:
        lost = rng.choice(kp.shape[1], size=int(rng.integers(1, 4)), replace=False)
        kp[f, lost] = (np.nan, np.nan, 0.0)
    return draw_skeletons(kp, size, size)


def make_sets(p: dict, root: Path = Path(".")) -> dict:
    """The data phase: the training set and the held-out set, from their own seed ranges."""
    from . import DATA_DIR

    d = p["data"]
    size, poses, workers = int(d["size"]), int(d["poses_per_actor"]), int(d["workers"])
    for name, purpose, actors in (("train", "training", "train_actors"), ("heldout", "heldout", "heldout_actors")):
        make_set(root / DATA_DIR / name, purpose, int(d[actors]), poses, size, workers)
    return {"train_frames": int(d["train_actors"]) * poses, "heldout_frames": int(d["heldout_actors"]) * poses}
