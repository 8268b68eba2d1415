"""Shared fixtures: small puppet cases generated once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def puppet_case(tmp_path_factory):
    """A 128x128, 8-frame puppet case folder (walk in place -> wave)."""
    from eym.puppet.cases import make_case

    folder = tmp_path_factory.mktemp("puppet") / "case"
    make_case(folder, seed=7, size=128, num_frames=8, fps=8, source_motion="walk_in_place", reference_motion="wave")
    return folder
