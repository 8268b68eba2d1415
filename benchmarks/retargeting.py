"""Retargeting against the ground truth: `none`, `scale` and `bones` on puppets with other bodies and partial views.

For each puppet case (reference body adult, child or long-limbed; source view full, upper body, knees
up or head cut off) the reference is aligned onto the source from the exact keypoints and from the
pipeline's own detections (frames, segmentation and MediaPipe pose stages), then compared with the
ground-truth edit's keypoints (the source's body performing the reference's motion). Prints a
markdown table: joint error (median, % of the person's size), bone-length error (mean %), anchor
error (px) and PCK@0.05.

    .venv/bin/python benchmarks/retargeting.py --cases 4 --size 256
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from eym.keypoints import read_keypoints
from eym.skeleton import ANCHORS, bone_length_errors, bounding_boxes, pck, visible
from puppet_world.cases import KEYPOINTS, make_case
from puppet_world.motions import MOTIONS
from stages import frames, offset, pose, segment
from stages.common import deep_merge

REPO = Path(__file__).resolve().parents[1]
BODIES = ("adult", "child", "long_limbed")
VIEWS = ("full", "upper_body", "knees_up", "no_head")
METHODS = ("none", "scale", "bones")


def errors(aligned: np.ndarray, truth: np.ndarray, anchor: str) -> dict:
    both = visible(aligned) & visible(truth)
    size = np.nanmax(np.diff(bounding_boxes(truth)[:, [0, 2, 1, 3]].reshape(-1, 2, 2), axis=2)[..., 0], axis=1)
    dist = np.linalg.norm(aligned[..., :2] - truth[..., :2], axis=-1)
    rel = (dist / size[:, None])[both]
    bones = bone_length_errors(aligned, truth, shortest=2.0)
    a_pts, t_pts = ANCHORS[anchor](aligned), ANCHORS[anchor](truth)
    ok = np.isfinite(a_pts).all(-1) & np.isfinite(t_pts).all(-1)
    return {
        "joint error %": 100 * float(np.median(rel)) if len(rel) else np.nan,
        "bone error %": 100 * float(np.mean(bones)) if len(bones) else np.nan,
        "anchor px": float(np.linalg.norm(a_pts[ok] - t_pts[ok], axis=-1).mean()) if ok.any() else np.nan,
        "PCK@0.05": pck(aligned, truth, 0.05),
    }


def detected(case_in: Path, work: Path, size: int, params: dict):
    """Source and reference keypoints as the pipeline's frames, segment and pose stages find them."""
    case = work / "case"
    case.mkdir(parents=True)
    (case / "case.yaml").write_text(
        yaml.safe_dump({"id": "c", "source": str(case_in / "source.mp4"), "reference": str(case_in / "reference.mp4")})
    )
    for stage in (frames, segment, pose):
        stage.run(case, params)
    return read_keypoints(case / "pose" / "source.parquet")[0], read_keypoints(case / "pose" / "reference.parquet")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="cases per (body, view) pair")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5000)
    args = parser.parse_args()
    params = deep_merge(
        yaml.safe_load((REPO / "params.yaml").read_text()),
        {"frames": {"width": args.size, "height": args.size, "count": args.frames, "stride": 1}},
    )
    p = params["offset"]
    names = sorted(MOTIONS)
    results = defaultdict(list)
    failures = defaultdict(int)
    with tempfile.TemporaryDirectory() as tmp:
        for b, body in enumerate(BODIES):
            for v, view in enumerate(VIEWS):
                for i in range(args.cases):
                    k = (b * len(VIEWS) + v) * args.cases + i
                    case_in = Path(tmp) / f"in{k}"
                    make_case(
                        case_in,
                        args.seed + k,
                        size=args.size,
                        num_frames=args.frames,
                        fps=8,
                        source_motion=names[k % len(names)],
                        reference_motion=names[(k + 3) % len(names)],
                        reference_body=body,
                        source_view=view,
                    )
                    truth = read_keypoints(case_in / KEYPOINTS["edit"])[0]
                    exact = tuple(read_keypoints(case_in / KEYPOINTS[r])[0] for r in ("source", "reference"))
                    try:
                        found = detected(case_in, Path(tmp) / f"work{k}", args.size, params)
                    except Exception as exc:  # a stage error is a result of the benchmark too
                        failures[(body, view)] += 1
                        print(f"case {k} ({body}, {view}): detection failed: {exc}")
                        found = None
                    for kind, pair in (("exact", exact), ("detected", found)):
                        if pair is None:
                            continue
                        src, ref = pair
                        for method in METHODS:
                            aligned, info = offset.align(
                                src, ref, method, "auto", "video", 0.3, args.size, args.size, 0.25, p["verdict"]
                            )
                            row = errors(aligned, truth, info["anchor"])
                            row["verdict ok"] = float(info["verdict"] == "good")
                            results[(kind, method, body, view)].append(row)
    print_table(results, failures)


def print_table(results: dict, failures: dict) -> None:
    columns = ("joint error %", "bone error %", "anchor px", "PCK@0.05", "verdict ok")
    print("| keypoints | method | reference body | source view | " + " | ".join(columns) + " |")
    print("|---" * (4 + len(columns)) + "|")
    for (kind, method, body, view), rows in sorted(results.items()):
        means = [np.nanmean([r[c] for r in rows]) for c in columns]
        print(f"| {kind} | {method} | {body} | {view} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    print("\n| keypoints | method | all cases: " + " | ".join(columns) + " |")
    print("|---" * (2 + len(columns)) + "|")
    for kind in ("exact", "detected"):
        for method in METHODS:
            rows = [r for (k, m, _, _), rs in results.items() if k == kind and m == method for r in rs]
            means = [np.nanmean([r[c] for r in rows]) for c in columns]
            print(f"| {kind} | {method} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    if failures:
        print("\ndetection failures:", dict(failures))


if __name__ == "__main__":
    main()
