"""Where eym-mini's diffusion training step spends its time: the real phase, run for a few steps under
torch.profiler, prints its busiest operations by host time and by device time.

    python benchmarks/mini_training_profile.py --root ROOT --params params.yaml --params configs/eym-mini-gpu.yaml

ROOT needs the data and the VAE (``dvc repro eym_mini_vae``, or what scripts/train-eym-mini-gpu.sh
prepares); the phase writes its output under ROOT/build/eym-mini as usual.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, schedule  # noqa: E402

from eym_mini import diffusion, training  # noqa: E402
from stages.common import load_params, setup_logging  # noqa: E402


def profiled(run, skip: int, active: int, rows: int):
    """``Phase.run`` with ``active`` of its steps, after ``skip``, recorded by the profiler."""

    def run_profiled(phase, step_fn, lr_fn, extra_log=None):
        cuda = torch.cuda.is_available()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        marks = {}

        with profile(activities=activities, schedule=schedule(wait=skip, warmup=2, active=active)) as prof:

            def step(i):
                if i - phase_start == skip + 2:
                    marks["start"] = time.perf_counter()
                loss = step_fn(i)
                prof.step()
                return loss

            phase_start = phase.step
            run(phase, step, lr_fn, extra_log)
            if cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - marks.get("start", time.perf_counter())
        averages = prof.key_averages()
        timed = max(1, phase.step - phase_start - skip - 2)
        print(f"\n{phase.name}: {active} profiled steps; wall {1000 * wall / timed:.1f} ms per step")
        for key in ("self_cpu_time_total", "self_device_time_total") if cuda else ("self_cpu_time_total",):
            print(averages.table(sort_by=key, row_limit=rows))

    return run_profiled


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--params", type=Path, action="append", required=True)
    parser.add_argument("--skip", type=int, default=20, help="steps before the profiled ones (start-up)")
    parser.add_argument("--active", type=int, default=10, help="profiled steps")
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    params["eym_mini"]["diffusion"]["steps"] = args.skip + 2 + args.active
    training.Phase.run = profiled(training.Phase.run, args.skip, args.active, args.rows)
    diffusion.train(params, args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
