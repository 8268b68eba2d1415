"""Progress for long loops: a tqdm bar in a terminal, a log line every 10% when output is captured
(DVC or Prefect logs), so that captured logs stay readable and still show how far a stage got."""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("eym")


class Progress:
    def __init__(self, total: int, desc: str, initial: int = 0, unit: str = "it", enabled: bool = True):
        self.total, self.desc, self.count, self.initial = total, desc, initial, initial
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
        self.postfix = ""

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        self.bar.set_postfix(values)

    def update(self, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)
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


def track(iterable, total: int, desc: str, enabled: bool = True):
    with Progress(total, desc, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update()
