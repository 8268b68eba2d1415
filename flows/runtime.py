"""eym-edit's processes, which never outlive it: stage processes, the temporary Prefect server, case locks.

Each stage runs (through ``dvc repro``) in a process group of its own, started by ``SUPERVISOR``, so
that Ctrl-C reaches eym-edit alone and eym-edit decides how to stop: it sends SIGTERM to every group
(a tuning stage saves a checkpoint at its next step boundary and exits), waits, then kills what is
left. Children learn eym-edit's PID from ``$EYM_SUPERVISOR_PID`` and stop when it is gone, so even a
``kill -9`` of eym-edit leaves nothing running (eym.interrupt). The flows run in a worker thread
while the main thread keeps the signal handlers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from eym.errors import EYMError, InputError
from eym.interrupt import SUPERVISOR_ENV, alive


class Stopping(EYMError):
    """eym-edit is stopping (a signal arrived): no new stage process starts."""


GRACE_SECONDS = 60.0  # how long a stopping stage may take to checkpoint before it is killed


class Supervisor:
    """The running child process groups of this eym-edit, and whether it was interrupted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: dict[int, tuple[subprocess.Popen, str]] = {}
        self.signal: int | None = None
        self.stopped = threading.Event()

    def environment(self, env: dict | None = None) -> dict:
        env = dict(os.environ if env is None else env)
        env[SUPERVISOR_ENV] = str(os.getpid())
        return env

    def spawn(self, args: list[str], label: str = "", **kwargs) -> subprocess.Popen:
        """Start ``args`` in a new process group that this supervisor stops on interruption."""
        with self.lock:
            if self.signal is not None:
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
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if SUPERVISOR.signal is not None:
        SUPERVISOR.stopped.wait(GRACE_SECONDS + 5)
    if "error" in result:
        raise result["error"]
    return result.get("value")


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
        with temporary_settings({PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
            try:
                yield url
            finally:
                _drain_prefect_workers()
    finally:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send Prefect's queued logs and events while the server still answers (else they are retried
    against a stopped server for a minute at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


class CaseLock:
    """An exclusive lock on a case folder for one eym-edit (released by the kernel if it dies)."""

    NAME = ".eym-edit.lock"

    def __init__(self, case_dir: Path, wait: bool = False):
        self.path = Path(case_dir) / self.NAME
        self.file = None
        self.wait = wait

    def _holder(self) -> str:
        self.file.seek(0)
        holder = self.file.read().strip()
        try:
            info = json.loads(holder)
            return f"eym-edit (pid {info['pid']}: {info['command']})" if alive(int(info["pid"])) else holder
        except (ValueError, KeyError):
            return "another eym-edit"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = self._holder()
            if self.wait:  # a shared source: wait for the other run to finish with it
                print(f"eym-edit: waiting for {who} to finish with {self.path.parent}", file=sys.stderr, flush=True)
                fcntl.flock(self.file, fcntl.LOCK_EX)
                return self._claim()
            self.file.close()
            raise InputError(
                f"{self.path.parent}: this case is being run by {who}; wait for it to finish, or stop it "
                "(Ctrl-C in its terminal, or kill its pid) and run again"
            ) from None
        return self._claim()

    def _claim(self):
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300]}))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            self.file.seek(0)
            self.file.truncate()
        self.file.close()


@contextlib.contextmanager
def case_locks(case_dirs: list[Path]):
    """Locks on edit folders (another eym-edit on one of them is an error) and on their source and
    prepared source folders (another eym-edit preparing the same source is waited for)."""
    from stages.common import read_case

    with contextlib.ExitStack() as stack:
        for case_dir in case_dirs:
            stack.enter_context(CaseLock(case_dir))
        shared = {d for c in case_dirs for d in (read_case(c).source_dir, read_case(c).prepared_dir)}
        for folder in sorted(shared - {Path(c).resolve() for c in case_dirs}):
            stack.enter_context(CaseLock(folder, wait=True))
        yield
