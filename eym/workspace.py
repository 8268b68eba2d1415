"""The DVC workspace a path lies in: the nearest folder above it that holds a ``.dvc`` folder."""

from __future__ import annotations

import os
from pathlib import Path


def find_workspace(path: str | Path) -> Path | None:
    """The workspace holding ``path``, or None outside any."""
    resolved = Path(path).resolve()
    return next((p for p in (resolved, *resolved.parents) if (p / ".dvc").is_dir()), None)


def link(target: str | Path, page_dir: str | Path) -> str:
    """A link from a page in ``page_dir`` to ``target``: relative when both lie in one workspace (the
    link moves with it), else the file's absolute URI (the page can move anywhere on this machine)."""
    target, page_dir = Path(target).resolve(), Path(page_dir).resolve()
    home = find_workspace(target)
    if home is not None and home == find_workspace(page_dir):
        return Path(os.path.relpath(target, page_dir)).as_posix()
    return target.as_uri()
