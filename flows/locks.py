"""Case locks: one eym-edit per edit folder at a time; a source folder shared by several runs is
waited for. The kernel releases a lock when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

from eym.errors import InputError
from eym.interrupt import alive


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
