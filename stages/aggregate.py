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
from eym.media import read_frames
from eym.report import METRICS, batch_report

from .common import EVALUATION, SAMPLE, default_params_files, load_params, log, read_case, setup_logging

TEXT_COLUMNS = ("case", "variant", "status", "failed_stage", "reason", "case_dir")


def variant_of(row: dict) -> str:
    return row.get("variant") or "full"


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
    for variant in sorted({variant_of(r) for r in rows}):
        group = [r for r in rows if variant_of(r) == variant and r["status"] == "ok"]
        stats = {"cases": len(group), "failed": sum(variant_of(r) == variant for r in rows) - len(group)}
        for metric in METRICS:
            values = [r[metric] for r in group if r.get(metric) is not None]
            if values:
                stats[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
        out[variant] = stats
    return out


def set_metrics(rows: list[dict], params: dict) -> dict:
    """FVD and FID-VID per variant (edited videos vs ground-truth videos), or why they are unavailable."""
    from eym.metric_models import VideoFeatures
    from eym.metrics import frechet_distance

    p = params.get("evaluation", {})
    networks, out = {}, {}
    for metric, key, what in (("fvd", "fvd_model", "FVD"), ("fid_vid", "fid_vid_model", "FID-VID")):
        try:
            networks[metric] = VideoFeatures(p.get(key), what, min_frames=int(p.get("video_min_frames", 10)))
        except MissingWeightsError as exc:
            out[metric] = f"unavailable: {exc}"
    if not networks:
        return out
    for variant in sorted({variant_of(r) for r in rows}):
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
    from .evaluate import ground_truth_frames

    pairs = []
    for r in rows:
        case_dir = Path(r["case_dir"])
        truth = read_case(case_dir).ground_truth
        if truth:
            pairs.append((read_frames(case_dir / SAMPLE / "frames"), ground_truth_frames(case_dir, truth)))
    return pairs


def _summary_markdown(summary: dict, batch: dict) -> str:
    names = [m for m in METRICS if any(m in s for s in summary.values())]

    def row(cells) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [row(["variant", "cases", "failed", *(METRICS[m][0] for m in names)]), row(["---"] * (3 + len(names)))]
    for variant, s in summary.items():
        cells = [f"{s[m]['mean']:.4g} ± {s[m]['std']:.2g}" if m in s else "—" for m in names]
        lines.append(row([variant, s["cases"], s["failed"], *cells]))
    lines += ["", *[f"- {k}: {v if isinstance(v, str) else f'{v:.3f}'}" for k, v in batch.items()]]
    return "\n".join(lines) + "\n"


def aggregate(rows: list[dict], out_dir: Path, params: dict, title: str = "Edit-Your-Motion batch") -> dict:
    out_dir = Path(out_dir).resolve()
    for r in rows:
        r["variant"] = variant_of(r)
    summary = summarise(rows)
    batch = set_metrics(rows, params)
    columns = list(TEXT_COLUMNS) + ["seconds"] + list(METRICS)
    table = pa.table(
        {c: [r.get(c) for r in rows] for c in columns},
        schema=pa.schema([(c, pa.string()) if c in TEXT_COLUMNS else (c, pa.float64()) for c in columns]),
    )
    with atomic_path(out_dir) as out:
        out.mkdir()
        pq.write_table(table, out / "metrics.parquet")
        write_json(out / "summary.json", {"variants": summary, "set_metrics": batch})
        write_text(out / "summary.md", _summary_markdown(summary, batch))
        write_text(out / "report.html", batch_report(rows, summary, batch, out_dir, title))
    log.info(
        "batch report: %s (%d cases, %d failed)",
        out_dir / "report.html",
        len(rows),
        sum(r["status"] != "ok" for r in rows),
    )
    return {"variants": summary, "set_metrics": batch}


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
