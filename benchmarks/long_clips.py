"""Long clips: windows fused at every step, against hard cuts and against a subsampled one-window edit.

    .venv/bin/python benchmarks/long_clips.py --cases 6 --frames 48 --steps 30 --out reports/long-clips-quality

Draws ``--cases`` long puppet cases (``--frames`` frames at 12 fps, each with its ground-truth edit; seed
27, which no other use takes) and edits each, through the batch flow with the workspace's model
(eym-mini at 128 px), as three variants:

- ``fused``: every frame, windows of ``window.frames`` sharing ``window.overlap`` (params.yaml),
  their predictions fused at every DDIM step;
- ``hard_cuts``: every frame, windows side by side (``window.overlap`` 0): no fusion;
- ``one_window``: ``window.frames`` frames taken evenly from the clip (``frames.stride``), one window.

Per edit: person PSNR and pose PCK (all joints, moved joints) from its evaluation, and the temporal
error (|change of the edit between two frames − change of the truth|) over every pair of consecutive
frames, split into pairs where the set of windows changes (the seams) and pairs inside windows, and
at the pairs where hard cuts cut (both variants there, paired). ``--report-only`` measures the
edits finished so far again.
Writes ``table.md`` (means, seam/inside ratios, paired differences with 95 % bootstrap intervals),
``pairs.csv`` (every frame pair) and ``seams.mp4`` (the first edit: fused | hard cuts | truth).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SEED = 27


def variants(frames: int, window: int) -> dict[str, dict]:
    whole = {"frames": {"count": None, "stride": 1, "fps": None}}
    return {
        "fused": whole,
        "hard_cuts": {**whole, "window": {"overlap": 0}},
        "one_window": {"frames": {"count": window, "stride": max(1, frames // window), "fps": None}},
    }


def seam_pairs(count: int, frames: int, overlap: int) -> set[int]:
    """Frame pairs (f, f + 1), by f, across which the set of windows covering a frame changes."""
    from eym_model.windows import window_starts

    starts = window_starts(count, frames, overlap)
    covering = [frozenset(k for k, s in enumerate(starts) if s <= f < s + frames) for f in range(count)]
    return {f for f in range(count - 1) if covering[f] != covering[f + 1]}


def pair_errors(case: Path) -> np.ndarray:
    """Temporal error of each pair of consecutive frames of an edit against its ground truth."""
    from eym.media import read_video
    from stages.common import ground_truth_frames, read_case

    edited = read_video(case / "sample" / "edited.mp4").astype(np.float64)
    truth = ground_truth_frames(case, read_case(case).ground_truth).astype(np.float64)
    change = np.diff(edited, axis=0) - np.diff(truth, axis=0)
    return np.abs(change).mean(axis=(1, 2, 3)) / 255.0


def measure(cases: Path, rows: list[dict], window: dict, table: dict) -> list[dict]:
    """A row per finished edit: its variant, source, metrics and seam / inside temporal errors."""
    import json

    out = []
    for row in rows:
        if row["status"] != "ok":
            continue
        case = cases / row["case"]
        variant = row["case"].rsplit("--", 1)[1]
        overlap = table[variant].get("window", {}).get("overlap", window["overlap"])
        errors = pair_errors(case)
        seams = seam_pairs(len(errors) + 1, window["frames"], overlap)
        metrics = json.loads((case / "eval" / "metrics.json").read_text())
        cuts = seam_pairs(len(errors) + 1, window["frames"], 0)  # where hard cuts would cut: both variants there
        inside = [e for f, e in enumerate(errors) if f not in seams]
        out.append(
            {
                "edit": row["case"].rsplit("--", 1)[0],
                "variant": variant,
                "frames": len(errors) + 1,
                "errors": errors,
                "seams": sorted(seams),
                "seam_error": float(np.mean([errors[f] for f in seams])) if seams else None,
                "inside_error": float(np.mean(inside)),
                "cut_error": float(np.mean([errors[f] for f in cuts])) if cuts and variant != "one_window" else None,
                **{k: metrics.get(k) for k in ("psnr_person", "pose_pck", "pose_pck_moved", "temporal_error")},
            }
        )
    return out


def paired(results: list[dict], metric: str, variant: str, baseline: str) -> str:
    from stages.aggregate import bootstrap_interval

    by_edit = {(r["edit"], r["variant"]): r.get(metric) for r in results}
    diffs = [by_edit[(e, variant)] - by_edit[(e, baseline)] for e, v in by_edit
             if v == variant and by_edit.get((e, baseline)) is not None and by_edit[(e, v)] is not None]  # fmt: skip
    if not diffs:
        return "–"
    low, high = bootstrap_interval(diffs)
    return f"{np.mean(diffs):+.4f} [{low:+.4f}, {high:+.4f}] (n={len(diffs)})"


def table(results: list[dict], header: str) -> str:
    lines = [header, "", "| variant | edits | frames | person PSNR | PCK | PCK moved | temporal error | at seams | "
             "inside windows | seams / inside |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for variant in ("fused", "hard_cuts", "one_window"):
        rs = [r for r in results if r["variant"] == variant]
        if not rs:
            continue

        def mean(key, rs=rs):
            values = [r[key] for r in rs if r.get(key) is not None]
            return float(np.mean(values)) if values else float("nan")

        seam, inside = mean("seam_error"), mean("inside_error")
        ratio = f"{seam / inside:.2f}" if np.isfinite(seam) else "no seams"
        seam_cell = f"{seam:.4f}" if np.isfinite(seam) else "–"
        cells = [variant, len(rs), rs[0]["frames"], f"{mean('psnr_person'):.2f}", f"{mean('pose_pck'):.3f}",
                 f"{mean('pose_pck_moved'):.3f}", f"{mean('temporal_error'):.4f}", seam_cell, f"{inside:.4f}",
                 ratio]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "Paired differences (mean [95 % bootstrap interval]):", ""]
    lines.append(f"- seam error, fused − hard cuts: {paired(results, 'seam_error', 'fused', 'hard_cuts')}")
    at_cuts = paired(results, "cut_error", "fused", "hard_cuts")
    lines.append(f"- error at the hard cuts' pairs, fused − hard cuts: {at_cuts}")
    for metric in ("psnr_person", "pose_pck", "pose_pck_moved"):
        lines.append(f"- {metric}, fused − one window: {paired(results, metric, 'fused', 'one_window')}")
    return "\n".join(lines) + "\n"


def seams_video(cases: Path, results: list[dict], out: Path) -> Path | None:
    """The first edit's fused and hard-cut videos and the truth side by side, every frame."""
    from eym.media import read_video, write_video
    from stages.common import ground_truth_frames, read_case

    edits = sorted({r["edit"] for r in results if r["variant"] in ("fused", "hard_cuts")})
    for edit in edits:
        fused, cuts = cases / f"{edit}--fused", cases / f"{edit}--hard_cuts"
        if (fused / "sample" / "edited.mp4").is_file() and (cuts / "sample" / "edited.mp4").is_file():
            truth = ground_truth_frames(fused, read_case(fused).ground_truth)
            videos = [read_video(c / "sample" / "edited.mp4") for c in (fused, cuts)] + [truth]
            write_video(out / "seams.mp4", np.concatenate(videos, axis=2), fps=12)
            return out / "seams.mp4"
    return None


def drawn_inputs(work: Path, frames: int, count: int) -> Path:
    """The inputs folder to use: one drawn before with at least ``count`` cases (a smaller run takes its
    first cases and recomputes nothing), else a new one for ``count``."""
    for folder in sorted(work.glob(f"inputs-seed{SEED}-{frames}f-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        if int(folder.name.rsplit("-", 1)[1]) >= count and (folder / "manifest.yaml").is_file():
            return folder
    return work / f"inputs-seed{SEED}-{frames}f-{count}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--first", type=int, default=0, help="index of the first case drawn to edit")
    parser.add_argument("--frames", type=int, default=48, help="frames of each long clip")
    parser.add_argument("--steps", type=int, default=30, help="tuning steps per stage")
    parser.add_argument("--ddim-steps", type=int, default=20, help="inversion and sampling steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE on top of every variant (as eym-edit)")
    parser.add_argument("--report-only", action="store_true", help="measure the finished edits again, run nothing")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from eym.parameters import deep_merge
    from flows.overrides import absolute_paths, overrides_from
    from flows.pipeline import edit_batch, with_runner
    from flows.runtime import prefect_api
    from puppet_world.benchmark import make_benchmark

    work = REPO / "data" / "long-clips"
    drawn = args.first + args.cases
    inputs = drawn_inputs(work, args.frames, drawn)
    if not (inputs / "manifest.yaml").is_file():
        make_benchmark(inputs, drawn, SEED, size=256, num_frames=args.frames, image_source_every=0, workers=2,
                       prefix=f"long{args.frames}")  # fmt: skip
    overrides = absolute_paths(overrides_from(args))  # they go into the manifest's rows
    params = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    window = params["window"]
    base = {"stage1": {"steps": args.steps}, "stage2": {"steps": args.steps},
            "inversion": {"steps": args.ddim_steps}, "sampling": {"steps": args.ddim_steps}}  # fmt: skip
    rows = []
    for row in yaml.safe_load((inputs / "manifest.yaml").read_text())["cases"][args.first : drawn]:
        for name, variant in variants(args.frames, window["frames"]).items():
            new = {k: v for k, v in row.items() if k != "id"}
            for key in ("source", "reference", "ground_truth"):
                new[key] = os.path.relpath(inputs / row[key], work)
            params_of_edit = deep_merge(deep_merge(base, overrides), variant)  # the variant's window wins over --set
            rows.append({"id": f"{row['id']}--{name}", **new, "params": params_of_edit, "variant": name})
    manifest = work / f"manifest-{args.out.name}.yaml"
    manifest.write_text(yaml.safe_dump({"cases": rows}, sort_keys=False, width=150))
    start = time.perf_counter()
    if args.report_only:
        done = [{"case": r["id"], "status": "ok" if (work / "cases" / r["id"] / "eval" / "metrics.json").is_file()
                 else "not finished", "failed_stage": None, "reason": None} for r in rows]  # fmt: skip
    else:
        with prefect_api():
            done = with_runner(edit_batch, workers=args.workers)(str(manifest), str(work / "cases"), None)
    minutes = (time.perf_counter() - start) / 60
    results = measure(work / "cases", done, window, variants(args.frames, window["frames"]))
    args.out.mkdir(parents=True, exist_ok=True)
    header = (f"{args.cases} puppet clips of {args.frames} frames (seed {SEED}), {params['frames']['width']} px, "
              f"{args.steps}+{args.steps} tuning steps, {args.ddim_steps} DDIM steps, windows of {window['frames']} "
              f"sharing {window['overlap']}; model {params['model']['base']}")  # fmt: skip
    (args.out / "table.md").write_text(table(results, header))
    with open(args.out / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["edit", "variant", "pair", "temporal_error", "seam"])
        for r in results:
            for k, e in enumerate(r["errors"]):
                writer.writerow([r["edit"], r["variant"], k, f"{e:.6f}", int(k in r["seams"])])
    seams_video(work / "cases", results, args.out)
    failed = [r for r in done if r["status"] != "ok"]
    print((args.out / "table.md").read_text())
    print(f"{len(done)} edits ({len(failed)} failed) in {minutes:.0f} min; report: {args.out}")
    for r in failed:
        print(f"  {r['case']}: {r['failed_stage']}: {r['reason']}")


if __name__ == "__main__":
    main()
