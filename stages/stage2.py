"""Stage-2 tuning: learn appearance and background (RCA + MA) on full frames, from stage 1's weights."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import STAGE1, STAGE2, stage_main
from .tune import train


def run(case_dir: Path, params: dict) -> dict:
    """Stage-2 tuning: spatial (RCA) attention and motion attention on the full source clip."""
    return train(case_dir, params, STAGE2, previous=(STAGE1,))


if __name__ == "__main__":
    sys.exit(stage_main("stage2", run))
