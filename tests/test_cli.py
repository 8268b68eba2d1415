"""eym-edit's command line: documented options, parameter overrides, clean errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flows.cli import build_parser
from flows.overrides import overrides_from


def _eym_edit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_documents_every_option():
    result = _eym_edit("run", "--help")
    assert result.returncode == 0
    for option in (
        "--source",
        "--reference",
        "--prompt",
        "--ground-truth",
        "--base-model",
        "--controlnet",
        "--pose-backend",
        "--annotator",
        "--segmentation-backend",
        "--params",
        "--set",
        "--retries",
        "--gpus",
        "--cases-root",
        "--workspace",
        "--manifest",
        "--id",
        "--memory-budget",
    ):
        assert option in result.stdout, option
    for command in ("run", "preview", "plan", "case", "batch", "serve"):
        assert command in _eym_edit("--help").stdout


def test_overrides_from_files_set_and_weight_options(tmp_path):
    (tmp_path / "extra.yaml").write_text("model: {base: ./sd15}\nstage1: {steps: 7}\n")
    args = build_parser().parse_args(
        [
            "run",
            "--source",
            "a.mp4",
            "--reference",
            "b.mp4",
            "--params",
            str(tmp_path / "extra.yaml"),
            "--set",
            "stage1.steps=200",
            "--set",
            "sampling.guidance_scale=7.5",
            "--set",
            "stage2.trainable=[temporal]",
            "--controlnet",
            "/models/cn",
            "--pose-backend",
            "openpose",
        ]
    )
    params = overrides_from(args)
    assert params["model"] == {"base": str(tmp_path / "sd15"), "controlnet": "/models/cn"}
    assert params["stage1"]["steps"] == 200 and params["sampling"]["guidance_scale"] == 7.5
    assert params["stage2"]["trainable"] == ["temporal"] and params["pose"]["backend"] == "openpose"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "--source", "/missing.mp4", "--reference", "/also-missing.mp4"],
            "source file not found: /missing.mp4",
        ),
        (["batch", "/missing/manifest.yaml"], "manifest not found"),
        (["case", "/missing/case"], "not inside a DVC workspace"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    result = _eym_edit(*args, cwd=tmp_path if args[0] == "case" else None)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_progress_of_a_resumed_run_times_only_its_own_steps(caplog, monkeypatch):
    import logging

    from eym import progress

    clock = iter([100.0, 110.0])  # started, then 10 s later
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO):
        bar = progress.Progress(100, "stage1 tuning", initial=80, unit="step")
        bar.update(10)  # 10 steps in 10 s, resumed after step 80
    assert "90/100 (1.00 s/step, 10 s left)" in caplog.text
