"""Logging of the stages and tools: one plain line per message on stderr, third-party chatter silenced."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_libraries() -> None:
    """Silence import-time chatter of third-party packages (mediapipe's glog, timm's deprecations)."""
    if not sys.stderr.isatty():  # captured by DVC or Prefect: no progress bars of other libraries
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)


def setup_logging(verbose: bool = False) -> None:
    quiet_libraries()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
