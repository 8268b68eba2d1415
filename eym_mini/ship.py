"""eym-mini's ship step: the release that ``export`` made becomes the model in ``models/eym-mini``.

Not a DVC stage, on purpose: the shipped folder is what every edit loads by default, so it is an
input of the edits (never an output that ``dvc repro`` of an edit could retrain, redo or delete),
and replacing it changes every edit and the README's figures: a decision, taken with
``python -m eym_mini ship`` after looking at the release's card and metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from eym.atomic import atomic_path
from eym.errors import InputError

from . import GRID, LOG_DIR, MODEL_DIR, RELEASE_DIR
from .export import GRID_IMAGE

RELEASE_PARTS = ("base", "controlnet", "README.md", "metrics.json", GRID_IMAGE)


def ship(root: Path = Path(".")) -> dict:
    """Copy ``build/eym-mini/release`` (and the loss logs) into ``models/eym-mini``; the grid image into ``docs/``."""
    release, model = root / RELEASE_DIR, root / MODEL_DIR
    missing = [part for part in RELEASE_PARTS if not (release / part).exists()]
    if missing:
        raise InputError(
            f"{release}: no complete release to ship ({', '.join(missing)} missing): "
            "make one with `dvc repro eym_mini` first"
        )
    copies = [(release / part, model / part) for part in RELEASE_PARTS if part != GRID_IMAGE]
    copies += [(log, model / "logs" / log.name) for log in sorted((root / LOG_DIR).glob("*.tsv"))]
    copies.append((release / GRID_IMAGE, root / GRID))
    for src, dst in copies:  # each part replaced whole or not at all
        with atomic_path(dst) as tmp:
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp)
    return {"shipped": str(model), "parts": [str(dst.relative_to(root)) for _, dst in copies]}
