"""One source, many motions: what tuning a source once saves, and what the source/edit split costs DVC.

    .venv/bin/python benchmarks/sources.py --references 4 --steps 20 --sources 20

1. Wall time of one source edited with ``--references`` references, against as many independent
   cases (each with its own source: same clip and compute, a distinct tuning prompt), both through
   the batch flow with one worker; tiny models, 128x128, ``--steps`` tuning steps per stage.
2. No-op ``dvc repro --all-pipelines`` over ``--sources`` x ``--references`` up-to-date edits
   arranged as sources with their edits, against the same number of edits with a source each
   (folders copied from computed ones: DVC's bookkeeping depends on the pipelines, not on their work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="tuning steps per stage")
    parser.add_argument("--sources", type=int, default=20, help="sources of the no-op measurement")
    args = parser.parse_args()
    os.environ.update(DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    from flows.cases import create_cases
    from flows.pipeline import edit_batch, with_runner
    from puppet_world.motions import MOTIONS
    from sandbox.workspace import TINY_CASE_PARAMS, copy_edits, make_workspace, write_manifest
    from sandbox.workspace import timed_dvc as dvc
    from stages.common import read_case

    params = {
        **TINY_CASE_PARAMS,
        "stage1": {"steps": args.steps},
        "stage2": {"steps": args.steps},
        "inversion": {"steps": 10},
        "sampling": {"steps": 10},
    }
    names = sorted(MOTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        make_workspace(root, [(names[0], names[1 + i % 6]) for i in range(args.references)], seed=300)
        cases_root = root / "data" / "cases"
        shared = write_manifest(root, "shared", {f"s{k}": ("p0", f"p{k}") for k in range(args.references)}, params)
        apart = write_manifest(root, "apart", {f"a{k}": ("p0", f"p{k}") for k in range(args.references)}, params)
        rows = yaml.safe_load(apart.read_text())
        for k, row in enumerate(rows["cases"]):
            row["source_prompt"] = f"a person, tuned apart {k}"  # the same clip, tuned once per case
        apart.write_text(yaml.safe_dump(rows))

        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            timings = {}
            for name, manifest in (("one source", shared), ("independent", apart)):
                start = time.perf_counter()
                out = with_runner(edit_batch, workers=1)(str(manifest), str(cases_root))
                timings[name] = time.perf_counter() - start
                assert all(r["status"] == "ok" for r in out), out
        print(
            f"{args.references} references, {args.steps}+{args.steps} tuning steps: one source "
            f"{timings['one source']:.0f} s, {args.references} independent cases {timings['independent']:.0f} s "
            f"(ratio {timings['independent'] / timings['one source']:.2f})"
        )

        cases = create_cases(shared, cases_root, root)
        source, prepared = read_case(cases[0]).source_dir, read_case(cases[0]).prepared_dir
        for folder in (cases_root, cases_root.parent / "sources"):  # keep only the shared source's folders
            for path in folder.iterdir():
                if path not in cases and path not in (source, prepared):
                    shutil.rmtree(path)
        total = args.sources * args.references
        copy_edits(source, cases, "g", args.sources - 1)
        grouped = dvc(root, "repro", "--all-pipelines")
        grouped = dvc(root, "repro", "--all-pipelines")
        for path in list(cases_root.iterdir()) + list((cases_root.parent / "sources").iterdir()):
            shutil.rmtree(path)
        (single,) = create_cases(write_manifest(root, "single", {"x": "p0"}, params), cases_root, root)
        dvc(root, "repro", "data/cases/x/dvc.yaml")
        source = read_case(single).source_dir
        copy_edits(source, [single], "i", total - 1)
        dvc(root, "repro", "--all-pipelines")
        separate = dvc(root, "repro", "--all-pipelines")
        print(
            f"no-op dvc repro --all-pipelines, {total} edits: {args.sources} sources x {args.references} references "
            f"{grouped:.1f} s; {total} sources x 1 {separate:.1f} s"
        )


if __name__ == "__main__":
    main()
