"""Detectors on partial views: selfie segmentation (both MediaPipe models) and MediaPipe pose on the
full frames against the background-masked frames, for sources seen whole, from the waist or the knees
up, or with the head cut off.

    .venv/bin/python benchmarks/partial_views.py --cases 6 --size 256

Prints a markdown table per view: mask IoU of each segmentation model, and for pose the share of
frames with a body (2 of neck, shoulders, hips) and PCK@0.1 of the joints the view shows.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from eym.detect.mediapipe_backend import detect_poses, segment_people
from eym.keypoints import read_keypoints
from eym.media import read_masks, read_video
from eym.skeleton import pck, visible
from puppet_world.cases import KEYPOINTS, MASKS, SOURCE_VIDEO, VIEWS, make_case
from puppet_world.motions import MOTIONS


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean(np.logical_and(pred, truth).sum((1, 2)) / np.maximum(np.logical_or(pred, truth).sum((1, 2)), 1))
    )


def body_found(kp: np.ndarray) -> float:
    return float((visible(kp)[:, [1, 2, 5, 8, 11]].sum(1) >= 2).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6, help="cases per view")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--margin", type=float, default=0.0, help="MediaPipe pose's border (as evaluation.pose_margin)")
    args = parser.parse_args()
    names = sorted(MOTIONS)
    rows = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for v, view in enumerate(VIEWS):
            for i in range(args.cases):
                folder = Path(tmp) / f"{view}{i}"
                k = v * args.cases + i
                make_case(folder, args.seed + k, args.size, args.frames, 8, names[k % len(names)], source_view=view)
                frames = read_video(folder / SOURCE_VIDEO)
                truth_masks = read_masks(folder / MASKS["source"])
                truth_kp, _ = read_keypoints(folder / KEYPOINTS["source"])
                seg = {m: segment_people(frames, m) > 0.5 for m in (0, 1)}
                row = {f"mask IoU, model {m}": iou(seg[m], truth_masks) for m in (0, 1)}
                for name, shown in (("full frames", frames), ("masked frames", frames * seg[0][..., None])):
                    kp = detect_poses(shown, margin=args.margin)
                    row[f"pose found, {name}"] = body_found(kp)
                    row[f"PCK@0.1, {name}"] = pck(kp, truth_kp, 0.1)
                rows[view].append(row)
    columns = list(rows["full"][0])
    print(f"{args.cases} cases per view, {args.size}x{args.size}, {args.frames} frames, pose margin {args.margin:g}\n")
    print("| source view | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for view, values in rows.items():
        means = [np.nanmean([r[c] for r in values]) for c in columns]
        print(f"| {view} | " + " | ".join(f"{m:.2f}" for m in means) + " |")


if __name__ == "__main__":
    main()
