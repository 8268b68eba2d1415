"""Pose PCK of finished edits re-detected at a larger size: is a low PCK a wrong pose or a missed figure?

    .venv/bin/python benchmarks/pose_redetect.py data/quality/cases --variants full,copy_source --margin 0,0.1

Re-runs MediaPipe (video mode, as the evaluation stage does) on each edit's sampled frames, upscaled
by each ``--scale`` and given each ``--margin`` (a border, as ``evaluation.pose_margin``; default:
params.yaml's), and prints PCK@0.1 against the aligned reference skeleton (all joints and the joints
the edit must move) and the share of frames with a person found, per variant, scale and margin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def redetect(case: Path, scale: float, margin: float, alpha: float = 0.1, min_confidence: float = 0.3) -> dict:
    from eym.detect.mediapipe_backend import detect_poses
    from eym.media import read_frames
    from stages.common import SAMPLE
    from stages.evaluate import pose_scores

    frames = read_frames(case / SAMPLE / "frames")
    if scale != 1:
        frames = np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for f in frames])
    found = detect_poses(frames, margin=margin)
    found[..., :2] /= scale
    scores, _ = pose_scores(case, found, alpha, min_confidence)
    return {
        "pck": scores["pose_pck"],
        "pck_moved": np.nan if scores["pose_pck_moved"] is None else scores["pose_pck_moved"],
        "found": float(np.isfinite(found[:, :, 0]).any(1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path, help="folder of edit folders named <edit>--<variant>")
    parser.add_argument("--variants", default="full,copy_source")
    parser.add_argument("--scale", default="1,2", help="comma-separated upscale factors")
    parser.add_argument("--margin", help="comma-separated borders (default: params.yaml's evaluation.pose_margin)")
    args = parser.parse_args()
    scales = [float(s) for s in args.scale.split(",")]
    if args.margin is None:
        from stages.common import load_params

        args.margin = str(load_params([Path("params.yaml")])["evaluation"]["pose_margin"])
    margins = [float(m) for m in args.margin.split(",")]
    print("| variant | scale | margin | edits | PCK@0.1 | PCK@0.1 moved joints | frames with a person |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        cases = sorted(c for c in args.cases.glob(f"*--{variant}") if (c / "sample" / "frames").is_dir())
        for scale in scales:
            for margin in margins:
                rows = [redetect(c, scale, margin) for c in cases]
                mean = {k: np.nanmean([r[k] for r in rows]) for k in ("pck", "pck_moved", "found")}
                print(
                    f"| {variant} | {scale:g} | {margin:g} | {len(rows)} | {mean['pck']:.3f} | {mean['pck_moved']:.3f} "
                    f"| {mean['found']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
