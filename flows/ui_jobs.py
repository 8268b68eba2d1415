"""What the web app does behind its buttons: uploads copied into the workspace under safe names, and
``eym-edit preview`` / ``run`` started as processes (an argument list, never a shell) and followed.

Each job is the command line a user would type, so the app edits exactly as the CLI does (the same
parameter checks, locks, manifest and flow); Cancel sends it Ctrl-C: the checkpoint is kept and the
same edit, started again, resumes.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from eym.atomic import atomic_path
from eym.errors import InputError
from eym.progress import read_progress

from .cases import file_digest
from .console import progress_note

VIDEO = (".mp4", ".mov", ".avi", ".webm", ".mkv", ".gif")
IMAGE = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
KINDS = {"source": VIDEO + IMAGE, "reference": VIDEO + (".parquet",), "ground truth": VIDEO}
UPLOADS = Path("data") / "ui" / "uploads"  # in the workspace


def store_upload(workspace: Path, path: str | Path | None, kind: str) -> Path | None:
    """An uploaded file copied to ``data/ui/uploads/<content hash>/<safe name>``: the same file keeps
    its path (a source tuned before is reused), and no name a user picks reaches a path outside."""
    if path is None or str(path) == "":
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{kind}: {path.name} is not a file")
    suffix = path.suffix.lower()
    if suffix not in KINDS[kind]:
        raise InputError(f"{kind}: {path.name} is not one of {', '.join(KINDS[kind])}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-")[:60] or kind.replace(" ", "-")
    target = workspace / UPLOADS / file_digest(path)[:16] / f"{stem}{suffix}"
    if not target.is_file():
        with atomic_path(target) as partial:  # a temporary name of its own: two tabs may upload it at once
            shutil.copyfile(path, partial)
    return target


@dataclass
class EditRequest:
    """What the app's form holds, uploads already in the workspace."""

    source: Path
    reference: Path
    prompt: str = ""
    source_prompt: str = ""
    ground_truth: Path | None = None
    settings: dict = field(default_factory=dict)  # parameter key -> value, e.g. {"stage1.steps": 40}

    def case_id(self) -> str:
        """The same inputs and settings give the same id: a second Edit resumes or reuses the first."""
        from .new_cases import default_id

        fields = [str(self.source), str(self.reference), self.prompt, self.source_prompt, str(self.ground_truth)]
        digest = hashlib.sha256(json.dumps([fields, self.settings], sort_keys=True).encode()).hexdigest()[:8]
        return f"ui-{default_id(self.source, self.reference)[:60]}-{digest}"

    def arguments(self, command: str, options: list[str]) -> list[str]:
        """eym-edit's arguments: ``options`` (the app's --params and --set) first, the form's settings last."""
        args = [command, "--source", str(self.source), "--reference", str(self.reference), "--id", self.case_id()]
        # --key=value: a prompt that starts with "-" stays a value, never an option
        args += [f"--prompt={self.prompt}"] + ([f"--source-prompt={self.source_prompt}"] if self.source_prompt else [])
        if self.ground_truth is not None and command == "run":
            args += ["--ground-truth", str(self.ground_truth)]
        args += options
        for key, value in self.settings.items():
            args += ["--set", f"{key}={'null' if value is None else value}"]
        return args


STAGE_LINE = re.compile(
    r"^(?P<folder>\S+) (?P<stage>\w+): (?P<what>running|ran|failed|up to date|warning)(?P<rest>.*)$"
)


class Job:
    """An ``eym-edit`` process in the workspace, its output lines as they come, and Ctrl-C to stop it."""

    def __init__(self, workspace: Path, args: list[str]):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PREFECT_API_URL", None)  # its own temporary Prefect server, as a terminal run
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Cancel signals it alone, as Ctrl-C in its own terminal would
        )
        self.lines: list[str] = []
        self.cancelled = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        LIVE.add(self)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        LIVE.discard(self)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None or self.reader.is_alive()

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(timeout)
        return code

    def cancel(self) -> None:
        """Ctrl-C: eym-edit stops its stages (a tuning stage saves a checkpoint first) and ends."""
        if self.proc.poll() is None:
            self.cancelled = True
            os.kill(self.proc.pid, signal.SIGINT)

    def stages(self) -> list[dict]:
        """A row per stage seen so far: folder, stage, status (running, ran, up to date, failed) and what
        it says; a running stage's steps, loss and time left come from its progress file."""
        rows: dict[tuple[str, str], dict] = {}
        for line in list(self.lines):
            found = STAGE_LINE.match(line.strip())
            if not found:
                continue
            key = (found["folder"], found["stage"])
            if found["what"] == "warning":
                rows.setdefault(key, {"status": "running", "note": ""})["note"] += f" warning{found['rest']}"
                continue
            rows[key] = {"status": found["what"], "note": found["rest"].strip(" ,"), "line": found["rest"]}
            if found["what"] == "running":
                log = re.search(r"\(log: (.*)\)", found["rest"])
                rows[key]["progress"] = Path(log[1]).with_suffix(".progress.json") if log else None
        table = []
        for (folder, stage), row in rows.items():
            state = read_progress(row["progress"]) if row.get("progress") and row["status"] == "running" else None
            if state:
                row["note"] = progress_note(state)
                row["fraction"] = state["step"] / state["total"] if state.get("total") else None
            table.append({"folder": folder, "stage": stage, **row})
        return table


LIVE: set[Job] = set()


@atexit.register
def stop_live_jobs() -> None:
    """When the app stops, its running edits stop as on Ctrl-C (checkpoints kept) instead of running on."""
    jobs = list(LIVE)
    for job in jobs:
        job.cancel()
    for job in jobs:
        try:
            job.proc.wait(70)  # eym-edit's own grace for a checkpoint is 60 s
        except subprocess.TimeoutExpired:
            os.killpg(job.proc.pid, signal.SIGKILL)


def finished_edits(workspace: Path, manifest: Path | None = None) -> list[dict]:
    """The manifest's edits that have a comparison video, newest first: id, folder, video, metrics."""
    import yaml

    manifest = manifest or workspace / "data" / "manifest.yaml"
    rows = (yaml.safe_load(manifest.read_text()) or {}).get("cases", []) if manifest.is_file() else []
    done = []
    for row in rows:
        folder = workspace / "data" / "cases" / str(row.get("id"))
        video = folder / "sample" / "comparison.mp4"
        if video.is_file():
            metrics_file = folder / "eval" / "metrics.json"
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            done.append({"id": row["id"], "folder": folder, "video": video, "metrics": metrics})
    return sorted(done, key=lambda d: d["video"].stat().st_mtime, reverse=True)
