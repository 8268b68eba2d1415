"""One pipeline stage as a Prefect task: ``dvc repro --single-item`` of it in a process that eym-edit
supervises, its full log kept in the folder, its outcome (ran or came from DVC) or its one-line reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from eym.errors import InputError
from eym.progress import PROGRESS_FILE
from stages.common import ran

from . import console
from .registry import CHECKPOINTS, GPU_STAGES
from .runtime import SUPERVISOR, Stopping

_gpu_slots = threading.BoundedSemaphore(1)


@dataclass
class StageOutcome:
    case: str
    stage: str
    status: str  # ran | cached
    seconds: float
    worker: str = ""  # the Dask worker (or host) that ran it
    log_tail: list[str] = field(default_factory=list)


def repo_root(path: Path) -> Path:
    """The DVC workspace holding ``path`` (the nearest folder above it with a .dvc folder)."""
    from eym.workspace import find_workspace

    workspace = find_workspace(path)
    if workspace is not None:
        return workspace
    raise InputError(
        f"{path} is not inside a DVC workspace (no .dvc folder above it): run inside the project "
        f"repository, or `dvc init` the folder that holds your cases"
    )


def set_gpu_slots(count: int) -> None:
    global _gpu_slots
    _gpu_slots = threading.BoundedSemaphore(max(1, count))


def _reason(lines: list[str]) -> str:
    """The stage's own error line ("<stage> failed: ..."), else DVC's, else the last line."""
    for pattern in (r"ERROR (\w+ (?:failed|interrupted): .*)", r"ERROR: (.*)"):
        for line in reversed(lines):
            match = re.search(pattern, line)
            if match:
                return match.group(1).strip()
    return lines[-1].strip() if lines else "no output"


LOG_DIR = "logs"  # a case's full stage logs: <case>/logs/<stage>.log (not tracked)


def dvc_repro(case_dir: Path, stage: str, on_line=None) -> tuple[int, str, list[str]]:
    """``dvc repro --single-item`` of one stage of a case, in a process group that eym-edit stops on
    interruption: (exit code, ran|cached, output lines). The full output goes to the stage's log file."""
    case_dir = Path(case_dir).resolve()
    root = repo_root(case_dir)
    target = f"{case_dir.relative_to(root)}/dvc.yaml:{stage}"
    log_file = stage_log(case_dir, stage)
    progress_file(case_dir, stage).unlink(missing_ok=True)  # a former run's
    proc = SUPERVISOR.spawn(
        [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", target],
        label=f"{case_dir.name}/{stage}",
        cwd=root,
        env={**stage_environment(), PROGRESS_FILE: str(progress_file(case_dir, stage))},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    try:
        with open(log_file, "w") as full:
            for line in proc.stdout:
                full.write(line)
                line = line.rstrip()
                if not line or "\r" in line:
                    continue
                lines.append(line)
                if on_line:
                    on_line(line)
        code = proc.wait()
    finally:
        SUPERVISOR.release(proc)
    if code == 0:
        remove_leftover_checkpoint(case_dir, stage)
    # a stage that did not log its end was up to date or restored from DVC's run cache
    return code, "ran" if code or ran(lines) else "cached", lines


def stage_log(case_dir: Path, stage: str) -> Path:
    folder = Path(case_dir) / LOG_DIR
    folder.mkdir(exist_ok=True)
    (folder / ".gitignore").write_text("*\n")
    return folder / f"{stage}.log"


def progress_file(case_dir: Path, stage: str) -> Path:
    """Where a stage's loops say how far they are (eym.progress), for eym-edit's terminal and web app."""
    return Path(case_dir) / LOG_DIR / f"{stage}.progress.json"


def remove_leftover_checkpoint(case_dir: Path, stage: str) -> None:
    """A finished stage needs no checkpoint, however its output arrived (run, or DVC's run cache)."""
    import shutil

    if stage in CHECKPOINTS and (Path(case_dir) / stage / "weights.safetensors").is_file():
        shutil.rmtree(Path(case_dir) / CHECKPOINTS[stage], ignore_errors=True)


def stage_error(stage: str, lines: list[str], log_file: Path | None = None) -> str:
    reason = _reason(lines)
    if not reason.startswith((f"{stage} failed", f"{stage} interrupted")):
        reason = f"{stage} failed: {reason}"
    return reason + (f" (full log: {log_file})" if log_file and "interrupted" not in reason else "")


def reproduce_stage(case_dir: str, case_id: str, stage: str):
    """Reproduce one stage of one case with DVC, streaming its log into Prefect. A failed stage ends
    the task in a Failed state whose message is the stage's one-line reason (no traceback)."""
    logger = get_run_logger()
    slot = _gpu_slots if stage in GPU_STAGES else None
    started = time.perf_counter()
    if slot:
        slot.acquire()
    console.stage_started(case_id, stage, progress_file(Path(case_dir).resolve(), stage))

    def on_line(line: str) -> None:
        logger.info(line)
        console.stage_line(case_id, stage, line)

    try:
        code, status, lines = dvc_repro(Path(case_dir), stage, on_line)
    except Stopping as exc:
        console.stage_finished(case_id, stage, "failed", time.perf_counter() - started)
        return Failed(message=f"{stage} interrupted before it started ({exc})")
    finally:
        if slot:
            slot.release()
    seconds = round(time.perf_counter() - started, 2)
    console.stage_finished(case_id, stage, "failed" if code else status, seconds)
    if code != 0:
        return Failed(message=stage_error(stage, lines, stage_log(Path(case_dir), stage)))
    return StageOutcome(case_id, stage, status, seconds, _worker_name(), lines[-5:])


# The task wraps a plainly named function so that Dask workers can import it by name.
run_stage = task(
    reproduce_stage, name="run-stage", cache_policy=NO_CACHE, persist_result=False, task_run_name="{case_id}/{stage}"
)


def stage_environment() -> dict:
    """The environment for DVC's stage commands: this interpreter's ``python`` first on PATH."""
    import os

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        import socket

        return socket.gethostname()
