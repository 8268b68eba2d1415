"""The quality benchmark's protocol: every variant is a valid edit, and its figure shows each variant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from eym.manifest import read_manifest
from eym.parameters import inconsistencies, merge_checked, read_layer

REPO = Path(__file__).resolve().parents[1]


def _quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inputs(folder: Path, sources: int, references: int) -> Path:
    rows = []
    for s in range(sources):
        (folder / f"source{s}.mp4").write_bytes(b"x")
        for r in range(references):
            for name in ("reference", "gt"):
                (folder / f"{name}{s}-{r}.mp4").write_bytes(b"x")
            rows.append({"id": f"edit{s}-{r}", "source": f"source{s}.mp4", "reference": f"reference{s}-{r}.mp4"})
            rows[-1] |= {"ground_truth": f"gt{s}-{r}.mp4", "prompt": "a person"}
    (folder / "manifest.yaml").write_text(yaml.safe_dump({"cases": rows}))
    return folder / "manifest.yaml"


def test_every_variant_and_grid_cell_is_a_valid_edit_of_params_yaml(tmp_path):
    quality = _quality()
    (tmp_path / "inputs").mkdir()
    inputs = _inputs(tmp_path / "inputs", 3, 2)
    names = list(quality.variants(1))
    assert set(quality.PROTOCOL) <= set(names) and "controlnet_only" in quality.PROTOCOL
    table = quality.protocol_manifest(inputs, tmp_path / "manifest-variants.yaml", 7, names, None, 2, 2, 2)
    grid = quality.protocol_manifest(inputs, tmp_path / "manifest-grid.yaml", 7, names, [5, 9], 1)
    one_each = quality.protocol_manifest(inputs, tmp_path / "manifest-small.yaml", 7, ["full"], None, 2, 3, 1)
    assert [c.id for c in read_manifest(one_each)] == ["edit0-0--full", "edit1-0--full", "edit2-0--full"]
    with pytest.raises(SystemExit, match="fewer than asked"):
        quality.protocol_manifest(inputs, tmp_path / "manifest-big.yaml", 7, ["full"], None, 2, 4, 2)
    base = read_layer(REPO / "params.yaml")
    for manifest, count in ((table, 4 * len(names)), (grid, 4)):
        cases = read_manifest(manifest)  # paths resolve from where the manifest lies
        assert len(cases) == count and len({c.id for c in cases}) == count
        for case in cases:
            layers = [("params.yaml", base), (case.id, case.params)]
            assert not inconsistencies(layers, merge_checked(layers)), case.id
    by_variant = {c.variant: c.params for c in read_manifest(table) if c.id.startswith("edit0-0")}
    assert by_variant["full"]["stage1"]["steps"] == 7 and by_variant["wo_stl"]["stage2"]["steps"] == 14
    assert by_variant["controlnet_only"]["sampling"]["start"] == "noise"
    assert by_variant["invert_with_pose"]["inversion"]["controlnet"] is True
    assert {(c.params["stage1"]["steps"], c.params["stage2"]["steps"]) for c in read_manifest(grid)} == {
        (5, 5),
        (5, 9),
        (9, 5),
        (9, 9),
    }


def test_variants_figure_shows_skeleton_truth_and_each_variants_edit(tmp_path):
    import imageio.v3 as iio

    quality = _quality()
    side, names = 32, ["full", "no_tuning", "copy_source"]
    for k, name in enumerate(names):
        frames = np.zeros((8, side, 5 * side, 3), np.uint8)
        frames[:, :, 2 * side : 3 * side] = 50  # the aligned skeleton panel
        frames[:, :, 3 * side : 4 * side] = 100 + 40 * k  # this variant's edit
        frames[:, :, 4 * side :] = 220  # the ground truth
        frames[:, 0, 0] = (np.arange(8) * 20)[:, None]  # frames that differ, as a video's do
        (tmp_path / "cases" / f"e--{name}" / "sample").mkdir(parents=True)
        iio.imwrite(tmp_path / "cases" / f"e--{name}" / "sample" / "comparison.gif", frames, duration=100)
    figure = quality.variants_figure(tmp_path / "cases", "e", [*names, "absent"], tmp_path)
    image = iio.imread(figure)
    assert image.shape[:2] == (2 * side, (2 + len(names)) * side)
    below_labels = image[side - 8 : side, :, 0].astype(int)  # the last rows of the first frame
    assert abs(below_labels[:, :side].mean() - 50) < 8 and abs(below_labels[:, side : 2 * side].mean() - 220) < 8
    for k in range(len(names)):
        column = below_labels[:, (2 + k) * side : (3 + k) * side]
        assert abs(column.mean() - (100 + 40 * k)) < 8, names[k]
    assert quality.variants_figure(tmp_path / "cases", "missing", names, tmp_path / "none") is None


def test_grid_run_writes_a_table_and_a_heat_map_per_metric(tmp_path):
    import imageio.v3 as iio

    quality = _quality()
    cells = {(50, 50): 14.0, (50, 200): 13.5, (200, 50): 15.0}  # (200, 200) did not finish
    result = {"variants": {"full": {"cases": 2, "psnr_person": {"mean": 9.0, "std": 0.0}}}}
    for (s1, s2), psnr in cells.items():
        stats = {"psnr_person": {"mean": psnr, "std": 0.1}, "pose_pck": {"mean": psnr / 20, "std": 0.0}}
        result["variants"][f"s1_{s1}-s2_{s2}"] = {"cases": 2, **stats}
    (tmp_path / "summary.json").write_text(json.dumps(result))
    quality.write_table(tmp_path)
    text = (tmp_path / "grid.md").read_text()
    psnr = text.split("PSNR (dB) person")[1].split("Pose PCK")[0]
    assert "mean of 2 edits" in psnr
    assert "| 50 | 14.00 | 13.50 |" in psnr and "| 200 | 15.00 | — |" in psnr and "9.00" not in psnr
    assert "| 200 | 0.750 | — |" in text.split("Pose PCK@0.1,")[1]
    image = iio.imread(tmp_path / "grid.png")
    assert image.ndim == 3 and image.shape[1] > 1.5 * image.shape[0]  # two heat maps side by side

    (tmp_path / "variants").mkdir()
    del result["variants"]["s1_50-s2_50"], result["variants"]["s1_50-s2_200"], result["variants"]["s1_200-s2_50"]
    (tmp_path / "variants" / "summary.json").write_text(json.dumps(result))
    quality.write_table(tmp_path / "variants")
    assert not (tmp_path / "variants" / "grid.md").exists() and not (tmp_path / "variants" / "grid.png").exists()
