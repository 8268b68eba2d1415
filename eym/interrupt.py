"""Stopping a stage cleanly: Ctrl-C, SIGTERM, or the death of the eym-edit that started it.

``install()`` (called by every stage's command line) turns SIGINT and SIGTERM into ``Interrupted``.
Inside ``deferred()`` (a training loop) a signal only sets a flag, which the loop reads at a step
boundary to save a checkpoint before it stops; elsewhere the signal stops the stage at once (its
outputs are written atomically, so nothing half-written is left). When ``$EYM_SUPERVISOR_PID``
names the process that started the stage (eym-edit), a watchdog thread sends the stage SIGTERM as
soon as that process is gone, so a killed eym-edit leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from .errors import EYMError

SUPERVISOR_ENV = "EYM_SUPERVISOR_PID"
_state = {"signal": None, "deferring": False}


class Interrupted(EYMError):
    """The stage stopped on a signal; ``exit_code`` follows the shell's 128 + signal convention."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def _handler(signum, frame):
    _state["signal"] = signum
    if not _state["deferring"]:
        raise Interrupted(f"stopped by {signal.Signals(signum).name}", signum)


def install() -> None:
    """Signals become Interrupted (even when the parent started us with SIGINT ignored)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handler)
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and supervisor.isdigit():
        threading.Thread(target=watch_supervisor, args=(int(supervisor),), daemon=True, name="supervisor-watch").start()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def watch_supervisor(pid: int, every: float = 0.5) -> None:
    """Send this process SIGTERM once process ``pid`` is gone."""
    while alive(pid):
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def deferred():
    """Signals inside the block only set a flag: call ``requested()`` at safe points."""
    before = _state["deferring"]
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = before


def requested() -> int | None:
    """The signal received (while deferred), if any."""
    return _state["signal"]
