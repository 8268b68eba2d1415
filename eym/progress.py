"""Progress for long loops: a tqdm bar in a terminal, a log line every 10% when output is captured
(DVC or Prefect logs), and, when ``$EYM_PROGRESS_FILE`` names a file, the loop's state as JSON there
(step, total, loss, seconds per step, time left), which eym-edit's terminal and web app read."""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("eym")
PROGRESS_FILE = "EYM_PROGRESS_FILE"  # set by eym-edit for each stage it runs: <case>/logs/<stage>.progress.json
WRITE_EVERY = 0.5  # seconds between two writes of the progress file


def read_progress(path) -> dict | None:
    """A stage's progress file as a dict (None while there is none, or half-written on a foreign filesystem)."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class Progress:
    def __init__(self, total: int, desc: str, initial: int = 0, unit: str = "it", enabled: bool = True):
        self.total, self.desc, self.count, self.initial, self.unit = total, desc, initial, initial, unit
        self.terminal = enabled and sys.stderr.isatty()
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            leave=False,
            dynamic_ncols=True,
            disable=not self.terminal,
        )
        self.enabled, self.started, self.logged = enabled, time.perf_counter(), initial * 10 // max(total, 1)
        self.postfix, self.values, self.file, self.written = "", {}, os.environ.get(PROGRESS_FILE), 0.0
        self.report()

    def report(self, final: bool = False) -> None:
        """The loop's state into the progress file, at most every WRITE_EVERY seconds (and at the end)."""
        if not self.file or (not final and time.perf_counter() - self.written < WRITE_EVERY):
            return
        from .atomic import write_json

        done = self.count - self.initial
        rate = (time.perf_counter() - self.started) / done if done else None
        state = {"task": self.desc, "step": self.count, "total": self.total, "unit": self.unit, **self.values}
        state.update(seconds_per_step=rate, seconds_left=None if rate is None else rate * (self.total - self.count))
        try:
            write_json(self.file, state)
        except OSError:  # progress is for the eye: never a reason for a stage to fail
            self.file = None
        self.written = time.perf_counter()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        self.values = {k: str(v) for k, v in values.items()}
        self.bar.set_postfix(values)

    def update(self, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)
        self.report(final=self.count >= self.total)
        tenth = self.count * 10 // max(self.total, 1)
        if self.enabled and not self.terminal and self.total >= 20 and tenth > self.logged:
            self.logged = tenth
            elapsed = time.perf_counter() - self.started
            rate = elapsed / max(self.count - self.initial, 1)  # a resumed run: this run's steps only
            eta = rate * (self.total - self.count)
            log.info(
                "%s: %d/%d%s (%.2f s/%s, %.0f s left)",
                self.desc,
                self.count,
                self.total,
                f", {self.postfix}" if self.postfix else "",
                rate,
                "step",
                eta,
            )

    def close(self) -> None:
        self.bar.close()
        done, self.initial = self.count - self.initial, self.count  # a second close logs nothing
        if self.enabled and done > 0 and self.count >= self.total:
            seconds = time.perf_counter() - self.started
            # the loop's speed, for the log and for the planner's calibration (stages.common.STEP_TIMES)
            log.info("%s: %d steps in %.1f s (%.3f s/step)", self.desc, done, seconds, seconds / done)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def track(iterable, total: int, desc: str, enabled: bool = True, unit: str = "step"):
    with Progress(total, desc, unit=unit, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update()
