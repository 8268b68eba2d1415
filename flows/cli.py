"""eym-edit: edit a video from the command line, run a batch, or serve the flows as deployments.

    eym-edit preview --source me.mp4 --reference dance.mp4                          # check the retargeting
    eym-edit plan --params configs/sd15.yaml --set frames.count=24                 # memory and time, predicted
    eym-edit run --source me.mp4 --reference dance.mp4 --prompt "a man dancing"   # one edit
    eym-edit batch data/benchmark/manifest.yaml --report reports/benchmark           # many
    eym-edit case data/cases/puppet-000                                              # rerun a case
    eym-edit serve                                                                   # deployments
    eym-edit ui                                                                      # the web app

Run it inside the project repository (the DVC workspace). Each edit becomes a case folder under
``data/cases/<id>`` with its own ``dvc.yaml``; the same Prefect flow then runs its nine stages, and
DVC skips every stage whose inputs did not change.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .new_cases import create_cases_from
from .overrides import absolute_paths, override_layers, overrides_from
from .plan import add_budget_option, add_plan_parser, parse_budget
from .preview import cmd_preview
from .ui import add_ui_parser

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

OUTPUTS = (
    ("edited video", "sample/edited.mp4"),
    ("side by side", "sample/comparison.mp4"),
    ("metrics", "eval/metrics.json"),
    ("report", "eval/report.html"),
)


KEY_METRICS = (("psnr", "PSNR {:.2f} dB"), ("psnr_person", "person {:.2f} dB"), ("pose_pck", "pose PCK {:.3f}"),
               ("pose_pck_moved", "moved joints {:.3f}"))  # fmt: skip


def print_outputs(case_dir: Path) -> None:
    import json

    print(f"\ncase folder: {case_dir}")
    for label, rel in OUTPUTS:
        path = case_dir / rel
        print(f"  {label:<13} {path}{'' if path.exists() else '  (missing)'}")
    metrics = case_dir / "eval" / "metrics.json"
    found = json.loads(metrics.read_text()) if metrics.is_file() else {}
    shown = [text.format(found[key]) for key, text in KEY_METRICS if isinstance(found.get(key), (int, float))]
    if shown:
        print(f"  {'measured':<13} {', '.join(shown)}")


def fail(exc) -> int:
    print(exc if str(exc).startswith("eym-edit") else f"eym-edit: {exc}", file=sys.stderr)
    return 2


def cmd_run(args) -> int:
    from eym.errors import EYMError

    try:
        case_dirs, note, _ = create_cases_from(args)
    except EYMError as exc:
        return fail(exc)
    if note:
        print(f"eym-edit: note: {note}", file=sys.stderr)
    return _run_cases(case_dirs, args)


def _run_cases(case_dirs: list[Path], args) -> int:
    from eym.errors import EYMError
    from flows.console import showing
    from flows.locks import case_locks
    from flows.pipeline import edit_case, edit_cases
    from flows.runtime import FlowAbandoned, prefect_api, run_supervised

    def flow():
        with prefect_api():
            if len(case_dirs) == 1:
                state = edit_case(str(case_dirs[0]), retries=args.retries, gpu_slots=args.gpus, return_state=True)
                return [state.result(raise_on_failure=False)]  # the row, also of a failed case
            return edit_cases([str(c) for c in case_dirs], retries=args.retries, gpu_slots=args.gpus)

    try:
        with case_locks(case_dirs), showing(args.verbose):
            rows = run_supervised(flow)
    except FlowAbandoned as exc:
        print(f"eym-edit: {exc}", file=sys.stderr)
        return exc.exit_code
    except EYMError as exc:
        return fail(exc)
    failed = [r for r in rows if not isinstance(r, dict) or r["status"] != "ok"]
    if interrupted_exit():
        reasons = [r["reason"] if isinstance(r, dict) else str(r) for r in failed]
        for row, reason in zip(failed[1:], reasons[1:]):  # one line each, the first one last
            print(f"eym-edit: {row['case'] if isinstance(row, dict) else ''}: {reason}", file=sys.stderr)
        first = f"{reasons[0]}; " if reasons else ""
        hint = "" if "the same command resumes" in first else ": run the same command to resume"
        print(f"eym-edit: interrupted: {first}nothing is lost{hint}", file=sys.stderr)
        return interrupted_exit()
    for row in {row["source"] if isinstance(row, dict) else id(row): row for row in rows}.values():
        report_source(row)  # once per source
    for row, case_dir in zip(rows, case_dirs):
        if not isinstance(row, dict) or row["status"] != "ok":
            reason = f"failed at {row['failed_stage']}: {row['reason']}" if isinstance(row, dict) else str(row)
            print(f"\neym-edit: case {case_dir.name} {reason}", file=sys.stderr)
        print_outputs(case_dir)
    return 1 if failed else 0


def report_source(row) -> None:
    """Say whether the edit reused its tuned source or tuned it now."""
    if not isinstance(row, dict) or not row.get("source"):
        return
    tuned = [s for s in ("stage1", "stage2", "invert") if f"source {s}" in row["ran"]]
    if row["status"] == "ok" and not tuned:
        print(f"source {row['source']}: reused as tuned and inverted before (stage 1, stage 2, inversion up to date)")
    elif tuned:
        print(f"source {row['source']}: {', '.join(tuned)} ran for this edit")


def interrupted_exit() -> int:
    """128 + the signal that interrupted this eym-edit (130 for Ctrl-C), or 0."""
    from flows.runtime import SUPERVISOR

    return 128 + int(SUPERVISOR.signal) if SUPERVISOR.signal is not None else 0


def cmd_case(args) -> int:
    from eym.errors import EYMError
    from eym.parameters import read_layer
    from flows.preflight import preflight
    from flows.stage_task import repo_root
    from stages.common import default_params_files

    case_dir = Path(args.case_dir).resolve()
    try:
        repo_root(case_dir)
        if not (case_dir / "dvc.yaml").is_file():
            raise EYMError(f"{case_dir}: not a case folder (no dvc.yaml); create cases with `eym-edit run` or a batch")
        preflight([(str(f), read_layer(f)) for f in default_params_files(case_dir)])
    except EYMError as exc:
        return fail(exc)
    return _run_cases([case_dir], args)


def cmd_batch(args) -> int:
    from eym.errors import EYMError
    from flows.cases import create_cases
    from flows.console import showing
    from flows.locks import case_locks
    from flows.pipeline import edit_batch, repo_root, with_runner
    from flows.preflight import check_manifest
    from flows.runtime import FlowAbandoned, prefect_api, run_supervised

    try:  # bad rows, parameters and weights and a missing workspace are reported before any flow starts
        workspace = repo_root(Path(args.cases_root).resolve().parent)
        layers = [(name, absolute_paths(values)) for name, values in override_layers(args)]
        overrides = absolute_paths(overrides_from(args))
        check_manifest(args.manifest, workspace / "params.yaml", layers, parse_budget(args.memory_budget))
        # the folders exist before they are locked (the locks read each case's source folders)
        case_dirs = create_cases(args.manifest, Path(args.cases_root).resolve(), workspace, overrides)
    except EYMError as exc:
        return fail(exc)

    flow_fn = with_runner(edit_batch, args.workers, args.dask_address)

    def flow():
        with prefect_api():
            return flow_fn(
                str(Path(args.manifest).resolve()),
                str(Path(args.cases_root).resolve()),
                str(Path(args.report).resolve()) if args.report else None,
                args.retries,
                args.gpus,
                gpu_resource=bool(args.dask_address),
                overrides=overrides,
            )

    try:
        with case_locks(case_dirs), showing(args.verbose):
            rows = run_supervised(flow)
    except FlowAbandoned as exc:
        print(f"eym-edit: {exc}", file=sys.stderr)
        return exc.exit_code
    except EYMError as exc:
        return fail(exc)
    failed = [r for r in rows if r["status"] != "ok"]
    if interrupted_exit():
        for r in failed:
            print(f"eym-edit: {r['case']}: {r['reason']}", file=sys.stderr)
        print("eym-edit: interrupted: nothing is lost: run the same command to resume", file=sys.stderr)
        return interrupted_exit()
    print(f"\n{len(rows) - len(failed)} of {len(rows)} cases finished")
    for r in failed:
        print(f"  {r['case']}: failed at {r['failed_stage']}: {r['reason']}")
    if args.report:
        print(f"batch report: {Path(args.report).resolve() / 'report.html'}")
    return 1 if failed else 0


def cmd_serve(args) -> int:
    from flows.serve import serve_deployments

    serve_deployments(args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eym-edit",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Parameters: every key of params.yaml can be overridden with --set.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="edit one video: create its case and run the pipeline")
    preview = sub.add_parser(
        "preview", help="retarget only (frames, segmentation, pose, offset): the preview image and the verdict"
    )
    for p in (run, preview):
        p.add_argument("--source", required=True, help="source video (or a single image) of the person to keep")
        p.add_argument(
            "--reference",
            required=True,
            action="append",
            help="reference video, or an OpenPose-18 keypoints .parquet; repeat it to edit the source with several "
            "motions (the source is tuned once)",
        )
        p.add_argument("--prompt", default="", help="text describing the edited video (sampling uses it)")
        p.add_argument("--source-prompt", help="text describing the source video (tuning uses it; default: --prompt)")
        p.add_argument("--id", help="case id (default: <source>-to-<reference>)")
        p.add_argument("--pose-backend", choices=["mediapipe", "openpose", "dwpose"], help="default: mediapipe")
        p.add_argument("--annotator", help="OpenPose annotator weights: hub id or folder")
        p.add_argument("--segmentation-backend", choices=["mediapipe", "rembg"], help="default: mediapipe")
        p.add_argument("--manifest", type=Path, help="manifest to add the case to (default: data/manifest.yaml)")
        p.add_argument("--cases-root", default="data/cases", help="where case folders go (default data/cases)")
        p.add_argument("--workspace", type=Path, default=Path.cwd(), help="the DVC workspace (default: here)")
    run.add_argument(
        "--ground-truth", action="append", help="expected result video, to compute PSNR/SSIM/LPIPS (one per reference)"
    )
    run.add_argument("--base-model", help="Stable Diffusion 1.5: hub id or diffusers folder (default in params.yaml)")
    run.add_argument("--controlnet", help="ControlNet-OpenPose: hub id or folder")
    run.set_defaults(func=cmd_run)
    preview.set_defaults(func=cmd_preview)

    case = sub.add_parser("case", help="run (or bring up to date) an existing case folder")
    case.add_argument("case_dir", type=Path)
    case.set_defaults(func=cmd_case)

    batch = sub.add_parser("batch", help="run every case of a manifest; failed cases do not stop the others")
    batch.add_argument("manifest", type=Path)
    batch.add_argument("--report", type=Path, help="write the batch table and report into this folder")
    batch.add_argument("--workers", type=int, default=2, help="cases processed at once (thread pool)")
    batch.add_argument(
        "--dask-address",
        help="run on a Dask cluster (tcp://host:8786) instead of threads; "
        "GPU stages go to workers started with --resources GPU=1",
    )
    batch.set_defaults(func=cmd_batch)

    serve = sub.add_parser("serve", help="serve the flows as deployments for `prefect deployment run`")
    serve.add_argument("--workers", type=int, default=2)
    serve.set_defaults(func=cmd_serve)

    for p in (run, preview, batch):
        parameter_options(p, p is batch)
    for p in (run, preview, batch):
        add_budget_option(p)
    add_plan_parser(sub, parameter_options)
    add_ui_parser(sub, parameter_options)
    for p in (run, case, batch):
        p.add_argument("-v", "--verbose", action="store_true", help="every stage's log lines, as Prefect logs them")
        p.add_argument("--retries", type=int, default=0, help="retries of a failed stage (default 0)")
        p.add_argument("--gpus", type=int, default=1, help="GPU stages that may run at once (default 1)")
    batch.add_argument("--cases-root", default="data/cases", help="where case folders go (default data/cases)")
    return parser


def parameter_options(parser, batch: bool = False) -> None:
    """--params FILE and --set KEY=VALUE."""
    parser.add_argument(
        "--params",
        action="append",
        type=Path,
        metavar="FILE",
        help="YAML file of parameter overrides (paths starting ./ or ../ are relative to it)"
        + ("; on top of every manifest row's own" if batch else ""),
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a parameter, e.g. --set stage1.steps=200 --set sampling.guidance_scale=7.5",
    )


def main(argv=None) -> int:
    from flows.runtime import SUPERVISOR

    args = build_parser().parse_args(argv)
    code = args.func(args)
    if SUPERVISOR.abandoned:  # a flow still waits on its Prefect API: end now, without Prefect's exit hooks
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
