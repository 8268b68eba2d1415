"""The puppet benchmark: N generated cases and the manifest that lists them (``eym-puppet``)."""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from eym.manifest import Case, write_manifest

from .body import BODY_TYPES
from .cases import GT_EDIT_VIDEO, REFERENCE_VIDEO, SOURCE_IMAGE, SOURCE_VIDEO, VIEWS, make_case, make_source_cases
from .motions import MOTIONS
from .seeds import check_seed


def id_prefix(out_dir: Path) -> str:
    """The benchmark folder's name as an id prefix: two benchmarks in one workspace (whose case folders
    share ``data/cases``) have different case ids as long as their folders have different names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(out_dir).resolve().name).strip("-.")[:60] or "puppet"


def make_benchmark(
    out_dir: str | Path,
    num_cases: int = 80,
    seed: int = 0,
    size: int = 512,
    num_frames: int = 24,
    fps: float = 12.0,
    image_source_every: int = 8,
    workers: int = 1,
    progress: bool = True,
    references_per_source: int = 1,
    prefix: str | None = None,
) -> Path:
    """Generate ``num_cases`` cases and ``out_dir/manifest.yaml``: ``num_cases / references_per_source``
    sources, each edited with that many references of other motions.

    Source i uses seed ``seed * 100003 + i``; every ``image_source_every``-th source (0 = none) is used
    as a single image (its first frame). Motions cycle so that every pair is covered. With one
    reference per source, case i is folder ``puppet-<i>`` with id ``<prefix>-<i>``; with K, case
    ``<prefix>-<i>-r<k>`` is the source in ``puppet-<i>`` and its reference k in ``puppet-<i>/r<k>``.
    ``prefix`` defaults to the name of ``out_dir`` (``id_prefix``).
    """
    out = Path(out_dir)
    prefix = prefix or id_prefix(out)
    per_source = max(1, int(references_per_source))
    if num_cases % per_source:
        raise ValueError(f"{num_cases} cases do not split into sources of {per_source} references")
    sources = num_cases // per_source
    for first_or_last in (seed * 100003, seed * 100003 + sources - 1):
        check_seed(first_or_last, "evaluation")
    names = sorted(MOTIONS)
    jobs = []
    for i in range(sources):
        m1 = names[i % len(names)]
        others = [n for n in names if n != m1]
        start = i + (i // len(names))
        motions = [others[(start + k) % len(others)] for k in range(per_source)]
        jobs.append((out / f"puppet-{i:03d}", seed * 100003 + i, size, num_frames, fps, m1, motions))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        infos = list(tqdm(pool.map(_make, jobs), total=len(jobs), desc="puppet sources", disable=not progress))
    cases = []
    for i, ((source_dir, *_), source_infos) in enumerate(zip(jobs, infos)):
        image = image_source_every > 0 and i % image_source_every == image_source_every - 1
        for k, info in enumerate(source_infos):
            folder = source_dir if per_source == 1 else source_dir / f"r{k}"
            cases.append(
                Case(
                    id=f"{prefix}-{i:03d}" + ("" if per_source == 1 else f"-r{k}"),
                    source=source_dir / (SOURCE_IMAGE if image else SOURCE_VIDEO),
                    reference=folder / REFERENCE_VIDEO,
                    prompt=info["prompt"],
                    source_prompt=info["source_prompt"],
                    ground_truth=folder / GT_EDIT_VIDEO,
                )
            )
    manifest = out / "manifest.yaml"
    write_manifest(manifest, cases)
    return manifest


def _make(job):
    import numpy as np

    source_dir, seed, size, num_frames, fps, m1, motions = job
    rng = np.random.default_rng(seed)
    return make_source_cases(source_dir, seed, rng, m1, [(m, "adult") for m in motions], size, num_frames, fps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="eym-puppet", description="Generate synthetic puppet cases with ground truth."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("case", help="one case into a folder")
    one.add_argument("--out", required=True, type=Path, help="case folder to write")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--source-motion", choices=sorted(MOTIONS))
    one.add_argument("--reference-motion", choices=sorted(MOTIONS))
    one.add_argument("--reference-body", choices=sorted(BODY_TYPES), default="adult", help="the reference's body type")
    one.add_argument(
        "--source-view", choices=sorted(VIEWS), default="full", help="a partial view of the source (and ground truth)"
    )
    many = sub.add_parser("benchmark", help="N cases and their manifest.yaml")
    many.add_argument("--out", required=True, type=Path, help="folder for the cases and manifest.yaml")
    many.add_argument("--cases", type=int, default=80)
    many.add_argument("--seed", type=int, default=0)
    many.add_argument(
        "--image-source-every", type=int, default=8, help="every Nth case uses a single image as its source (0: none)"
    )
    many.add_argument("--workers", type=int, default=2)
    many.add_argument(
        "--references-per-source",
        type=int,
        default=1,
        help="edit every source with this many references (cases / K sources; the source is tuned once)",
    )
    many.add_argument("--id-prefix", help="case ids <prefix>-000, ... (default: the --out folder's name)")
    for p in (one, many):
        p.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
        p.add_argument("--frames", type=int, default=24)
        p.add_argument("--fps", type=float, default=12.0)
    args = parser.parse_args(argv)
    if args.size % 8:
        parser.error("--size must be a multiple of 8")
    if args.command == "case":
        info = make_case(
            args.out,
            args.seed,
            args.size,
            args.frames,
            args.fps,
            args.source_motion,
            args.reference_motion,
            args.reference_body,
            args.source_view,
        )
        print(f"wrote {args.out} ({info['source']['motion']['name']} -> {info['reference']['motion']['name']})")
    else:
        manifest = make_benchmark(
            args.out,
            args.cases,
            args.seed,
            args.size,
            args.frames,
            args.fps,
            args.image_source_every,
            args.workers,
            references_per_source=args.references_per_source,
            prefix=args.id_prefix,
        )
        print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
