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


def test_sampling_keeps_the_source_outside_the_edit_region(edit):
    """sampling.preserve on the same edit: `none` is plain sampling (the frames of a pipeline call that
    knows nothing of regions); `pixels` and `latent+pixels` give back the source's exact pixels wherever
    the region is 0 and still move the person (`pixels` with `vacated: edit` leaves the edit untouched
    where the region is 1; with `vacated: plate` the clean plate replaces it where its weight is 1);
    `latent` alone keeps that background closer to the source than `none`."""
    from eym.clean_plate import read_plate
    from eym.edit_region import read_region
    from eym_model.components import load_components
    from eym_model.pipeline import EditYourMotionPipeline
    from stages import sample
    from stages.common import load_stage_weights, section

    params = load_params(default_params_files(edit))
    source = read_frames(read_case(edit).source_dir / "frames" / "source")
    region = read_region(edit / "offset" / "region")
    plate, weight = read_plate(edit / "offset")
    outside = region == 0
    assert 0.3 < outside.mean() < 0.95
    made = {}
    modes = (("none", "plate", 0), ("pixels", "edit", 0), ("pixels", "plate", 0), ("latent", "plate", 0),
             ("latent+pixels", "plate", 0), ("pixels", "plate", 12))  # fmt: skip
    for preserve, vacated, grey in modes:
        keep = {"preserve": preserve, "vacated": vacated, "unchanged": grey}
        sample.run(edit, {**params, "sampling": {**params["sampling"], **keep}})
        name = preserve if preserve != "pixels" else f"pixels, {vacated}" + (f", unchanged {grey}" if grey else "")
        made[name] = read_frames(edit / "sample" / "frames")
    for kept in ("pixels, edit", "pixels, plate", "latent+pixels"):
        assert np.array_equal(made[kept][outside], source[outside]), kept
        assert np.abs(made[kept][~outside].astype(int) - source[~outside]).mean() > 1.0, kept  # edited inside
    inside, filled, unfilled = region == 1, weight == 1, (region == 1) & (weight == 0)
    assert np.array_equal(made["pixels, edit"][inside], made["none"][inside])  # the edit itself untouched
    assert np.array_equal(made["pixels, plate"][unfilled], made["none"][unfilled])
    assert filled.any() and np.array_equal(made["pixels, plate"][filled], np.broadcast_to(plate, source.shape)[filled])

    # sampling.unchanged: inside the region too, where the edit stays within 12 grey levels of the
    # background (over 5x5 pixels), the background's exact pixels; where it changed by 24 or more, the edit
    import cv2

    background = source.astype(np.float32) * (1 - weight[..., None]) + plate.astype(np.float32) * weight[..., None]
    difference = np.abs(made["none"].astype(np.float32) - background).max(-1)
    near = np.stack([cv2.dilate(d, np.ones((5, 5), np.uint8)) for d in difference]) < 12
    far = np.stack([cv2.erode(d, np.ones((3, 3), np.uint8)) for d in difference]) >= 24
    kept, plain = made["pixels, plate, unchanged 12"], made["pixels, plate"]
    assert (near & inside).any() and (far & inside).any()
    assert np.array_equal(kept[near], np.round(background[near]).astype(np.uint8))
    assert np.array_equal(kept[far], plain[far]) and np.array_equal(kept[outside], source[outside])

    def background_error(frames):
        return np.abs(frames[outside].astype(int) - source[outside]).mean()

    assert background_error(made["latent"]) < background_error(made["none"])
    pipe = EditYourMotionPipeline(load_components(section(params, "model")))
    load_stage_weights(pipe, read_case(edit).source_dir, ("stage1", "stage2"))
    noise = sample.starting_noise(read_case(edit).source_dir, section(params, "sampling"), len(source))
    skeletons = read_frames(edit / "offset" / "aligned_skeleton")
    plain = pipe(reference_skeletons=skeletons, prompt=str(params["prompt"]), noise=noise, steps=4)  # keeps nothing
    assert np.array_equal(plain, made["none"])
    sample.run(edit, params)  # the fixture's edit as it was, for the other tests
