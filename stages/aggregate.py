"""Batch aggregation: all cases' metrics in one table, mean ± std per method, set-level FVD/FID-VID,
and the batch report.

Cases are grouped by their manifest ``variant`` (the method, an ablation or a baseline run as
parameters; ``full`` by default). Writes ``metrics.parquet`` (one row per case), ``summary.json``,
``summary.md`` and ``report.html`` into the output folder.

    python -m stages.aggregate data/benchmark/manifest.yaml --cases data/cases --out reports/benchmark
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eym.atomic import atomic_path, write_json, write_text
from eym.errors import EYMError, MissingWeightsError
from eym.manifest import read_manifest
from eym.media import read_frames, write_gif
from eym.report import METRICS, batch_report

from .common import (
    EVALUATION,
    SAMPLE,
    default_params_files,
    ground_truth_frames,
    load_params,
    log,
    read_case,
    section,
    setup_logging,
)

TEXT_COLUMNS = ("case", "variant", "status", "failed_stage", "reason", "case_dir")


def variant_of(row: dict) -> str:
    return row.get("variant") or "full"


def variant_order(rows: list[dict]) -> list[str]:
    """The variants of ``rows``: ``full`` first, then in the order the manifest lists them."""
    return sorted(dict.fromkeys(variant_of(r) for r in rows), key=lambda v: v != "full")


def rows_from_folders(cases: list, cases_root: Path) -> list[dict]:
    """Summary rows for manifest cases read from their folders (when no flow run recorded the outcome)."""
    rows = []
    for case in cases:
        case_dir = Path(cases_root).resolve() / case.id
        metrics = case_dir / EVALUATION / "metrics.json"
        reason = None
        if not metrics.is_file():
            reason = "not evaluated" if case_dir.is_dir() else "case folder not created (run the batch first)"
        row = {
            "case": case.id,
            "case_dir": str(case_dir),
            "variant": case.variant,
            "status": "ok" if metrics.is_file() else "failed",
            "failed_stage": None,
            "reason": reason,
        }
        if metrics.is_file():
            row.update(json.loads(metrics.read_text()))
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per variant: case count and mean/std of each metric over the cases that finished."""
    out = {}
    for variant in variant_order(rows):
        group = [r for r in rows if variant_of(r) == variant and r["status"] == "ok"]
        stats = {"cases": len(group), "failed": sum(variant_of(r) == variant for r in rows) - len(group)}
        for metric in METRICS:
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                stats[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
        out[variant] = stats
    return out


def bootstrap_interval(values, seed: int = 0, rounds: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (rounds, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pair_key(row: dict) -> tuple[str, str]:
    """What an edit edits: its source file and its reference file (the same across variants)."""
    case = read_case(row["case_dir"])
    return str(read_case(case.source_dir).source), str(case.reference)


def paired_differences(rows: list[dict], baseline: str = "full") -> dict:
    """Per variant and metric: mean difference to ``baseline`` over the edits both finished, with a 95 %
    bootstrap interval; "better" means something only when the interval excludes 0."""
    finished = [r for r in rows if r["status"] == "ok"]
    by_pair = {}
    for r in finished:
        by_pair.setdefault(pair_key(r), {})[variant_of(r)] = r
    out = {}
    for variant in [v for v in variant_order(finished) if v != baseline]:
        out[variant] = {}
        for metric in METRICS:
            diffs = [
                pair[variant][metric] - pair[baseline][metric]
                for pair in by_pair.values()
                if variant in pair
                and baseline in pair
                and pair[variant].get(metric) is not None
                and pair[baseline].get(metric) is not None
            ]
            if diffs:
                low, high = bootstrap_interval(diffs)
                out[variant][metric] = {"mean": float(np.mean(diffs)), "low": low, "high": high, "n": len(diffs)}
    return out


CHART_METRICS = (
    "psnr_person",
    "ssim_person",
    "pose_pck",
    "pose_pck_moved",
    "temporal_error",
    "psnr_background",
    "lpips_person",
)


def write_chart(rows: list[dict], path: Path) -> None:
    """Per-variant bars (mean, 95 % bootstrap interval of the mean) of the main metrics, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [r for r in rows if r["status"] == "ok"]
    variants = variant_order(finished)
    shown = [m for m in CHART_METRICS if any(r.get(m) is not None for r in finished)]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.2 * max(1, len(shown)), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        means, lows, highs = [], [], []
        for variant in variants:
            values = [r[metric] for r in finished if variant_of(r) == variant and r.get(metric) is not None]
            mean = float(np.mean(values)) if values else float("nan")
            low, high = bootstrap_interval(values) if values else (float("nan"), float("nan"))
            means.append(mean)
            lows.append(mean - low if np.isfinite(low) else 0.0)
            highs.append(high - mean if np.isfinite(high) else 0.0)
        colours = ["#2b6cb0" if v == "full" else "#a0aec0" for v in variants]
        ax.bar(range(len(variants)), means, yerr=[lows, highs], color=colours, capsize=3)
        ax.set_xticks(range(len(variants)), variants, rotation=60, ha="right", fontsize=8)
        label, higher = METRICS[metric]
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def set_metrics(rows: list[dict], params: dict) -> dict:
    """FVD and FID-VID per variant (edited videos vs ground-truth videos), or why they are unavailable."""
    from eym.metric_models import VideoFeatures
    from eym.metrics import frechet_distance

    p = section(params, "evaluation")
    networks, out = {}, {}
    for metric, key, what in (("fvd", "fvd_model", "FVD"), ("fid_vid", "fid_vid_model", "FID-VID")):
        try:
            networks[metric] = VideoFeatures(getattr(p, key), what, min_frames=p.video_min_frames)
        except MissingWeightsError as exc:
            out[metric] = f"unavailable: {exc}"
    if not networks:
        return out
    for variant in variant_order(rows):
        pairs = _edited_and_truth([r for r in rows if variant_of(r) == variant and r["status"] == "ok"])
        for metric, network in networks.items():
            if len(pairs) < 2:
                out[f"{metric}[{variant}]"] = "unavailable: needs at least two finished cases with ground truth"
                continue
            try:
                fake, real = network([a for a, _ in pairs]), network([b for _, b in pairs])
                out[f"{metric}[{variant}]"] = frechet_distance(fake, real)
            except ValueError as exc:
                out[f"{metric}[{variant}]"] = f"unavailable: {exc}"
    return out


def _edited_and_truth(rows: list[dict]) -> list[tuple]:
    """(edited frames, ground-truth frames) of the finished cases that have a ground truth."""

    pairs = []
    for r in rows:
        case_dir = Path(r["case_dir"])
        truth = read_case(case_dir).ground_truth
        if truth:
            pairs.append((read_frames(case_dir / SAMPLE / "frames"), ground_truth_frames(case_dir, truth)))
    return pairs


def _summary_markdown(summary: dict, batch: dict, differences: dict) -> str:
    names = [m for m in METRICS if any(m in s for s in summary.values())]

    def row(cells) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [row(["variant", "cases", "failed", *(METRICS[m][0] for m in names)]), row(["---"] * (3 + len(names)))]
    for variant, s in summary.items():
        cells = [f"{s[m]['mean']:.4g} ± {s[m]['std']:.2g}" if m in s else "—" for m in names]
        lines.append(row([variant, s["cases"], s["failed"], *cells]))
    if differences:
        lines += ["", "Paired difference to `full` (mean over the same edits, 95 % bootstrap interval):", ""]
        lines += [row(["variant", *(METRICS[m][0] for m in names)]), row(["---"] * (1 + len(names)))]
        for variant, d in differences.items():
            cells = [f"{d[m]['mean']:+.3g} [{d[m]['low']:+.3g}, {d[m]['high']:+.3g}]" if m in d else "—" for m in names]
            lines.append(row([variant, *cells]))
    lines += ["", *[f"- {k}: {v if isinstance(v, str) else f'{v:.3f}'}" for k, v in batch.items()]]
    return "\n".join(lines) + "\n"


def write_thumbnails(rows: list[dict], folder: Path, side: int = 160) -> None:
    """Each finished edit as a small GIF inside the report folder, so that the page's grid shows
    wherever the folder is copied."""
    import cv2

    for r in rows:
        sample = Path(r["case_dir"]) / SAMPLE
        if r["status"] != "ok" or not (sample / "frames").is_dir():
            continue
        frames = read_frames(sample / "frames")
        scale = min(1.0, side / max(frames.shape[1:3]))
        size = (round(frames.shape[2] * scale), round(frames.shape[1] * scale))
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        write_gif(folder / f"{r['case']}.gif", small, float(json.loads((sample / "meta.json").read_text())["fps"]))


def aggregate(rows: list[dict], out_dir: Path, params: dict, title: str = "Edit-Your-Motion batch") -> dict:
    out_dir = Path(out_dir).resolve()
    for r in rows:
        r["variant"] = variant_of(r)
    summary = summarise(rows)
    batch = set_metrics(rows, params)
    differences = paired_differences(rows) if any(variant_of(r) == "full" for r in rows) else {}
    columns = list(TEXT_COLUMNS) + ["seconds"] + list(METRICS)
    values = {c: [r.get(c) for r in rows] for c in columns}
    schema = [(c, pa.string()) if c in TEXT_COLUMNS else (c, pa.float64()) for c in columns]
    # which machine ran each stage (a Dask worker, or this host): where a cluster's work went
    values["workers"] = [list(r["workers"].items()) if r.get("workers") else None for r in rows]
    table = pa.table(values, schema=pa.schema([*schema, ("workers", pa.map_(pa.string(), pa.string()))]))
    with atomic_path(out_dir) as out:
        out.mkdir()
        pq.write_table(table, out / "metrics.parquet")
        write_json(out / "summary.json", {"variants": summary, "vs_full": differences, "set_metrics": batch})
        write_text(out / "summary.md", _summary_markdown(summary, batch, differences))
        write_chart(rows, out / "chart.png")
        write_thumbnails(rows, out / "edits")
        write_text(out / "report.html", batch_report(rows, summary, batch, out_dir, title, differences))
    log.info(
        "batch report: %s (%d cases, %d failed)",
        out_dir / "report.html",
        len(rows),
        sum(r["status"] != "ok" for r in rows),
    )
    return {"variants": summary, "vs_full": differences, "set_metrics": batch}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Aggregate the evaluated cases of a manifest into a batch report.")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--cases", type=Path, default=Path("data/cases"), help="folder holding the case folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the table and report")
    parser.add_argument("--params", type=Path, action="append", help="parameter files (default: ./params.yaml)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        cases = read_manifest(args.manifest)
        params = load_params(args.params or default_params_files(args.cases / "_"))
        aggregate(rows_from_folders(cases, args.cases), args.out, params, f"Edit-Your-Motion: {args.manifest}")
    except EYMError as exc:
        log.error("aggregate failed: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
