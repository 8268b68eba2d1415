"""Do real detectors see the puppets? MediaPipe pose PCK@0.1 and selfie-segmentation IoU per motion.

Generates clips with the puppet world, decodes the written mp4 (as the pipeline does), runs the
mediapipe backends and compares with the ground-truth keypoints and masks. Prints a markdown table.

    .venv/bin/python benchmarks/puppet_detectability.py --clips 28 --size 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from eym.detect.mediapipe_backend import detect_poses, segment_people
from eym.keypoints import read_keypoints
from eym.media import read_masks, read_video
from eym.skeleton import pck
from puppet_world.cases import KEYPOINTS, MASKS, REFERENCE_VIDEO, SOURCE_VIDEO, make_case, read_case_info
from puppet_world.motions import MOTIONS


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    inter = np.logical_and(pred, truth).sum((1, 2))
    union = np.logical_or(pred, truth).sum((1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=28, help="clips to generate (source + reference per case)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=0.0, help="MediaPipe pose's border (as evaluation.pose_margin)")
    args = parser.parse_args()

    names = sorted(MOTIONS)
    rows = defaultdict(list)
    seconds = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range((args.clips + 1) // 2):
            case = Path(tmp) / f"c{i}"
            make_case(
                case,
                args.seed + i,
                size=args.size,
                num_frames=args.frames,
                source_motion=names[(2 * i) % len(names)],
                reference_motion=names[(2 * i + 1) % len(names)],
            )
            info = read_case_info(case)
            for role, video in (("source", SOURCE_VIDEO), ("reference", REFERENCE_VIDEO)):
                frames = read_video(case / video)
                truth, _ = read_keypoints(case / KEYPOINTS[role])
                t0 = time.perf_counter()
                pred = detect_poses(frames, margin=args.margin)
                t1 = time.perf_counter()
                masks = segment_people(frames) > 0.5
                t2 = time.perf_counter()
                seconds["pose"] += t1 - t0
                seconds["mask"] += t2 - t1
                seconds["frames"] += len(frames)
                motion = info[role]["motion"]["name"]
                rows[motion].append(
                    (pck(pred, truth, 0.1), pck(pred, truth, 0.05), mask_iou(masks, read_masks(case / MASKS[role])))
                )

    clips = sum(len(v) for v in rows.values())
    print(f"{clips} clips, {args.size}x{args.size}, {args.frames} frames each, pose margin {args.margin:g}\n")
    print("| motion | clips | pose PCK@0.1 | pose PCK@0.05 | mask IoU |")
    print("|---|---|---|---|---|")
    everything = []
    for motion in sorted(rows):  # fewer than 14 clips leave some motions out
        values = np.array(rows[motion])
        everything.extend(rows[motion])
        print(
            f"| {motion} | {len(values)} | {values[:, 0].mean():.3f} | {values[:, 1].mean():.3f} | "
            f"{values[:, 2].mean():.3f} (min {values[:, 2].min():.3f}) |"
        )
    values = np.array(everything)
    print(
        f"| **all** | {len(values)} | **{values[:, 0].mean():.3f}** (min {values[:, 0].min():.3f}) | "
        f"{values[:, 1].mean():.3f} | **{values[:, 2].mean():.3f}** (min {values[:, 2].min():.3f}) |"
    )
    n = seconds["frames"]
    print(
        f"\nmediapipe pose {1000 * seconds['pose'] / n:.1f} ms/frame, "
        f"selfie segmentation {1000 * seconds['mask'] / n:.1f} ms/frame on this machine"
    )


if __name__ == "__main__":
    main()
