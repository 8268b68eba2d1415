"""The host side of eym-mini's diffusion batches: each step's latent rows, dropped prompts and skeleton
images drawn from the step's own seed, by worker processes ahead of the training loop when asked.
"""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .data import jittered_skeletons
from .training import step_rng


@dataclass(frozen=True)
class BatchDraw:
    """The host side of step ``i``'s batch, from the step's own seed: latent rows, which prompts are
    dropped, and the skeleton images (None for a batch without ControlNet)."""

    keypoints: np.ndarray
    latent_rows: np.ndarray
    seed: int
    batch: int
    size: int
    prompt_dropout: float
    controlnet_dropout: float
    skeleton_drop: float
    skeleton_jitter: float

    def __call__(self, i: int):
        rng = step_rng(self.seed, i)
        pick = rng.integers(0, len(self.latent_rows), self.batch)
        dropped = rng.random(self.batch) < self.prompt_dropout
        if rng.random() < self.controlnet_dropout:
            return pick, dropped, None
        kp = self.keypoints[self.latent_rows[pick]]
        return pick, dropped, jittered_skeletons(kp, self.size, rng, self.skeleton_drop, self.skeleton_jitter)


_WORKER_DRAW: BatchDraw | None = None


def _start_worker(draw: BatchDraw) -> None:
    global _WORKER_DRAW
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the loop checkpoints on Ctrl-C; workers just stop with it
    _WORKER_DRAW = draw


def _draw_in_worker(i: int):
    return _WORKER_DRAW(i)


class AheadOfTheLoop:
    """``draw(i)`` for the next steps, computed by ``workers`` processes (in the caller when 0)."""

    def __init__(self, draw: BatchDraw, workers: int):
        self.draw, self.ahead, self.pending = draw, 2 * workers, {}
        self.pool = None
        if workers > 0:
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # no fork of a process holding CUDA or torch threads
            self.pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(draw,))

    def __call__(self, i: int):
        if self.pool is None:
            return self.draw(i)
        for stale in [j for j in self.pending if j < i]:
            self.pending.pop(stale).cancel()
        for j in range(i, i + self.ahead):
            if j not in self.pending:
                self.pending[j] = self.pool.submit(_draw_in_worker, j)
        return self.pending.pop(i).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
