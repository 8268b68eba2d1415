"""The training loop machinery of eym-mini's phases: checkpoints, exact resume, a time budget,
progress with loss and ETA, a loss log for DVC plots, and an exponential moving average of weights.

Randomness is drawn per step from (seed, step), so a phase resumed from a checkpoint ends with the
same weights as one that ran straight through.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eym import interrupt
from eym.atomic import atomic_path, write_text
from eym.errors import EYMError, TrainingError
from eym.progress import Progress

log = logging.getLogger("eym")


class BudgetReached(EYMError):
    """A phase stopped at its time budget after saving a checkpoint; rerunning it continues."""


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step)])


def step_generator(seed: int, step: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(int(seed) * 1_000_003 + int(step))


RUNTIME_KEYS = frozenset({"workers", "draw_workers"})  # how fast a phase runs, not what it makes


def _recipe(part):
    if isinstance(part, dict):
        return {k: _recipe(v) for k, v in part.items() if k not in RUNTIME_KEYS}
    return part


def fingerprint(*parts) -> str:
    """A short hash of the parameters that decide a result (worker counts left out)."""
    digest = hashlib.sha256(json.dumps([_recipe(p) for p in parts], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def autocast(device: str, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None)


def lr_at(step: int, total: int, lr: float, warmup: int, final_fraction: float) -> float:
    """Linear warm-up, then cosine decay to ``final_fraction`` of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class EMA:
    """Exponential moving average of a set of modules' parameters (decay warms up from 0)."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float):
        self.decay = decay
        self.shadow = {name: copy.deepcopy(module).eval().requires_grad_(False) for name, module in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, module in modules.items():
            for avg, param in zip(self.shadow[name].parameters(), module.parameters()):
                avg.lerp_(param.detach(), 1 - decay)

    def state_dict(self) -> dict:
        return {name: module.state_dict() for name, module in self.shadow.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.shadow.items():
            module.load_state_dict(state[name])


@dataclass
class Phase:
    """One resumable training phase. ``modules`` are trained; the checkpoint also holds the
    optimizer, the EMA, the loss log and the time spent."""

    name: str
    ckpt_dir: Path
    steps: int
    checkpoint_every: int
    print_: str
    modules: dict
    optimizer: torch.optim.Optimizer
    ema: EMA | None = None
    max_minutes: float | None = None
    step: int = 0
    seconds: float = 0.0
    log_rows: list = field(default_factory=list)

    def resume(self) -> int:
        file = self.ckpt_dir / "checkpoint.pt"
        if not file.is_file():
            return 0
        payload = torch.load(file, map_location="cpu", weights_only=False)
        if payload.get("fingerprint") != self.print_:
            log.warning("%s: ignoring checkpoint %s, made with other parameters or inputs", self.name, file)
            return 0
        for name, module in self.modules.items():
            module.load_state_dict(payload["modules"][name])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(payload["ema"])
        self.step, self.seconds, self.log_rows = payload["step"], payload["seconds"], payload["log"]
        log.info("%s: resuming after step %d (%.0f s of training so far)", self.name, self.step, self.seconds)
        return self.step

    def checkpoint(self) -> None:
        payload = {
            "fingerprint": self.print_,
            "step": self.step,
            "seconds": self.seconds,
            "log": self.log_rows,
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.ckpt_dir / "checkpoint.pt") as tmp:
            torch.save(payload, tmp)

    def run(self, step_fn, lr_fn, extra_log=None) -> None:
        """Call ``step_fn(step) -> loss tensor`` until ``steps``; optimise, log, checkpoint, stop at the budget.

        ``extra_log(step)`` may return a dict of further columns for some steps (e.g. a held-out score).
        """
        params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        started_run = time.perf_counter()
        budget = None if not self.max_minutes else 60.0 * float(self.max_minutes)
        bar = Progress(self.steps, f"eym-mini {self.name}", initial=self.step, unit="step")
        shown: dict = {}  # the latest extra columns, kept in the progress line
        with interrupt.deferred():
            self._loop(step_fn, lr_fn, extra_log, params, started_run, budget, bar, shown)
        bar.close()

    def _loop(self, step_fn, lr_fn, extra_log, params, started_run, budget, bar, shown) -> None:
        while self.step < self.steps:
            if interrupt.requested():
                self.checkpoint()
                bar.close()
                raise interrupt.Interrupted(
                    f"eym-mini {self.name}: interrupted at step {self.step} of {self.steps}; the checkpoint is "
                    "saved and the same command continues",
                    interrupt.requested(),
                )
            started = time.perf_counter()
            lr = lr_fn(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = step_fn(self.step)
            if not math.isfinite(loss.item()):
                bar.close()
                raise TrainingError(f"eym-mini {self.name}: the loss became {loss.item()} at step {self.step + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.modules, self.step)
            self.step += 1
            self.seconds += time.perf_counter() - started
            row = {"step": self.step, "loss": round(loss.item(), 6), "lr": lr, "seconds": round(self.seconds, 1)}
            extra = (extra_log(self.step) if extra_log else None) or {}
            shown.update(extra)
            row.update(extra)
            self.log_rows.append(row)
            bar.set_postfix(loss=f"{loss.item():.4f}", **shown)
            bar.update()
            done = self.step >= self.steps
            over = budget is not None and time.perf_counter() - started_run > budget
            if not done and (self.step % self.checkpoint_every == 0 or over):
                self.checkpoint()
            if over and not done:
                bar.close()
                raise BudgetReached(
                    f"eym-mini {self.name}: stopped at step {self.step} of {self.steps} after the "
                    f"{self.max_minutes:g}-minute budget; the checkpoint is saved: run the same command "
                    f"again to continue"
                )

    def write_log(self, path: Path) -> None:
        present = dict.fromkeys(k for row in self.log_rows for k in row)  # rows read back from JSON are sorted
        first = [c for c in ("step", "loss", "lr", "seconds") if c in present]
        columns = first + [c for c in present if c not in first]
        lines = ["\t".join(columns)]
        lines += ["\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns) for row in self.log_rows]
        write_text(path, "\n".join(lines) + "\n")

    def finish(self) -> None:
        """The phase's outputs are written: its checkpoints are no longer needed."""
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)


def budget_minutes(params: dict) -> float | None:
    """The time budget of one run of a phase: $EYM_MINI_MAX_MINUTES, else eym_mini.max_minutes."""
    value = os.environ.get("EYM_MINI_MAX_MINUTES") or params.get("max_minutes")
    return float(value) if value else None


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
