"""Background preservation on a quality protocol's edits: the pixel modes of ``sampling.preserve`` re-made
from the ``preserve_none`` and ``preserve_latent`` edits with the edit region and clean plate the offset
stage makes now, and every variant against ``none``, paired, with 95 % bootstrap intervals.

    .venv/bin/python benchmarks/preserve_region.py data/quality/cases --unchanged 8 \
        --out reports/quality-preserve/region.md --figure-edit puppet-002-r1

``pixels`` needs no sampling: it is the ``none`` edit composited with the source outside the region
(what the sample stage does, eym_model/preserve.py), and ``latent+pixels`` the ``latent`` edit composited,
so a change of ``offset.region`` or of the composite is measured in minutes. Re-made: ``pixels`` with
``sampling.vacated: edit`` and ``plate``, ``latent+pixels`` with ``plate``, and with ``--unchanged G``
both with ``sampling.unchanged: G`` too. Each is a folder ``<edit>--<suffix>`` beside the others (not
a DVC pipeline), evaluated by the evaluate stage; ``none``, ``latent`` and the copy are read from the
folders the protocol wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VARIANTS = {
    "none": "preserve_none",
    "pixels, vacated: edit": "pixels_now",
    "pixels, vacated: plate": "plate_now",
    "pixels, plate, unchanged": "plate_unchanged_now",
    "latent": "preserve_latent",
    "latent+pixels (as sampled)": "preserve_latent_pixels",
    "latent+pixels, plate": "latent_plate_now",
    "latent+pixels, plate, unchanged": "latent_plate_unchanged_now",
    "copy the source": "copy_source",
}
# re-made: suffix -> (the sampled edit it composites, sampling.vacated, uses --unchanged)
REMADE = {
    "pixels_now": ("preserve_none", "edit", False),
    "plate_now": ("preserve_none", "plate", False),
    "plate_unchanged_now": ("preserve_none", "plate", True),
    "latent_plate_now": ("preserve_latent", "plate", False),
    "latent_plate_unchanged_now": ("preserve_latent", "plate", True),
}
METRICS = ("psnr_person", "ssim_person", "pose_pck", "pose_pck_moved", "temporal_error", "psnr", "psnr_background")


def remake(sampled: Path, suffix: str, unchanged: float = 0.0) -> Path:
    """A pixel mode re-made from a sampled edit folder (``REMADE[suffix]``), evaluated."""
    from eym.edit_region import to_png
    from eym.keypoints import read_keypoints
    from eym.media import read_frames, read_masks, write_frames, write_image
    from eym_model.preserve import composite
    from stages import evaluate
    from stages.common import default_params_files, load_params, read_case, section
    from stages.offset import keep_maps

    _, vacated, uses_unchanged = REMADE[suffix]
    out = sampled.with_name(sampled.name.rsplit("--", 1)[0] + f"--{suffix}")
    shutil.rmtree(out, ignore_errors=True)
    # not a DVC pipeline: a stage of it would rerun the sampling this replaces
    shutil.copytree(sampled, out, ignore=shutil.ignore_patterns("eval", "dvc.yaml", "dvc.lock", ".gitignore"))
    case = yaml.safe_load((out / "case.yaml").read_text())
    (out / "case.yaml").write_text(yaml.safe_dump({**case, "id": out.name, "variant": suffix}))
    folder, params = read_case(out), load_params(default_params_files(out))
    p = section(params, "offset")
    source_kp, _ = read_keypoints(folder.prepared_dir / "pose" / "source.parquet")
    aligned, _ = read_keypoints(out / "offset" / "aligned.parquet")
    masks = read_masks(folder.prepared_dir / "masks" / "masks")
    source = read_frames(folder.source_dir / "frames" / "source")
    info = {}
    region, plate, weight = keep_maps(source, masks, source_kp, aligned, p.region, p.min_confidence, info)
    filled = (plate, weight) if vacated == "plate" else None
    edited = read_frames(sampled / "sample" / "frames")
    write_frames(
        out / "sample" / "frames", composite(edited, source, region, filled, unchanged if uses_unchanged else 0)
    )
    # the maps it was made with, as the offset stage writes them
    write_frames(out / "offset" / "region", to_png(region))
    write_image(out / "offset" / "plate.png", plate)
    write_frames(out / "offset" / "plate_weight", to_png(weight))
    (out / "offset" / "keep.json").write_text(json.dumps(info))
    evaluate.run(out, params)
    return out


def table(cases: Path, unchanged: float = 0.0) -> str:
    """Markdown: mean ± std per variant, then the paired differences to ``none``."""
    from stages.aggregate import bootstrap_interval

    found = {}
    for name, suffix in VARIANTS.items():
        if suffix in REMADE and REMADE[suffix][2] and not unchanged:
            continue  # made with another --unchanged, or none
        name = f"{name} {unchanged:g}" if name.endswith("unchanged") else name
        for f in sorted(cases.glob(f"*--{suffix}/eval/metrics.json")):
            found.setdefault(name, {})[f.parent.parent.name.rsplit("--", 1)[0]] = json.loads(f.read_text())
    edits = sorted(set.intersection(*(set(v) for v in found.values())))
    head = "| preserve | " + " | ".join(METRICS) + " |\n|" + "---|" * (len(METRICS) + 1) + "\n"
    lines = [f"{len(edits)} edits, mean ± std:\n\n", head]
    for name, runs in found.items():
        values = [[runs[e][m] for e in edits] for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in values) + " |\n")
    lines += ["\nPaired difference to `none` (mean [95 % bootstrap interval]):\n\n", head]
    for name, runs in found.items():
        if name != "none":
            diffs = [[runs[e][m] - found["none"][e][m] for e in edits] for m in METRICS]
            intervals = [bootstrap_interval(d) for d in diffs]
            cells = [f"{np.mean(d):+.3f} [{low:+.3f}, {high:+.3f}]" for d, (low, high) in zip(diffs, intervals)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


def figure(cases: Path, edit: str, frames=(2, 5)) -> np.ndarray:
    """One edit under each preserve variant, a row per frame: source | variants | the region."""
    from eym.edit_region import read_region
    from eym.media import read_frames
    from eym.panels import side_by_side
    from stages.common import read_case

    none = cases / f"{edit}--preserve_none"
    panels = {"source": read_frames(read_case(none).source_dir / "frames" / "source")}
    shown = {"none": "none", "pixels, vacated: plate": "pixels+plate", "pixels, plate, unchanged": "+unchanged",
             "latent+pixels, plate": "latent+pixels"}  # fmt: skip
    for name, label in shown.items():
        suffix = VARIANTS[name]
        if (cases / f"{edit}--{suffix}" / "sample" / "frames").is_dir():
            panels[label] = read_frames(cases / f"{edit}--{suffix}" / "sample" / "frames")
    region = read_region(cases / f"{edit}--plate_now" / "offset" / "region")  # today's region
    panels["region"] = np.repeat((region[..., None] * 255).astype(np.uint8), 3, axis=-1)
    rows = side_by_side(panels)
    return np.concatenate([rows[i] for i in frames if i < len(rows)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path, help="the protocol's edit folders (data/quality/cases)")
    parser.add_argument("--out", type=Path, help="also write the table here, and beside it region.png")
    parser.add_argument("--figure-edit", help="the edit region.png shows (default: the first)")
    parser.add_argument("--unchanged", type=float, default=0.0, help="also re-make with sampling.unchanged: G")
    args = parser.parse_args(argv)
    nones = sorted(f.parent.parent for f in args.cases.glob("*--preserve_none/eval/metrics.json"))
    if not nones:
        raise SystemExit(f"{args.cases}: no evaluated preserve_none edit (run quality.py with that variant)")
    from eym.errors import EYMError

    for suffix, (sampled, _, uses_unchanged) in REMADE.items():
        for edit in sorted(f.parent.parent for f in args.cases.glob(f"*--{sampled}/eval/metrics.json")):
            if uses_unchanged and not args.unchanged:
                continue
            try:
                print(f"re-made: {remake(edit, suffix, args.unchanged).name}", flush=True)
            except EYMError as exc:  # e.g. a source folder of the protocol removed since: the others still count
                print(f"skipped {edit.name}: {exc}", flush=True)
    text = table(args.cases, args.unchanged)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        from eym.media import write_image

        edit = args.figure_edit or nones[0].name.rsplit("--", 1)[0]
        write_image(args.out.with_name("region.png"), figure(args.cases, edit))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
