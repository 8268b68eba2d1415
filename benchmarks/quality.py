"""The quality benchmark: the paper's ablation table on the puppet world, against the ground-truth edit.

    .venv/bin/python benchmarks/quality.py --sources 8 --references 2 --out reports/quality
    .venv/bin/python benchmarks/quality.py --grid 50,100,200 --grid-cases 2 --out reports/quality-grid

Generates ``--sources`` unseen puppet sources (evaluation seeds: never in eym-mini's training), each
with ``--references`` reference motions and their ground-truth edits, and runs every edit as each
variant below (manifest parameters, no code copies) through the batch flow, in this DVC workspace
(``data/quality/``). The report (``--out``): ``metrics.parquet``, ``summary.md`` (mean ± std per
variant and the paired difference to the full method with 95 % bootstrap intervals), ``chart.png``
``report.html``, ``table.md`` (the headline columns, person region first, for the docs) and
``variants.png`` (one edit, every variant, two frames).
``--grid`` instead runs the full method with stage-1 x stage-2 steps on the first ``--grid-cases``
edits, like the paper's sensitivity table, and adds ``grid.md`` (one table per metric) and ``grid.png``
(heat maps). ``--report-only`` rebuilds the report from the edits
evaluated so far (for example while a long run goes on). Each report folder has its own manifest,
and runs share the workspace's finished stages: a smaller run (fewer ``--sources``, other
``--variants``) takes the first sources of the inputs already drawn and recomputes nothing they share.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def variants(steps: int) -> dict[str, dict]:
    """Every method, ablation and baseline as parameter overrides; tuning variants share ``steps``."""
    off = {"stage1": {"enabled": False}, "stage2": {"enabled": False}}
    return {
        "full": {},
        "wo_rca": {"model": {"spatial_attention": "frame"}},
        "wo_ma": {"model": {"motion_attention": False}},
        "wo_stl": {
            "stage1": {"enabled": False},
            "stage2": {"trainable": ["temporal", "spatial_attention", "motion_attention"], "steps": 2 * steps},
        },
        "no_tuning": off,
        "tune_a_video": {
            "model": {"spatial_attention": "sparse_causal", "motion_attention": False},
            "stage1": {"enabled": False},
            "stage2": {"trainable": ["attn1.to_q", "attn2.to_q", "temporal"], "steps": 2 * steps},
        },
        "controlnet_only": {**off, "inversion": {"enabled": False}, "sampling": {"start": "noise"}},
        "copy_source": {**off, "inversion": {"enabled": False}, "sampling": {"start": "source", "preserve": "none"}},
        # Not in the paper's table: the full method inverted with the source skeletons fed to the
        # ControlNet (an open question of the method), so the noise need not hold the source's pose.
        "invert_with_pose": {"inversion": {"controlnet": True}},
        # Background preservation (sampling.preserve) set explicitly, whatever the default
        "preserve_none": {"sampling": {"preserve": "none"}},
        "preserve_latent": {"sampling": {"preserve": "latent"}},
        "preserve_pixels": {"sampling": {"preserve": "pixels"}},
        "preserve_latent_pixels": {"sampling": {"preserve": "latent+pixels"}},
    }


# The protocol's variants: the paper's ablations and the two baselines (others on request).
PROTOCOL = ("full", "wo_rca", "wo_ma", "wo_stl", "no_tuning", "tune_a_video", "controlnet_only", "copy_source")


# The docs' columns: person region first, then pose, flicker, whole frame and background.
TABLE_METRICS = (
    "psnr_person",
    "ssim_person",
    "lpips_person",
    "pose_pck",
    "pose_pck_moved",
    "temporal_error",
    "psnr",
    "psnr_background",
)
DIFFERENCE_METRICS = ("psnr_person", "ssim_person", "pose_pck", "pose_pck_moved", "temporal_error", "psnr_background")
GRID_METRICS = DIFFERENCE_METRICS[:5]
DIGITS = {"psnr_person": 2, "temporal_error": 4}  # decimals shown; 3 for the rest
GRID_NAME = re.compile(r"s1_(\d+)-s2_(\d+)")  # protocol_manifest's name of a grid cell


def headline_table(result: dict, order: list[str]) -> str:
    """Markdown: mean ± std per variant, then the paired differences to ``full`` with 95 % intervals."""
    from eym.report import METRICS

    variants_seen = [v for v in order if v in result["variants"]]
    variants_seen += sorted(set(result["variants"]) - set(variants_seen))
    columns = [m for m in TABLE_METRICS if any(m in result["variants"][v] for v in variants_seen)]

    def row(cells) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    lines = [row(["variant", "edits", *(METRICS[m][0] for m in columns)]), row(["---"] * (2 + len(columns)))]
    for v in variants_seen:
        stats = result["variants"][v]
        cells = [f"{stats[m]['mean']:.3f} ± {stats[m]['std']:.3f}" if m in stats else "—" for m in columns]
        lines.append(row([v, stats["cases"], *cells]))
    differences = result.get("vs_full") or {}
    columns = [m for m in DIFFERENCE_METRICS if any(m in d for d in differences.values())]
    if columns:
        lines += ["", "Paired difference to `full` over the same edits (mean [95 % bootstrap interval]):", ""]
        lines += [row(["variant", *(METRICS[m][0] for m in columns)]), row(["---"] * (1 + len(columns)))]
        for v in [v for v in variants_seen if v in differences]:
            d = differences[v]
            cells = [
                f"{d[m]['mean']:+.3f} [{d[m]['low']:+.3f}, {d[m]['high']:+.3f}]" if m in d else "—" for m in columns
            ]
            lines.append(row([v, *cells]))
    return "\n".join(lines) + "\n"


def grid_cells(result: dict) -> dict[tuple[int, int], dict]:
    """The grid runs' statistics by (stage-1 steps, stage-2 steps)."""
    cells = {}
    for name, stats in result["variants"].items():
        if match := GRID_NAME.fullmatch(name):
            cells[int(match[1]), int(match[2])] = stats
    return cells


def grid_layout(result: dict):
    """The grid's cells, its stage-1 steps (rows), stage-2 steps (columns) and the metrics it has."""
    cells = grid_cells(result)
    metrics = [m for m in GRID_METRICS if any(m in stats for stats in cells.values())]
    return cells, sorted({a for a, _ in cells}), sorted({b for _, b in cells}), metrics


def grid_tables(result: dict) -> str:
    """Markdown: per metric, the mean over the edits of each stage-1 (rows) x stage-2 (columns) cell."""
    from eym.report import METRICS

    cells, rows, columns, shown = grid_layout(result)
    edits = max((stats["cases"] for stats in cells.values()), default=0)
    lines = []
    for metric in shown:
        digits = DIGITS.get(metric, 3)
        lines += [f"{METRICS[metric][0]}, stage-1 steps (rows) × stage-2 steps (columns), mean of {edits} edits:", ""]
        lines += ["| stage 1 \\ stage 2 | " + " | ".join(map(str, columns)) + " |", "|---" * (1 + len(columns)) + "|"]
        for a in rows:
            values = [cells.get((a, b), {}).get(metric) for b in columns]
            text = [f"{v['mean']:.{digits}f}" if v else "—" for v in values]
            lines.append(f"| {a} | " + " | ".join(text) + " |")
        lines.append("")
    return "\n".join(lines)


def grid_figure(result: dict, path: Path) -> Path:
    """``grid.png``: one heat map per metric over stage-1 x stage-2 steps, each cell labelled with its mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from eym.report import METRICS

    cells, rows, columns, shown = grid_layout(result)
    fig, axes = plt.subplots(1, len(shown), figsize=(2.9 * len(shown), 2.9), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        values = np.array([[cells.get((a, b), {}).get(metric, {}).get("mean", np.nan) for b in columns] for a in rows])
        label, higher = METRICS[metric]
        digits = DIGITS.get(metric, 3)
        low, high = np.nanmin(values), np.nanmax(values)
        bright = (values - low) / (high - low) if high > low else np.full(values.shape, 0.5)
        bright = bright if higher else 1 - bright  # position on viridis: 1 is yellow
        ax.imshow(bright, cmap="viridis", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(values):
            text = "—" if np.isnan(v) else f"{v:.{digits}f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if bright[i, j] > 0.6 else "white", fontsize=8)
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("stage-2 steps", fontsize=8)
        ax.set_ylabel("stage-1 steps", fontsize=8)
        span = f"{low:.{digits}f} to {high:.{digits}f}"
        ax.set_title(f"{label}\n{'higher' if higher else 'lower'} is better (bright); {span}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_table(out: Path) -> Path:
    """``table.md`` beside the report's ``summary.json``; for a grid run also ``grid.md`` and ``grid.png``."""
    result = json.loads((out / "summary.json").read_text())
    (out / "table.md").write_text(headline_table(result, list(variants(1))))
    if grid_cells(result):
        (out / "grid.md").write_text(grid_tables(result))
        grid_figure(result, out / "grid.png")
    return out / "table.md"


def variants_figure(cases: Path, edit: str, names: list[str], out: Path, frames=(3, 7)) -> Path | None:
    """``variants.png``: one edit's aligned skeleton, ground truth and every variant's edit, two frames."""
    import imageio.v3 as iio
    import numpy as np
    from PIL import Image, ImageDraw

    runs = [(n, cases / f"{edit}--{n}" / "sample" / "comparison.gif") for n in names]
    runs = [(n, gif) for n, gif in runs if gif.is_file()]
    if not runs:
        return None
    videos = {n: iio.imread(gif, index=None) for n, gif in runs}  # source | reference | skeleton | edit | truth
    rows = []
    for index in frames:
        panels = []
        for n, _ in runs:
            frame = videos[n][min(index, len(videos[n]) - 1)]
            side = frame.shape[0]
            if not panels:
                panels += [("aligned skeleton", frame[:, 2 * side : 3 * side]), ("ground truth", frame[:, 4 * side :])]
            panels.append((n, frame[:, 3 * side : 4 * side]))
        row = Image.fromarray(np.concatenate([p for _, p in panels], 1))
        draw = ImageDraw.Draw(row)
        for i, (label, _) in enumerate(panels):
            draw.rectangle([i * side, 0, (i + 1) * side - 1, 13], fill="white")  # hides the GIF's own label
            draw.text((i * side + 2, 0), label, fill="black")
        rows.append(np.asarray(row))
    Image.fromarray(np.concatenate(rows, 0)).save(out / "variants.png")
    return out / "variants.png"


def merge(*trees: dict) -> dict:
    from eym.parameters import deep_merge

    out: dict = {}
    for tree in trees:
        out = deep_merge(out, tree)
    return out


def protocol_manifest(
    cases_manifest: Path,
    out: Path,
    steps: int,
    names: list[str],
    grid: list[int] | None,
    grid_cases: int,
    sources: int | None = None,
    references: int | None = None,
) -> Path:
    """The manifest of every (edit, variant): ids ``<edit>--<variant>``; paths relative to ``out``.
    Edits: the first ``references`` of each of the first ``sources`` sources (default: all)."""
    by_source: dict[str, list[dict]] = {}
    for row in yaml.safe_load(cases_manifest.read_text())["cases"]:
        by_source.setdefault(row["source"], []).append(row)
    if len(by_source) < (sources or 0) or min(map(len, by_source.values())) < (references or 0):
        raise SystemExit(
            f"{cases_manifest}: {len(by_source)} sources with up to {max(map(len, by_source.values()))} references "
            f"each, fewer than asked; delete {cases_manifest.parent} to draw them again"
        )
    rows = [row for group in list(by_source.values())[:sources] for row in group[:references]]
    base = {"stage1": {"steps": steps}, "stage2": {"steps": steps}}
    table = variants(steps)
    runs = []
    if grid:
        for row in rows[:grid_cases]:
            for s1 in grid:
                for s2 in grid:
                    params = merge(base, {"stage1": {"steps": s1}, "stage2": {"steps": s2}})
                    runs.append((row, f"s1_{s1}-s2_{s2}", params))
    else:
        for row in rows:
            for name in names:
                runs.append((row, name, merge(base, table[name])))
    manifest_rows = []
    for row, name, params in runs:
        new = {k: v for k, v in row.items() if k != "id"}
        for key in ("source", "reference", "ground_truth"):
            new[key] = os.path.relpath(cases_manifest.parent / row[key], out.parent)
        manifest_rows.append({"id": f"{row['id']}--{name}", **new, "params": params, "variant": name})
    out.write_text(yaml.safe_dump({"cases": manifest_rows}, sort_keys=False, width=150))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--references", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50, help="tuning steps per stage (w/o STL, TAV: twice)")
    parser.add_argument("--seed", type=int, default=7, help="benchmark seed (evaluation range)")
    parser.add_argument("--variants", default=",".join(PROTOCOL), help=f"comma-separated, of: {', '.join(variants(1))}")
    parser.add_argument("--grid", help="comma-separated steps: stage 1 x stage 2 grid of the full method")
    parser.add_argument("--grid-cases", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--figure-edit", default="puppet-000-r0", help="the edit that variants.png shows")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the edits evaluated so far")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE on top of every variant (as eym-edit)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.overrides import overrides_from
    from flows.pipeline import edit_batch, with_runner
    from flows.runtime import prefect_api
    from puppet_world.benchmark import make_benchmark

    work = REPO / "data" / "quality"
    inputs = work / f"inputs-seed{args.seed}"
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(variants(1)))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(variants(1))}")
    grid = [int(s) for s in args.grid.split(",")] if args.grid else None
    tag = "grid" if grid else "variants"
    manifest = work / f"manifest-{tag}-{args.out.name}.yaml"  # one per report: runs of several protocols share work
    if args.report_only:
        if not manifest.is_file():
            raise SystemExit(f"{manifest}: no {tag} run to report on yet (run without --report-only first)")
        from stages.aggregate import main as aggregate_folders

        if aggregate_folders([str(manifest), "--cases", str(work / "cases"), "--out", str(args.out)]):
            raise SystemExit(2)
        print(write_table(args.out).read_text())
        if not grid:
            variants_figure(work / "cases", args.figure_edit, names, args.out)
        return
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    size, frames = params["frames"]["width"], 24
    if not (inputs / "manifest.yaml").is_file():
        make_benchmark(
            inputs,
            args.sources * args.references,
            args.seed,
            size=256,
            num_frames=frames,
            image_source_every=0,
            workers=2,
            references_per_source=args.references,
            prefix="puppet",  # the protocol's edit ids (puppet-000-r0--full, ...) in its own data/quality/cases
        )
    protocol_manifest(
        inputs / "manifest.yaml", manifest, args.steps, names, grid, args.grid_cases, args.sources, args.references
    )
    start = time.perf_counter()
    with prefect_api():
        rows = with_runner(edit_batch, workers=args.workers)(
            str(manifest), str(work / "cases"), str(args.out.resolve()), overrides=overrides_from(args)
        )
    minutes = (time.perf_counter() - start) / 60
    write_table(args.out)
    if not grid:
        variants_figure(work / "cases", args.figure_edit, names, args.out)
    failed = [r for r in rows if r["status"] != "ok"]
    print(
        f"{len(rows)} edits ({len(failed)} failed) in {minutes:.0f} min (size {size}, steps {args.steps}); "
        f"report: {args.out / 'report.html'}"
    )
    for r in failed:
        print(f"  {r['case']}: {r['failed_stage']}: {r['reason']}")


if __name__ == "__main__":
    main()
