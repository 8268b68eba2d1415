"""EditYourMotionPipeline, the method in Python: docs/python.md's example runs as written, on eym-mini
with few steps, and gives the very frames the stages gave for the same inputs and settings."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest

from eym.media import read_frames
from flows.cases import create_cases
from flows.registry import PREPARATION_STAGES, RUN_ORDER
from sandbox.workspace import make_workspace, write_manifest
from stages.common import default_params_files, load_params, read_case

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "models" / "eym-mini"
SMALL = {  # eym-mini at its own size; few steps (the same code runs at any count)
    "model": {"base": "../models/base", "controlnet": "../models/controlnet"},
    "stage1": {"steps": 2},
    "stage2": {"steps": 2},
    "inversion": {"steps": 4},
    "sampling": {"steps": 4},
}


def example() -> str:
    """The Python block of docs/python.md."""
    (block,) = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)
    return block


@pytest.fixture(scope="module")
def edit(tmp_path_factory) -> Path:
    """An edit of a puppet clip made by the nine stages, each called as DVC calls it (its folder and the
    parameter files of its folder), in order."""
    root = make_workspace(
        tmp_path_factory.mktemp("pipeline"),
        [("walk_in_place", "arms_raise")],
        models=(MINI / "base", MINI / "controlnet"),
    )
    (case,) = create_cases(write_manifest(root, "nb", {"nb": "p0"}, SMALL), root / "data" / "cases", root)
    folders = {"edit": case, "source": read_case(case).source_dir}
    for spec in RUN_ORDER:
        folder = folders[spec.side]
        if spec in PREPARATION_STAGES:  # the prepared source first, as the flow runs it
            run_stage(spec, read_case(case).prepared_dir)
        run_stage(spec, folder)
    return case


def run_stage(spec, folder: Path) -> None:
    module = importlib.import_module(spec.command_module)
    module.run(folder, load_params(default_params_files(folder)))


def test_the_python_example_gives_the_frames_the_stages_gave(edit, monkeypatch):
    root, source = edit.parents[2], read_case(edit).source_dir
    code = example().replace("data/sources/<source-id>", str(source.relative_to(edit.parents[2])))
    code = code.replace("data/cases/<id>", str(edit.relative_to(root)))
    monkeypatch.chdir(root)
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)
    staged = read_frames(edit / "sample" / "frames")
    assert namespace["edited"].dtype == np.uint8 and namespace["edited"].shape == staged.shape
    assert np.array_equal(namespace["edited"], staged)  # bit for bit: the stages run these very calls
    assert (root / "edited.mp4").stat().st_size > 0
    moved = np.abs(staged.astype(int) - read_frames(source / "frames" / "source").astype(int)).mean()
    assert moved > 1.0  # an edit, not a copy of the source
