"""HTML reports: one page per case (videos, metrics, loss curves) and one per batch (sortable table,
thumbnail grid, mean ± std per method). Self-contained pages: inline CSS, SVG and a few lines of
JavaScript, relative links to the videos; they work offline and from a file:// URL.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .workspace import link as link_to

_BASE = {  # name -> (label, higher is better)
    "psnr": ("PSNR (dB)", True),
    "ssim": ("SSIM", True),
    "lpips": ("LPIPS", False),
    "l1": ("L1 (MAE)", False),
    "l1_disco": ("L1 (DisCo)", False),
}
# Person region first: on a static scene most pixels are background that any editor keeps.
METRICS = {
    **{f"{m}_person": (f"{label} person", higher) for m, (label, higher) in _BASE.items()},
    "pose_pck": ("Pose PCK@0.1", True),
    "pose_pck_moved": ("Pose PCK@0.1, moved joints", True),
    "temporal_error": ("Temporal error", False),
    **_BASE,
    **{f"{m}_background": (f"{label} background", higher) for m, (label, higher) in _BASE.items()},
    "clip_ta": ("CLIP TA", True),
    "clip_tc": ("CLIP TC", True),
    "lpips_n": ("LPIPS-N", False),
    "lpips_s": ("LPIPS-S", False),
    "fvd": ("FVD", False),
    "fid_vid": ("FID-VID", False),
}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.prompt { color: #555; font-style: italic; }
.warning { color: #8a4b00; background: #fff4e0; padding: 4px 8px; border-radius: 4px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
th { text-align: left; background: #f4f4f4; } th.sortable { cursor: pointer; } td.num { text-align: right; }
td.na { color: #999; } .muted { color: #888; font-size: 12px; }
video, img.edit { max-width: 100%; border: 1px solid #ccc; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; }
.grid a { text-decoration: none; color: #333; font-size: 12px; } .grid img { width: 100%; border: 1px solid #ccc; }
.plots { display: flex; gap: 24px; flex-wrap: wrap; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), ascending = th.dataset.order !== "asc";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (isNaN(nx) || isNaN(ny)) { return ascending ? String(x).localeCompare(y) : String(y).localeCompare(x); }
        return ascending ? nx - ny : ny - nx;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      th.dataset.order = ascending ? "asc" : "desc";
    });
  });
});
"""


def _page(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>{body}{tail}</body></html>\n'
    )


def fmt(value) -> str:
    if value is None:
        return "—"
    if abs(value) != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4f}"


def svg_plot(series: dict[str, tuple[list, list]], title: str, width: int = 420, height: int = 220) -> str:
    """A line chart of (x, y) series as inline SVG."""
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys)]
    if not points:
        return f"<p class='muted'>{html.escape(title)}: no data</p>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    pad, colours = 40, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (width - 2 * pad)  # noqa: E731
    sy = lambda y: height - pad + (y0 - y) / (y1 - y0) * (height - 2 * pad)  # noqa: E731
    lines = []
    for i, (name, (xs, ys)) in enumerate(series.items()):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        colour = colours[i % len(colours)]
        lines.append(
            f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{path}'/>"
            f"<text x='{width - pad}' y='{16 + 14 * i}' text-anchor='end' fill='{colour}' "
            f"font-size='12'>{html.escape(name)}</text>"
        )
    axes = (
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' stroke='#888'/>"
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' stroke='#888'/>"
        f"<text x='{pad}' y='{height - 8}' font-size='11'>{x0:g}</text>"
        f"<text x='{width - pad}' y='{height - 8}' font-size='11' text-anchor='end'>{x1:g}</text>"
        f"<text x='4' y='{height - pad}' font-size='11'>{y0:.3g}</text>"
        f"<text x='4' y='{pad + 4}' font-size='11'>{y1:.3g}</text>"
        f"<text x='{width / 2}' y='14' font-size='13' text-anchor='middle'>{html.escape(title)}</text>"
    )
    return f"<svg width='{width}' height='{height}' role='img'>{axes}{''.join(lines)}</svg>"


def read_loss_log(path: Path) -> tuple[list, list]:
    if not path.is_file():
        return [], []
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return [int(r[0]) for r in rows], [float(r[1]) for r in rows]


def metrics_table(values: dict, unavailable: dict) -> str:
    rows = []
    for name, value in values.items():
        label = METRICS.get(name, (name, True))[0]
        if value is None:
            reason = html.escape(unavailable.get(name, "not computed"))
            rows.append(f"<tr><td>{label}</td><td class='na'>unavailable</td><td class='muted'>{reason}</td></tr>")
        else:
            rows.append(f"<tr><td>{label}</td><td class='num'>{fmt(value)}</td><td></td></tr>")
    return (
        "<table><thead><tr><th>metric</th><th>value</th><th>note</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


WARNING_SOURCES = ("pose/meta.json", "offset/meta.json", "stage1/meta.json", "stage2/meta.json", "sample/meta.json")


def stage_warnings(case_dir: Path, source_dir: Path | None = None) -> list[str]:
    """The warnings the stages of an edit and of its source recorded in their meta files, as
    "stage: warning", without repeats."""
    out = []
    folders = [Path(case_dir)] + ([Path(source_dir)] if source_dir and Path(source_dir) != Path(case_dir) else [])
    for folder, rel in ((f, r) for f in folders for r in WARNING_SOURCES):
        path = folder / rel
        if path.is_file():
            for warning in json.loads(path.read_text()).get("warnings", []):
                line = f"{rel.split('/')[0]}: {warning}"
                if line not in out:
                    out.append(line)
    return out


def case_report(
    case_dir: Path,
    values: dict,
    details: dict,
    prompt: str,
    ground_truth: Path | None = None,
    source_dir: Path | None = None,
) -> str:
    """The page written to ``<case>/eval/report.html``; links are relative to that folder. The tuning
    curves and the inversion check come from the source's folder (``source_dir``, default the case's)."""
    case_dir = Path(case_dir)
    source_dir = Path(source_dir or case_dir)
    truth = ""
    if ground_truth:
        link = html.escape(link_to(ground_truth, case_dir / "eval"))
        truth = (
            f"<h2>Ground truth</h2><video src='{link}' controls loop muted playsinline "
            f"style='max-width: 512px'></video>"
        )
    case_id = case_dir.name
    curves = {stage: read_loss_log(source_dir / stage / "loss.tsv") for stage in ("stage1", "stage2")}
    inversion = source_dir / "inversion" / "inversion.json"
    offset = case_dir / "offset" / "meta.json"
    extras = []
    if inversion.is_file():
        info = json.loads(inversion.read_text())
        if "reconstruction_psnr" in info:
            extras.append(
                f"Inversion check: re-sampling the inverted noise gives PSNR "
                f"{info['reconstruction_psnr']:.2f} dB against the source (VAE alone: {info['vae_psnr']:.2f} dB)."
            )
    if offset.is_file():
        info = json.loads(offset.read_text())
        extras.append(
            f"Skeleton offset: {info['retarget']} retargeting, scale {info['scale']:.3f}, anchor {info['anchor']}, "
            f"{info['mode']} mode, {info['inside_fraction']:.0%} of the joints inside the frame."
        )
    warnings = stage_warnings(case_dir, source_dir)
    warning_html = "".join(f"<p class='warning'>Warning: {html.escape(w)}</p>" for w in warnings)
    body = (
        f"<h1>Case {html.escape(case_id)}</h1><p class='prompt'>{html.escape(prompt) or '(no prompt)'}</p>"
        f"{warning_html}"
        "<h2>Source | reference | aligned skeleton | edited (| ground truth)</h2>"
        "<video src='../sample/comparison.mp4' controls loop muted playsinline width='100%'></video>"
        "<h2>Edited</h2><img class='edit' src='../sample/edited.gif' alt='edited video'>"
        f"{truth}<h2>Metrics</h2>{metrics_table(values, details.get('unavailable', {}))}"
        + "".join(f"<p class='muted'>{html.escape(e)}</p>" for e in extras)
        + (
            "<h2>Retargeting</h2><img class='preview' src='../offset/preview.png' "
            "alt='source, reference and aligned skeleton' style='max-width: 100%'>"
            if (case_dir / "offset" / "preview.png").is_file()
            else ""
        )
        + "<h2>Tuning loss</h2><div class='plots'>"
        + "".join(svg_plot({stage: curve}, f"{stage} loss") for stage, curve in curves.items())
        + "</div>"
    )
    return _page(f"Edit-Your-Motion: {case_id}", body)


def batch_report(
    rows: list[dict], summary: dict, batch_metrics: dict, out_dir: Path, title: str, differences: dict | None = None
) -> str:
    """The batch page: mean ± std per variant, paired differences to ``full`` with their intervals, the
    chart (``chart.png`` beside the page), a table sortable by metric, and a thumbnail grid.

    ``rows``: one dict per case with ``case``, ``variant``, ``case_dir``, ``status`` and metric values.
    The grid's thumbnails are ``edits/<case>.gif`` beside the page (``aggregate`` writes them); each
    case's own report is linked with ``eym.workspace.link``.
    """
    names = [m for m in METRICS if any(r.get(m) is not None for r in rows)]
    head = "<tr><th>case</th><th>variant</th><th>status</th>" + "".join(f"<th>{METRICS[m][0]}</th>" for m in names)
    body_rows = []
    for r in rows:
        link = link_to(Path(r["case_dir"]) / "eval" / "report.html", out_dir)
        name = html.escape(r["case"])
        cells = [
            f"<td data-value='{name}'><a href='{html.escape(link)}'>{name}</a></td>",
            f"<td data-value='{html.escape(r['variant'])}'>{html.escape(r['variant'])}</td>",
            f"<td data-value='{html.escape(r['status'])}'>{html.escape(r['status'])}</td>",
        ]
        for m in names:
            v = r.get(m)
            cells.append(f"<td class='num' data-value='{'' if v is None else v}'>{fmt(v)}</td>")
        body_rows.append("<tr>" + "".join(cells) + "</tr>")
    summary_rows = "".join(
        f"<tr><td>{html.escape(variant)}</td><td class='num'>{stats['cases']}</td>"
        + "".join(f"<td class='num'>{_mean_std(stats.get(m))}</td>" for m in names)
        + "</tr>"
        for variant, stats in summary.items()
    )
    grid = "".join(
        f"<a href='{html.escape(link_to(Path(r['case_dir']) / 'eval' / 'report.html', out_dir))}'>"
        f"<img src='edits/{html.escape(r['case'])}.gif' "
        f"alt='{html.escape(r['case'])}' loading='lazy'><br>{html.escape(r['case'])}</a>"
        for r in rows
        if r["status"] == "ok"
    )
    batch_lines = "".join(
        f"<li>{METRICS.get(k, (k,))[0]}: {fmt(v) if not isinstance(v, str) else html.escape(v)}</li>"
        for k, v in batch_metrics.items()
    )
    difference_rows = "".join(
        f"<tr><td>{html.escape(variant)}</td>"
        + "".join(f"<td class='num'>{_interval(d.get(m))}</td>" for m in names)
        + "</tr>"
        for variant, d in (differences or {}).items()
    )
    differences_html = (
        "<h2>Paired difference to full (95 % bootstrap interval)</h2><table><thead><tr><th>variant</th>"
        + "".join(f"<th>{METRICS[m][0]}</th>" for m in names)
        + f"</tr></thead><tbody>{difference_rows}</tbody></table>"
        if difference_rows
        else ""
    )
    body = (
        f"<h1>{html.escape(title)}</h1><p class='muted'>{len(rows)} cases; click a column to sort.</p>"
        f"<h2>Mean ± std per variant</h2><table><thead><tr><th>variant</th><th>cases</th>"
        + "".join(f"<th>{METRICS[m][0]}</th>" for m in names)
        + f"</tr></thead><tbody>{summary_rows}</tbody></table>{differences_html}"
        "<img class='chart' src='chart.png' alt='per-variant means with 95 % intervals' style='max-width: 100%'>"
        f"<h2>Set-level metrics</h2><ul>{batch_lines or '<li>none</li>'}</ul>"
        f"<h2>All cases</h2><table class='sortable' id='cases'><thead>{head}</tr></thead><tbody>"
        + "".join(body_rows)
        + f"</tbody></table><h2>Edits</h2><div class='grid'>{grid}</div>"
    )
    return _page(title, body, SORT_SCRIPT)


def _interval(d) -> str:
    if not d:
        return "—"
    return f"{d['mean']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}]"


def _mean_std(stats) -> str:
    if not stats:
        return "—"
    return f"{fmt(stats['mean'])} ± {fmt(stats['std'])}"
