"""Every benchmark that docs/benchmarks.md gives runs on a small case: its documented command, typed as a
user types it, with the sizes made small; each test checks that it measured what it says it measures.
(The quality benchmark and the commands that read its edits run in a fresh clone: test_documented_commands.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, cwd: Path = REPO, timeout: int = 900) -> str:
    """``.venv/bin/python benchmarks/<script> ARGS`` in ``cwd``, as typed there; its output."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{script} {' '.join(args)}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def table_rows(text: str) -> list[list[str]]:
    """The cells of a markdown table's body rows."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows if not set("".join(row)) <= set("-: ")]


@pytest.mark.documents(".venv/bin/python benchmarks/puppet_detectability.py --clips 28 --size 512")
def test_puppet_detectability_scores_the_detectors_on_each_motion(tmp_path):
    out = bench("puppet_detectability.py", "--clips", "2", "--size", "128", "--frames", "4")
    rows = {row[0]: row for row in table_rows(out)[1:]}
    assert set(rows) == {"arms_raise", "dance", "**all**"}, out
    assert float(rows["**all**"][2].split()[0].strip("*")) >= 0.9, out  # pose PCK@0.1 on the true clips
    assert "ms/frame" in out


@pytest.mark.documents(
    ".venv/bin/python benchmarks/model_speed.py --config tiny --size 128 --frames 8",
    ".venv/bin/python benchmarks/model_speed.py --config sd15 --size 512 --frames 8 --steps 1 --checkpointing",
    ".venv/bin/python benchmarks/model_speed.py --attention --size 256 --steps 2",
)
def test_model_speed_times_training_sampling_and_attention():
    """Both modes on the tiny configuration (SD 1.5's is the same code with another config, whose
    architecture test_model checks without building it), with gradient checkpointing."""
    out = bench(
        "model_speed.py", "--config", "tiny", "--size", "64", "--frames", "2", "--steps", "1", "--checkpointing"
    )
    steps = re.findall(r"(train step \[[^]]+\]|sampling step).*?: ([\d.]+) s/step, peak ([\d.]+) GiB", out)
    assert [name for name, _, _ in steps] == [
        "train step [temporal + motion_attention]",
        "train step [spatial_attention + motion_attention]",
        "sampling step",
    ], out
    assert all(float(seconds) > 0 and float(peak) > 0 for _, seconds, peak in steps)
    out = bench("model_speed.py", "--attention", "--size", "64", "--steps", "1", "--attention-frames", "2", "4")
    assert [row[0] for row in table_rows(out)[1:]] == ["2", "4"], out


@pytest.mark.documents(".venv/bin/python benchmarks/stage_throughput.py --size 512 --frames 24")
def test_stage_throughput_times_every_stage():
    small = ("--size", "64", "--frames", "4", "--model-size", "64", "--model-frames", "4", "--steps", "1")
    out = bench("stage_throughput.py", *small, "--ddim-steps", "3")
    for stage in ("frames", "segment", "pose", "offset", "stage1", "stage2", "invert", "sample", "evaluate"):
        assert re.search(rf"^{stage}\b.*: [\d.]+ s", out, re.M), (stage, out)


@pytest.mark.documents(".venv/bin/python benchmarks/partial_views.py --cases 6 --size 256")
def test_partial_views_measures_each_view():
    out = bench("partial_views.py", "--cases", "1", "--size", "128", "--frames", "4")
    for view in ("full", "upper_body", "knees_up", "no_head"):
        assert view in out, (view, out)


@pytest.mark.documents(".venv/bin/python benchmarks/retargeting.py --cases 2 --size 256")
def test_retargeting_compares_the_methods_with_the_ground_truth():
    out = bench("retargeting.py", "--cases", "1", "--size", "128", "--frames", "4")
    for method in ("none", "scale", "bones"):
        assert f"| {method} |" in out, (method, out)


@pytest.mark.documents(".venv/bin/python benchmarks/orchestration.py --cases 80 --fresh 4")
def test_orchestration_measures_dvc_and_prefect_overhead():
    """Two cases and no fresh batch (``--fresh 0``; the batch flow's throughput runs in test_orchestration)."""
    out = bench("orchestration.py", "--cases", "2", "--fresh", "0")
    assert re.search(r"  total [\d.]+ s", out) and "no-op dvc repro --all-pipelines (second)" in out, out
    assert re.search(r"Prefect flow on an up-to-date case \(2 cases in the workspace\): [\d.]+ s", out), out


@pytest.mark.documents(
    ".venv/bin/python benchmarks/sources.py --references 4 --steps 20 --sources 1",
    ".venv/bin/python benchmarks/sources.py --references 4 --steps 20 --sources 20",
)
def test_sources_measures_what_tuning_a_source_once_saves():
    out = bench("sources.py", "--references", "2", "--steps", "1", "--sources", "1")
    assert re.search(r"one source \d+ s, 2 independent cases \d+ s \(ratio [\d.]+\)", out), out
    assert re.search(r"no-op dvc repro --all-pipelines, 2 edits: 1 sources x 2 references [\d.]+ s", out), out


@pytest.mark.documents(".venv/bin/python benchmarks/reliability.py --steps 40")
def test_reliability_injects_faults_and_tabulates_what_the_user_sees():
    """One interrupt (Ctrl-C at stage 1's first checkpoint, then the same command, which resumes) and
    the three refusals; test_reliability checks every fault in detail."""
    out = bench("reliability.py", "--steps", "40", "--faults", "ctrl-c,typo,wrong-value,no-weights")
    rows = {row[0]: row[1:] for row in table_rows(out)[1:]}
    seconds, seen, left, again = rows["Ctrl-C"]
    assert float(seconds) < 30 and left == "0", rows["Ctrl-C"]
    assert seen.startswith("exit 130: `eym-edit: interrupted: stage1 interrupted: at step"), seen
    assert again.startswith("exit 0 in") and "resuming after step" in again, again
    for fault, message in (
        ("`--set sampling.guidance_scal=7.5`", "(did you mean 'sampling.guidance_scale'?) in --set"),
        ("`--set stage1.steps=abc`", "parameter 'stage1.steps' = 'abc' (from --set)"),
        ("`--set model.base=/nonexistent`", "base model: folder /nonexistent does not exist"),
    ):
        _, seen, _, again = rows[fault]
        assert seen.startswith("exit 2:") and message in seen and again.startswith("nothing was created"), rows[fault]


@pytest.mark.documents(
    ".venv/bin/python benchmarks/long_clips.py --cases 6 --frames 48 --steps 30 --out reports/long-clips-quality"
)
def test_long_clips_compares_fused_windows_with_hard_cuts_and_one_window(tmp_path):
    """One 20-frame puppet edit (windows of 8 sharing 2), eym-mini with 1 tuning and 2 DDIM steps: the
    three variants finish; seams are counted where the windows covering a frame change (none in one
    window); every frame pair is in pairs.csv; seams.mp4 shows fused | hard cuts | truth."""
    from eym.media import read_video

    out = bench(
        "long_clips.py", "--first", "1", "--cases", "1", "--frames", "20", "--steps", "1", "--ddim-steps", "2",
        "--set", "window.frames=8", "--set", "window.overlap=2", "--out", str(tmp_path),
    )  # fmt: skip
    assert "3 edits (0 failed)" in out, out[-3000:]
    rows = {row[0]: row[1:] for row in table_rows((tmp_path / "table.md").read_text())[1:]}
    assert rows["fused"][:2] == ["1", "20"] and rows["one_window"][:2] == ["1", "8"], rows
    assert re.fullmatch(r"\d+\.\d\d", rows["fused"][-1]) and rows["one_window"][-1] == "no seams", rows
    pairs = (tmp_path / "pairs.csv").read_text().splitlines()
    seams = [line for line in pairs[1:] if line.endswith(",1")]
    assert len(pairs) == 1 + 19 + 19 + 7 and {line.split(",")[1] for line in seams} == {"fused", "hard_cuts"}
    # windows of 8 sharing 2 start at 0, 6, 12 (the windows change at 5|6, 7|8, 11|12, 13|14); side by side
    # (overlap 0) at 0, 8, 12, the last one ending at the clip's end (7|8, 11|12, 15|16)
    assert [int(line.split(",")[2]) for line in seams if ",fused," in line] == [5, 7, 11, 13]
    assert [int(line.split(",")[2]) for line in seams if ",hard_cuts," in line] == [7, 11, 15]
    assert read_video(tmp_path / "seams.mp4").shape[:3] == (20, 128, 3 * 128)


@pytest.mark.documents(
    ".venv/bin/python benchmarks/full_size_model.py --out build/sd15-random",
    ".venv/bin/python benchmarks/real_scale.py --frames 8 --out reports/real-scale",
    "for n in 32 64 96; do .venv/bin/python benchmarks/real_scale.py --models eym-mini --size 128 --frames $n "
    "--tuning-steps 2 --ddim-steps 3 --out reports/long-clips/frames-$n; done",
)
def test_the_real_scale_models_are_written_and_the_whole_pipeline_measured(tmp_path, tiny_models):
    """full_size_model.py writes SD 1.5 and ControlNet-OpenPose at their real size (fp16, 2.7 GB) as
    diffusers folders; real_scale.py runs eym-edit through all the stages and tabulates each stage's
    time and memory from its log, here with the tiny models in place of the full-size ones (and windows
    shorter than the clip, as the long-clip measurement has)."""
    bench("full_size_model.py", "--out", str(tmp_path / "sd15"))
    written = {str(p.relative_to(tmp_path / "sd15")): p.stat().st_size for p in (tmp_path / "sd15").rglob("*")}
    for part in (
        "base/model_index.json",
        "base/unet/config.json",
        "base/tokenizer/tokenizer.json",
        "controlnet/config.json",
    ):
        assert part in written, sorted(written)
    total = sum(size for name, size in written.items() if name.endswith(".safetensors"))
    assert 2.5e9 < total < 2.9e9, total  # fp16: 2 bytes per parameter of UNet, VAE, text encoder and ControlNet
    models = tiny_models[0].parent
    small = ("--models", str(models), "--size", "64", "--frames", "8", "--tuning-steps", "1", "--ddim-steps", "2")
    tiny_model = ("model.motion_attention_dim=16", "model.motion_attention_heads=2", "model.temporal_head_dim=8")
    tiny_model += ("window.frames=6", "window.overlap=2")  # a long clip's path: 8 frames in 2 windows
    bench("real_scale.py", *small, *(a for s in tiny_model for a in ("--set", s)), "--out", str(tmp_path / "report"))
    figures = json.loads((tmp_path / "report" / "stages.json").read_text())
    assert figures["exit"] == 0 and set(figures["stages"]) >= {"stage1", "stage2", "invert", "sample", "evaluate"}
    assert all(row["seconds"] >= 0 and row["peak_rss_gib"] > 0 for row in figures["stages"].values())
    assert figures["stages"]["stage1"]["seconds"] > 0  # light stages on 64-px frames may log 0.0 s
    assert "| stage1 |" in (tmp_path / "report" / "table.md").read_text()


@pytest.mark.documents(
    ".venv/bin/python benchmarks/planner_calibration.py --out reports/planner",
    ".venv/bin/python benchmarks/planner_calibration.py --out reports/planner --fit-only",
)
def test_planner_calibration_measures_a_run_and_the_plan_predicts_it(tmp_path):
    """The measurements in reports/planner, with eym-mini 128x8 (a configuration kept out of the fit)
    measured again here: the committed calibration is the fit of the committed data, and the plan
    predicts every kept-out configuration's peak memory within 25 %, the fresh one included."""
    from eym_model.planner import CALIBRATION, predict_row

    out, fitted_file = tmp_path / "planner", tmp_path / "fit.json"
    shutil.copy(CALIBRATION, fitted_file)
    where = ("--calibration", str(fitted_file), "--models", str(tmp_path / "sd15"))
    fresh = bench("planner_calibration.py", "--out", str(out), "--only", "mini-128x8", *where)  # nothing to fit
    assert (out / "mini-128x8" / "stages.json").is_file() and "| mini-128x8 | check | stage1 |" in fresh
    for measured in (REPO / "reports" / "planner").iterdir():
        if measured.is_dir() and measured.name != "mini-128x8":
            shutil.copytree(measured, out / measured.name)
    table = bench("planner_calibration.py", "--out", str(out), "--fit-only", *where)
    assert (tmp_path / "sd15" / "base" / "unet" / "config.json").is_file()  # configurations suffice to trace
    committed, fitted = (
        json.loads(CALIBRATION.read_text())["cpu"],
        json.loads((tmp_path / "fit.json").read_text())["cpu"],
    )
    assert fitted["baseline_bytes"] == pytest.approx(committed["baseline_bytes"], rel=0.01)
    assert fitted["scale"] == pytest.approx(committed["scale"], rel=0.01)  # traces vary by garbage collection timing
    rows = json.loads((out / "rows.json").read_text())
    checks = [r for r in rows if r["role"] == "check"]
    assert {r["name"] for r in checks} >= {"mini-128x8", "mini-256x16", "sd15-512x8"}, table
    for row in checks:
        predicted = predict_row(row, committed)[0] / 2**30
        assert abs(predicted / row["peak_gib"] - 1) <= 0.25, (row["name"], row["stage"], predicted, table)
