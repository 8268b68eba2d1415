"""eym-edit's processes, which never outlive it: stage processes and the temporary Prefect server.

Each stage runs (through ``dvc repro``) in a process group of its own, started by ``SUPERVISOR``, so
that Ctrl-C reaches eym-edit alone and eym-edit decides how to stop: it sends SIGTERM to every group
(a tuning stage saves a checkpoint at its next step boundary and exits), waits, then kills what is
left. Children learn eym-edit's PID from ``$EYM_SUPERVISOR_PID`` and stop when it is gone, so even a
``kill -9`` of eym-edit leaves nothing running (eym.interrupt). The flows run in a worker thread
while the main thread keeps the signal handlers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from eym.errors import EYMError
from eym.interrupt import SUPERVISOR_ENV


class Stopping(EYMError):
    """eym-edit is stopping (a signal arrived, or the Prefect server is gone): no new stage process starts."""


class FlowAbandoned(EYMError):
    """The flow did not wind up once its stages were stopped (it waits on a Prefect server that is
    gone, say): eym-edit ends without it. ``exit_code``: 128 + the signal, or 1."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


GRACE_SECONDS = 60.0  # how long a stopping stage may take to checkpoint before it is killed
FLOW_GRACE_SECONDS = 10.0  # how long the flow may take to end once its stages are stopped


class Supervisor:
    """The running child process groups of this eym-edit, and whether it was interrupted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: dict[int, tuple[subprocess.Popen, str]] = {}
        self.signal: int | None = None
        self.lost: str | None = None  # why the flows cannot go on (their Prefect server stopped)
        self.stopped = threading.Event()
        self.abandoned = False  # a flow was left running when eym-edit gave up on it

    @property
    def stopping(self) -> bool:
        return self.signal is not None or self.lost is not None

    def environment(self, env: dict | None = None) -> dict:
        env = dict(os.environ if env is None else env)
        env[SUPERVISOR_ENV] = str(os.getpid())
        return env

    def spawn(self, args: list[str], label: str = "", **kwargs) -> subprocess.Popen:
        """Start ``args`` in a new process group that this supervisor stops on interruption."""
        with self.lock:
            if self.stopping:
                raise Stopping(f"{label or args[0]}: not started, eym-edit is stopping")
            proc = subprocess.Popen(
                args, start_new_session=True, env=self.environment(kwargs.pop("env", None)), **kwargs
            )
            self.procs[proc.pid] = (proc, label)
        return proc

    def release(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.pop(proc.pid, None)

    def running(self) -> list[str]:
        with self.lock:
            return [label for _, label in self.procs.values() if label]

    def stop_all(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to every stage process (a tuning stage checkpoints first; DVC then ends on its own,
        passing on the stage's last words), then SIGKILL to the groups still alive after ``grace``."""
        with self.lock:
            procs = [proc for proc, _ in self.procs.values()]
        for proc in procs:
            _signal_stages(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            _signal_group(proc.pid, signal.SIGKILL)
        self.stopped.set()

    def lose(self, reason: str) -> None:
        """The flows cannot go on (their Prefect server is gone): every stage stops, as on a signal."""
        with self.lock:
            if self.stopping:
                return
            self.lost = reason
        # Prefect can only fail to reach its server from now on: its retries' tracebacks and "Error
        # logging to API" lines would bury the one line that says what happened.
        import logging

        logging.getLogger("prefect").setLevel(logging.CRITICAL + 1)
        logging.raiseExceptions = False
        print(f"\neym-edit: {reason}: stopping every stage", file=sys.stderr, flush=True)
        threading.Thread(target=self.stop_all, daemon=True, name="stop-stages").start()

    def on_signal(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop waiting for checkpoints
            for proc, _ in list(self.procs.values()):
                _signal_group(proc.pid, signal.SIGKILL)
            return
        self.signal = signum
        name = signal.Signals(signum).name
        running = ", ".join(self.running()) or "nothing"
        print(
            f"\neym-edit: {name} received while running {running}: stopping (press Ctrl-C again to kill)",
            file=sys.stderr,
            flush=True,
        )
        threading.Thread(target=self.stop_all, daemon=True, name="stop-stages").start()


def _signal_stages(pid: int, signum: int) -> None:
    """Signal the stage processes (``python -m stages.<name>``) below ``pid``; the whole group when
    there is none (yet). Never the shell DVC runs the command in (dash, unlike bash, does not exec
    it): a shell killed by the signal would end DVC with -15 before the stage has saved its checkpoint
    and said so."""
    import psutil

    try:
        stages = [p for p in psutil.Process(pid).children(recursive=True) if _is_stage(p)]
    except psutil.Error:
        stages = []
    for stage in stages:
        with contextlib.suppress(psutil.Error):
            stage.send_signal(signum)
    if not stages:
        _signal_group(pid, signum)


def _is_stage(proc) -> bool:
    """Whether ``proc`` is ``python [-u] -m stages.<name> ...`` itself."""
    import psutil

    try:
        args = proc.cmdline()
    except psutil.Error:  # gone meanwhile
        return False
    return any(a == "-m" and b.startswith("stages.") for a, b in zip(args[1:3], args[2:4]))


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


SUPERVISOR = Supervisor()


def run_supervised(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a worker thread while the main thread handles SIGINT and SIGTERM."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    previous = {s: signal.signal(s, SUPERVISOR.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=target, name="eym-edit-flow", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if SUPERVISOR.stopping and SUPERVISOR.stopped.is_set():  # the stages are gone
                worker.join(FLOW_GRACE_SECONDS)  # the flow ends at once, unless its API is gone too
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if SUPERVISOR.stopping:
        SUPERVISOR.stopped.wait(GRACE_SECONDS + 5)
    if worker.is_alive() or SUPERVISOR.lost is not None:
        SUPERVISOR.abandoned = worker.is_alive()
        raise _abandoned()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _abandoned() -> FlowAbandoned:
    if SUPERVISOR.lost is not None:
        return FlowAbandoned(
            f"{SUPERVISOR.lost}; every stage was stopped (a tuning stage keeps its checkpoint): "
            "the same command resumes",
            1,
        )
    name = signal.Signals(SUPERVISOR.signal).name
    return FlowAbandoned(
        f"interrupted by {name}: every stage was stopped, nothing is lost: run the same command to resume",
        128 + int(SUPERVISOR.signal),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prefect_api(timeout: float = 120.0):
    """A Prefect API for the flows: $PREFECT_API_URL if set, else a temporary local server of our own
    (its own process group, so Ctrl-C does not kill it mid-run; it stops when eym-edit ends or dies)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    proc = SUPERVISOR.spawn(  # no inherited stdout/stderr: a caller reading them must see them close
        [sys.executable, "-m", "flows.prefect_server", "--port", str(port)],
        cwd=str(Path(__file__).resolve().parents[1]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    SUPERVISOR.release(proc)  # stopped below, after the flows, not with the stages
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the temporary Prefect server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        # No UI URL: the temporary server serves no UI and is gone when eym-edit ends, so Prefect's
        # "View at http://127.0.0.1:..." would point at nothing.
        watching = threading.Event()
        watching.set()
        threading.Thread(target=_watch_server, args=(proc, watching), daemon=True, name="watch-prefect").start()
        with temporary_settings({PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
            try:
                yield url
            finally:
                watching.clear()
                if SUPERVISOR.lost is None:  # nothing to send them to otherwise
                    _drain_prefect_workers()
    finally:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _watch_server(proc: subprocess.Popen, watching: threading.Event, every: float = 0.5) -> None:
    """While the flows run, a server that exits stops the run (its tasks could only retry for minutes)."""
    while watching.is_set():
        if proc.poll() is not None:
            if watching.is_set():
                code = proc.returncode
                how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                SUPERVISOR.lose(f"the temporary Prefect server stopped ({how})")
            return
        time.sleep(every)


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send Prefect's queued logs and events while the server still answers (else they are retried
    against a stopped server for a minute at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)
