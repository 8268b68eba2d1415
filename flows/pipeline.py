"""Prefect flows: one case, and a batch of cases from a manifest.

Each pipeline stage is one Prefect task that asks DVC to reproduce that stage
(``dvc --wait-for-lock repro --single-item <case>/dvc.yaml:<stage>``). DVC alone decides whether
the stage is stale and runs it or skips it; Prefect adds no cache of its own (its input-hash
caching cannot see changed file contents), only visibility (a task run per stage and case, with
the stage's log lines), retries, concurrency and a summary. GPU stages (tuning, inversion,
sampling) take one slot of ``gpu_slots`` and carry the ``gpu`` tag, so a Prefect tag concurrency
limit or Dask worker resources can spread them over GPUs; CPU stages of other cases run alongside.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from prefect import allow_failure, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.states import Failed

from eym.parameters import read_layer

from .cases import create_cases, retargeting_key
from .registry import (
    EDIT_STAGE_NAMES,
    EDIT_STAGES,
    GPU_STAGES,
    PREPARATION_STAGES,
    RETARGETING_STAGES,
    RUN_ORDER,
    SOURCE_STAGE_NAMES,
    SOURCE_STAGES,
    upstream,
)
from .stage_task import StageOutcome, repo_root, run_stage, set_gpu_slots


class Submitter:
    """Submits stage tasks: GPU stages tagged ``gpu`` (and, on Dask, annotated with ``GPU=1``)."""

    def __init__(self, retries: int, gpu_resource: bool):
        self.retries, self.gpu_resource = retries, gpu_resource

    def __call__(self, folder: Path, stage: str, wait_for=None):
        import contextlib

        gpu = stage in GPU_STAGES
        submit = run_stage.with_options(retries=self.retries, tags=["gpu"] if gpu else ["cpu"]).submit
        annotate = contextlib.nullcontext()
        if gpu and self.gpu_resource:
            import dask

            annotate = dask.annotate(resources={"GPU": 1})
        with annotate:
            return submit(str(folder), folder.name, stage, wait_for=[f for f in wait_for or [] if f is not None])


def _group_by_source(case_dirs: list[Path]) -> dict[Path, list[Path]]:
    from stages.common import source_dir

    groups: dict[Path, list[Path]] = {}
    for case in case_dirs:
        groups.setdefault(source_dir(case), []).append(case)
    return groups


TUNING_STAGES = SOURCE_STAGES[len(PREPARATION_STAGES) :]  # a source's tuning and inversion
MAKING_STAGES = EDIT_STAGES[len(RETARGETING_STAGES) :]  # an edit's sampling and evaluation


def _submit_stages(submit: Submitter, stages, folder: Path, done: dict, first_after=()) -> dict:
    """Submit ``stages`` of ``folder`` in order, each after the stages whose outputs it reads (the
    registry's ``upstream``; ``done`` holds the futures of the folders it reads: "own", "source",
    "prepared"); the first also after ``first_after``. Returns the futures by stage name."""
    own = done.setdefault("own", {})
    for k, spec in enumerate(stages):
        waits = [done[where][name] for where, name in upstream(spec)] + list(first_after if k == 0 else ())
        own[spec.name] = submit(folder, spec.name, waits)
    return own


def _submit_preparation(submit: Submitter, source: Path, edits: list[Path], shared: dict):
    """A source's preparation, and each edit's reference and retargeting (which read the prepared source).

    Work that DVC's run cache can share runs once, first: the prepared source before any source that
    shares it (each of its stages before the same stage of the source), an edit's retargeting after an
    identical one of another edit (another variant, say). They run even if those failed, so that a
    failure is their own, with its reason."""
    from stages.common import read_case

    prepared_dir, submitted = read_case(edits[0]).prepared_dir, shared.setdefault("prepared", {})
    if prepared_dir not in submitted:
        submitted[prepared_dir] = _submit_stages(submit, PREPARATION_STAGES, prepared_dir, {})
    prepared = submitted[prepared_dir]
    futures: dict = {}
    for spec in PREPARATION_STAGES:
        _submit_stages(submit, (spec,), source, {"own": futures}, [allow_failure(prepared[spec.name])])
    retargeted, edit_futures = shared.setdefault("retargeted", {}), {}
    for edit in edits:
        key = retargeting_key(edit)
        same = [allow_failure(retargeted[key])] if key in retargeted else []
        done = {"prepared": prepared}
        edit_futures[edit] = _submit_stages(submit, RETARGETING_STAGES, edit, done, same)
        retargeted.setdefault(key, edit_futures[edit][RETARGETING_STAGES[-1].name])
    return futures, edit_futures


def _submit_tuning(submit: Submitter, source: Path, futures: dict, edit_futures: dict) -> None:
    """Tuning, inversion and sampling, once the source's edits are retargeted; no tuning (and no
    GPU time) when no edit passed its retargeting check."""
    good = [e for e, f in edit_futures.items() if f[RETARGETING_STAGES[-1].name].state.is_completed()]
    if not good:
        return
    _submit_stages(submit, TUNING_STAGES, source, {"own": futures})
    for edit in good:
        _submit_stages(submit, MAKING_STAGES, edit, {"own": edit_futures[edit], "source": futures})


def run_sources(case_dirs: list[Path], retries: int, gpu_resource: bool, progress_key: str | None = None) -> list[dict]:
    """Every edit's source prepared, tuned and inverted once, and every edit made from it; sources run
    concurrently (the task runner's workers), a failed source fails its own edits only. With
    ``progress_key``, a Prefect progress artifact follows the stages done. Returns a row per edit."""
    submit = Submitter(retries, gpu_resource)
    groups = _group_by_source(case_dirs)
    shared: dict = {}
    submitted = {source: _submit_preparation(submit, source, edits, shared) for source, edits in groups.items()}
    total = sum(len(SOURCE_STAGE_NAMES) + len(edits) * len(EDIT_STAGE_NAMES) for edits in groups.values())
    progress = create_progress_artifact(0.0, key=progress_key, description="stages done") if progress_key else None
    waiting, done = set(groups), -1
    while True:
        for source in sorted(waiting):  # a source's tuning starts as soon as its edits are retargeted
            futures, edit_futures = submitted[source]
            if all(_finished(f[RETARGETING_STAGES[-1].name]) for f in edit_futures.values()):
                _submit_tuning(submit, source, futures, edit_futures)
                waiting.discard(source)
        everything = [f for fs, efs in submitted.values() for f in [*fs.values(), *_flatten(efs)]]
        finished = sum(_finished(f) for f in everything)
        if progress is not None and finished != done:
            update_progress_artifact(progress, 100.0 * finished / total)
            done = finished
        if not waiting and finished == len(everything):
            break
        time.sleep(0.2)
    source_of = {edit: source for source, edits in groups.items() for edit in edits}
    return [_case_summary(edit, source_of[edit], *_futures_of(submitted[source_of[edit]], edit)) for edit in case_dirs]


def _futures_of(submitted: tuple, edit: Path) -> tuple[dict, dict]:
    futures, edit_futures = submitted
    return futures, edit_futures[edit]


def _finished(future) -> bool:
    """Whether a task's run is over (ended in any state, including an upstream's failure)."""
    if not future.wrapped_future.done():
        return False
    future.wait()  # done already: fetches and records its final state (wait(0) could miss it on Dask)
    return True


def _flatten(edit_futures: dict) -> list:
    return [f for stages in edit_futures.values() for f in stages.values()]


def _outcome(row: dict, where: str, name: str, future) -> bool:
    """Add a stage's outcome to a summary row; False (and the reason) when it did not complete."""
    if future is None:
        row.update(status="failed", failed_stage=where + name, reason=f"{name} did not run")
        return False
    state = future.state
    if state.is_completed():
        outcome: StageOutcome = future.result()
        row["seconds"] += outcome.seconds
        row["stages_run" if outcome.status == "ran" else "stages_cached"] += 1
        row["workers"][where + name] = outcome.worker
        if outcome.status == "ran":
            row["ran"].append(where + name)
        return True
    reason = state.message if state.is_failed() and state.message else f"{name} did not run ({state.name})"
    row.update(status="failed", failed_stage=where + name, reason=reason)
    return False


def _case_summary(case_dir: Path, source: Path, source_futures: dict, edit_futures: dict) -> dict:
    """Status of an edit from its source's and its own stage futures: the first failed stage (a
    failed source stage fails the edit with the source's reason) and its reason, or its metrics."""
    from stages.common import read_case

    row = {
        "case": case_dir.name,
        "case_dir": str(case_dir),
        "source": source.name,
        "variant": read_case(case_dir).variant,
        "status": "ok",
        "failed_stage": None,
        "reason": None,
        "seconds": 0.0,
        "stages_run": 0,
        "stages_cached": 0,
        "ran": [],
        "workers": {},
    }
    for spec in RUN_ORDER:
        where, futures = ("source ", source_futures) if spec.side == "source" else ("", edit_futures)
        if not _outcome(row, where, spec.name, futures.get(spec.name)):
            break
    metrics = case_dir / "eval" / "metrics.json"
    if row["status"] == "ok" and metrics.is_file():
        row.update({k: v for k, v in json.loads(metrics.read_text()).items() if isinstance(v, (int, float))})
    row["seconds"] = round(row["seconds"], 1)
    return row


def _artifact_key(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:60] or "case"


@flow(name="edit-case", log_prints=True)
def edit_case(case_dir: str, retries: int = 0, gpu_slots: int = 1) -> dict:
    """Run (or bring up to date) one edit folder and its source; returns the edit's summary row."""
    from stages.common import default_params_files

    from .preflight import preflight

    set_gpu_slots(gpu_slots)
    case = Path(case_dir).resolve()
    preflight([(str(f), read_layer(f)) for f in default_params_files(case)])
    (row,) = run_sources([case], retries, gpu_resource=False, progress_key=f"{_artifact_key(case.name)}-progress")
    create_markdown_artifact(
        _summary_markdown([row]), key=f"{_artifact_key(case.name)}-summary", description=f"edit of {case.name}"
    )
    if row["status"] != "ok":
        return Failed(message=f"case {case.name} failed at {row['failed_stage']}: {row['reason']}", data=row)
    return row


@flow(name="edit-cases", log_prints=True)
def edit_cases(case_dirs: list[str], retries: int = 0, gpu_slots: int = 1) -> list[dict]:
    """Run (or bring up to date) several edit folders (e.g. one source with several references)."""
    set_gpu_slots(gpu_slots)
    rows = run_sources([Path(c).resolve() for c in case_dirs], retries, gpu_resource=False)
    create_markdown_artifact(_summary_markdown(rows), key="edits-summary", description="edits")
    return rows


@flow(name="edit-batch", log_prints=True)
def edit_batch(
    manifest: str,
    cases_root: str = "data/cases",
    report_dir: str | None = None,
    retries: int = 0,
    gpu_slots: int = 1,
    gpu_resource: bool = False,
    overrides: dict | None = None,
) -> list[dict]:
    """Create the manifest's source and edit folders and run them; a failed case does not stop the others.
    ``overrides``: parameters applied on top of every row's own (the command line's --params and --set).

    Each source is prepared, tuned and inverted once, its edits after it; sources run concurrently
    (the task runner's workers). Ends with a summary table (Prefect artifact) and, when
    ``report_dir`` is given, the batch report (metrics table as Parquet, markdown summary, HTML page).
    """
    from .preflight import check_manifest

    logger = get_run_logger()
    set_gpu_slots(gpu_slots)
    workspace = repo_root(Path(cases_root).resolve().parent)
    check_manifest(Path(manifest), workspace / "params.yaml", [("the batch's overrides", overrides or {})])
    cases = create_cases(manifest, Path(cases_root).resolve(), workspace, overrides)
    sources = len(_group_by_source(cases))
    logger.info("batch of %d edits of %d sources from %s", len(cases), sources, manifest)
    rows = run_sources(cases, retries, gpu_resource)
    create_markdown_artifact(_summary_markdown(rows), key="batch-summary", description=f"batch {manifest}")
    failed = [r for r in rows if r["status"] != "ok"]
    logger.info("batch done: %d ok, %d failed", len(rows) - len(failed), len(failed))
    if report_dir:
        from stages.aggregate import aggregate

        aggregate(rows, Path(report_dir), params_for(cases[0]) if cases else {})
    return rows


def params_for(case_dir: Path) -> dict:
    """The merged parameters a case's stages see (repository params.yaml + the case's overrides)."""
    from stages.common import default_params_files, load_params

    return load_params(default_params_files(case_dir))


def with_runner(flow_fn, workers: int | None = None, dask_address: str | None = None):
    """The flow with a thread pool of ``workers`` threads, or a Dask cluster's task runner."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return flow_fn.with_options(task_runner=DaskTaskRunner(address=dask_address))
    from prefect.task_runners import ThreadPoolTaskRunner

    return flow_fn.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))


def _summary_markdown(rows: list[dict]) -> str:
    lines = [
        "| case | status | stage | reason | stages run / cached | seconds | PSNR | pose PCK |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        psnr, pck = r.get("psnr"), r.get("pose_pck")
        reason = (r["reason"] or "").replace("|", "\\|")[:200]
        lines.append(
            f"| {r['case']} | {r['status']} | {r['failed_stage'] or ''} | {reason} | "
            f"{r['stages_run']} / {r['stages_cached']} | {r['seconds']} | "
            f"{'' if psnr is None else f'{psnr:.2f}'} | {'' if pck is None else f'{pck:.3f}'} |"
        )
    return "\n".join(lines) + "\n"
