"""The command line of eym-mini's training phases (DVC runs them: ``dvc repro eym_mini``).

    python -m eym_mini data|vae|diffusion|export [--params params.yaml] [--max-minutes M]
    python -m eym_mini ship     # the release that export made becomes models/eym-mini

A phase stopped by its time budget saves a checkpoint and exits with status 3; the same command
continues it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from eym import interrupt
from eym.errors import EYMError

from .training import BudgetReached

log = logging.getLogger("eym")
PHASES = ("data", "vae", "diffusion", "export", "ship")


def run_phase(phase: str, params: dict, root: Path) -> dict:
    if phase == "data":
        from .data import make_sets

        return make_sets(params["eym_mini"], root)
    if phase == "vae":
        from .vae import train

        return train(params, root)
    if phase == "diffusion":
        from .diffusion import train

        return train(params, root)
    if phase == "ship":
        from .ship import ship

        return ship(root)
    from .export import export

    return export(params, root)


def main(argv=None) -> int:
    from eym.logs import setup_logging
    from eym.parameters import load_checked as load_params

    parser = argparse.ArgumentParser(prog="python -m eym_mini", description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--params", type=Path, action="append", help="parameter files (default: params.yaml)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    parser.add_argument("--max-minutes", type=float, help="stop after this long with a checkpoint (resumable)")
    args = parser.parse_args(argv)
    setup_logging()
    interrupt.install()
    if args.max_minutes:
        os.environ["EYM_MINI_MAX_MINUTES"] = str(args.max_minutes)
    started = time.perf_counter()
    try:
        params = load_params(args.params or [args.root / "params.yaml"])
        result = run_phase(args.phase, params, args.root)
    except BudgetReached as exc:
        log.warning("%s", exc)
        return 3
    except interrupt.Interrupted as exc:
        log.error("%s", exc)
        return exc.exit_code
    except EYMError as exc:
        log.error("eym-mini %s failed: %s", args.phase, exc)
        return 2
    log.info("eym-mini %s done in %.0f s: %s", args.phase, time.perf_counter() - started, json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
