"""Stage-1 tuning: learn the source's motion (temporal attention + MA) on background-masked frames."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import STAGE1, stage_main
from .tune import train


def run(case_dir: Path, params: dict) -> dict:
    """Stage-1 tuning: temporal attention and motion attention on the masked source clip."""
    return train(case_dir, params, STAGE1)


if __name__ == "__main__":
    sys.exit(stage_main("stage1", run))
