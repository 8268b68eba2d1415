"""Orchestration overhead: no-op ``dvc repro`` over 80 cases, the per-stage cost of the Prefect task
(a DVC call) next to the stages' own work, and batch throughput on 1 vs 2 workers.

    .venv/bin/python benchmarks/orchestration.py --cases 80 --fresh 4

Builds a throwaway DVC workspace with the tiny models and 128x128 puppet clips (2 tuning steps).
One case (a source and an edit) is computed for real and copied to ``--cases`` up-to-date cases
(DVC's bookkeeping cost depends on the number of pipelines, not on what they computed); ``--fresh`` new cases with
distinct inputs are then run through the batch flow with 1 and with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=80)
    parser.add_argument("--fresh", type=int, default=4, help="new cases per batch-throughput run")
    args = parser.parse_args()
    os.environ.update(DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    from flows.cases import create_cases
    from flows.registry import EDIT_STAGE_NAMES, PREPARATION_STAGES, SOURCE_STAGE_NAMES, STAGE_NAMES
    from puppet_world.motions import MOTIONS
    from sandbox.workspace import copy_edits, make_workspace, write_manifest
    from sandbox.workspace import timed_dvc as dvc
    from stages.common import read_case

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        names = sorted(MOTIONS)
        make_workspace(root, [(names[i % 7], names[(i + 3) % 7]) for i in range(1 + 2 * args.fresh)], seed=100)
        cases_root = root / "data" / "cases"
        (first,) = create_cases(write_manifest(root, "one", {"c000": "p0"}), cases_root, root)
        source, prepared = read_case(first).source_dir, read_case(first).prepared_dir
        print("one case, stage by stage (dvc repro --single-item; process start-up included):")
        work = {}
        preparation = [s.name for s in PREPARATION_STAGES]
        for folder, stages in ((prepared, preparation), (source, SOURCE_STAGE_NAMES), (first, EDIT_STAGE_NAMES)):
            rel = folder.relative_to(root)
            for stage in stages:
                name = f"prepared {stage}" if folder == prepared else stage  # the source's: from the run cache
                work[name] = dvc(root, "repro", "--single-item", f"{rel}/dvc.yaml:{stage}")
                print(f"  {name}: {work[name]:.1f} s")
        print(f"  total {sum(work.values()):.1f} s")

        copy_edits(source, [first], "c", args.cases - 1)
        print(f"\n{args.cases} up-to-date cases (a source and an edit each):")
        for attempt in ("first", "second"):
            print(f"  no-op dvc repro --all-pipelines ({attempt}): {dvc(root, 'repro', '--all-pipelines'):.1f} s")
        print(f"  no-op dvc repro of one case: {dvc(root, 'repro', 'data/cases/c000/dvc.yaml'):.1f} s")
        single = dvc(root, "--wait-for-lock", "repro", "--single-item", "data/cases/c000/dvc.yaml:reference")
        print(f"  no-op dvc repro --single-item of one stage: {single:.2f} s")

        from prefect.testing.utilities import prefect_test_harness

        from flows.pipeline import edit_batch, edit_case, with_runner

        with prefect_test_harness(server_startup_timeout=120):
            start = time.perf_counter()
            row = edit_case(str(first))
            total = time.perf_counter() - start
            print(
                f"\nPrefect flow on an up-to-date case ({args.cases} cases in the workspace): {total:.1f} s, "
                f"{row['seconds'] / len(STAGE_NAMES):.2f} s per stage task (the DVC check)"
            )
            for workers, offset in ((1, 1), (2, 1 + args.fresh)) if args.fresh else ():  # --fresh 0: no throughput
                ids = {f"w{workers}-{k}": f"p{offset + k}" for k in range(args.fresh)}
                path = write_manifest(root, f"w{workers}", ids)
                start = time.perf_counter()
                rows = with_runner(edit_batch, workers=workers)(str(path), str(cases_root))
                wall = time.perf_counter() - start
                ok = sum(r["status"] == "ok" for r in rows)
                print(
                    f"batch of {args.fresh} fresh cases, {workers} worker(s): {wall:.0f} s "
                    f"({60 * ok / wall:.2f} cases/min, {ok} ok)"
                )
        print(f"\nstage work for comparison (one case, sum of stages above): {sum(work.values()):.1f} s")


if __name__ == "__main__":
    main()
