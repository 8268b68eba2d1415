"""What eym-edit shows while its flow runs: a line per stage, with a live bar (rich) in a terminal or a
plain line when it ends otherwise; each stage's own log stays in ``<folder>/logs/<stage>.log``.

The flow's tasks say when a stage starts and ends (``BOARD``, any thread); the bars read the progress
file each stage's loops write (``eym.progress``), so what runs in a DVC subprocess shows here.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from eym.progress import read_progress

from .registry import GPU_STAGES


@dataclass
class StageRow:
    folder: str  # the case or source folder's name
    stage: str
    progress_file: Path
    started: float
    status: str = "running"  # running | ran | cached | failed
    seconds: float = 0.0
    last: dict | None = None  # its progress file when it ended


class Board:
    """The stages of a run as they start and end, shown live in a terminal, as plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.rows: dict[tuple[str, str], StageRow] = {}
        self.lock = threading.Lock()
        self.display = None

    def __enter__(self) -> Board:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self.display = Live(self, console=Console(file=self.stream), refresh_per_second=4)
            self.display.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.display is not None:
            self.display.__exit__(*exc)

    def started(self, folder: str, stage: str, progress_file: Path) -> None:
        with self.lock:
            self.rows[(folder, stage)] = StageRow(folder, stage, Path(progress_file), time.time())
        if not self.live and stage in GPU_STAGES:  # the long ones: say what is running
            self._print(f"{folder} {stage}: running (log: {Path(progress_file).with_name(f'{stage}.log')})")

    def finished(self, folder: str, stage: str, status: str, seconds: float) -> None:
        with self.lock:
            row = self.rows.setdefault((folder, stage), StageRow(folder, stage, Path(), time.time()))
            row.status, row.seconds = status, seconds
            row.last = read_progress(row.progress_file) if status == "ran" else None
        if not self.live:
            self._print(plain_line(row))

    def warned(self, folder: str, stage: str, message: str) -> None:
        """A stage's warning: a line under the table (in a terminal, printed above the live display)."""
        line = f"{folder} {stage}: warning: {message}"
        if self.display is not None:
            self.display.console.print(line, markup=False, highlight=False)
        else:
            self._print(line)

    def _print(self, line: str) -> None:
        with self.lock:  # not print(): inside a flow, Prefect's log_prints makes prints log lines
            self.stream.write(line + "\n")
            self.stream.flush()

    def __rich__(self):
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        with self.lock:
            rows = list(self.rows.values())
        if len(rows) > SHOWN_ROWS:  # a batch: the running stages, the latest ended ones, and a count
            ended = [r for r in rows if r.status != "running"]
            counts = {status: sum(r.status == status for r in ended) for status in ("ran", "cached", "failed")}
            latest = max(0, SHOWN_ROWS - (len(rows) - len(ended)))  # what the running stages leave
            keep = {id(r) for r in ended[len(ended) - latest :]}
            rows = [r for r in rows if r.status == "running" or id(r) in keep]
            table.add_row("", f"{len(ended)} stages ended", f"{counts['ran']} ran, {counts['cached']} up to date, "
                          f"{counts['failed']} failed", "", "")  # fmt: skip
        for row in rows:
            table.add_row(*rich_cells(row))
        return table


def loss_of(state: dict | None) -> str:
    return f", loss {state['loss']}" if state and state.get("loss") else ""


def progress_note(state: dict, running: bool = True) -> str:
    """A loop's progress in words: "stage1 tuning 57/200, loss 0.1234, 2 s left" (no time left once ended)."""
    left = state.get("seconds_left")
    eta = f", {left:.0f} s left" if running and left is not None else ""
    return f"{state['task']} {state['step']}/{state['total']}{loss_of(state)}{eta}"


def plain_line(row: StageRow) -> str:
    if row.status == "cached":
        return f"{row.folder} {row.stage}: up to date"
    steps = f", {row.last['step']} {row.last['unit']}s" if row.last else ""
    return f"{row.folder} {row.stage}: {row.status} in {row.seconds:.1f} s{steps}{loss_of(row.last)}"


def rich_cells(row: StageRow) -> tuple:
    """Mark, folder, stage, bar, and what it says: steps, loss and time left, or how it ended."""
    from rich.progress_bar import ProgressBar

    marks = {"running": "[yellow]…[/]", "ran": "[green]✓[/]", "cached": "[blue]=[/]", "failed": "[red]✗[/]"}
    state = read_progress(row.progress_file) if row.status == "running" else row.last
    if state and state.get("total"):
        bar = ProgressBar(total=state["total"], completed=state["step"], width=30)
        note = progress_note(state, row.status == "running")
    else:
        bar, note = ProgressBar(total=1, completed=0 if row.status == "running" else 1, width=30), ""
    if row.status == "running":
        note += f" ({time.time() - row.started:.0f} s)"
    elif row.status == "cached":
        note = "up to date"
    else:
        note = f"{row.status} in {row.seconds:.1f} s" + (f": {note}" if note else "")
    return marks.get(row.status, row.status), row.folder, row.stage, bar, note


WARNING_LINE = re.compile(r"^\d\d:\d\d:\d\d WARNING (.*)")  # eym.logs' format, as a stage logs a warning
SHOWN_ROWS = 20  # rows of the live table: a batch shows its running stages and the latest ended ones
BOARD: Board | None = None  # set by eym-edit while a flow runs in this process


def stage_started(folder: str, stage: str, progress_file: Path) -> None:
    if BOARD is not None:
        BOARD.started(folder, stage, progress_file)


def stage_line(folder: str, stage: str, line: str) -> None:
    """A line of a stage's log: its warnings are shown (the rest is in its log file)."""
    found = WARNING_LINE.match(line)
    if BOARD is not None and found:
        BOARD.warned(folder, stage, found.group(1))


def stage_finished(folder: str, stage: str, status: str, seconds: float) -> None:
    if BOARD is not None:
        BOARD.finished(folder, stage, status, seconds)


@contextmanager
def showing(verbose: bool):
    """While a flow runs: the board, and Prefect's console lines (the stages' logs, task-run states)
    down to warnings; with ``verbose``, every line as Prefect logs it and no board. The logs still go
    to the Prefect API and to each stage's log file."""
    global BOARD
    if verbose:
        yield
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.WARNING)
    try:
        with Board() as BOARD:
            yield
    finally:
        BOARD = None
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)
