"""eym-edit plan and the memory check: predictions per model stage before anything runs, and an edit
that cannot fit refused before any stage with the settings that would fit (a budget simulated on CPU).
The planner's accuracy against measured runs: test_benchmarks (planner_calibration.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SD15 = ("--params", "configs/sd15.yaml", "--base-model", "models/sd15", "--controlnet", "models/controlnet-openpose")


@pytest.fixture(scope="module")
def sd15_workspace(tmp_path_factory, puppet_case):
    """A DVC workspace with SD 1.5's and ControlNet-OpenPose's configuration files in models/ (no weights:
    planning reads configurations only) and a user's clips me.mp4 and dance.mp4."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import full_size_model

    root = tmp_path_factory.mktemp("plan")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    for name in ("stages", "eym", "puppet_world", "eym_model", "flows", "configs"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "models").mkdir()
    base, controlnet = full_size_model.write_configs(root / "configs-only")
    base.rename(root / "models" / "sd15")
    controlnet.rename(root / "models" / "controlnet-openpose")
    shutil.copy(puppet_case / "source.mp4", root / "me.mp4")
    shutil.copy(puppet_case / "reference.mp4", root / "dance.mp4")
    return root


def eym_edit(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=root, capture_output=True, text=True, env=env)


@pytest.mark.documents(
    "eym-edit plan --source me.mp4 --params configs/sd15.yaml --base-model models/sd15 "
    "--controlnet models/controlnet-openpose",
    "eym-edit plan --params configs/sd15.yaml --base-model models/sd15 --controlnet models/controlnet-openpose "
    "--set frames.count=24 --device cuda --memory-budget 24GiB --json",
)
def test_plan_predicts_each_model_stage_on_this_machine_and_for_a_gpu(sd15_workspace):
    here = eym_edit(sd15_workspace, "plan", "--source", "me.mp4", *SD15)
    assert here.returncode in (0, 1), here.stderr
    table = {line.split()[0]: line.split() for line in here.stdout.splitlines()}
    assert {"stage1", "stage2", "invert", "sample", "edit"} <= set(table), here.stdout
    assert "512x512, 8 frames, on cpu" in here.stdout
    peaks = {stage: float(table[stage][1]) for stage in ("stage1", "stage2", "invert", "sample")}
    # SD 1.5 at 512 px, 8 frames, fp32 on a CPU: 5.5 GiB of weights, measured peaks 13-15 GiB
    assert all(6 < peak < 25 for peak in peaks.values()), peaks
    assert table["stage1"][4] == "300" and table["invert"][4] == "50"  # configs/sd15.yaml's steps
    verdict = here.stdout + here.stderr
    assert ("memory: the model stages' peak is predicted" in verdict) == (here.returncode == 0), verdict

    gpu = eym_edit(
        sd15_workspace,
        "plan",
        *SD15,
        "--set",
        "frames.count=24",
        "--device",
        "cuda",
        "--memory-budget",
        "24GiB",
        "--json",
    )
    plans = json.loads(gpu.stdout)  # the verdict goes to stderr with --json
    assert set(plans) == {"stage1", "stage2", "invert", "sample"}, plans
    assert all(p["peak_bytes"] > 2.5 * 2**30 and p["seconds_per_step"] > 0 for p in plans.values())
    fits = max(p["peak_bytes"] for p in plans.values()) <= 24 * 2**30
    assert gpu.returncode == (0 if fits else 1), gpu.stdout + gpu.stderr


def test_run_refuses_an_edit_that_does_not_fit_before_any_stage_and_names_what_fits(sd15_workspace):
    """A 12 GiB budget (a GPU's, simulated on this CPU) for SD 1.5 at 512 px and 8 frames: refused in
    seconds, nothing created, and the settings that fit named; a budget it fits passes the check."""
    start = time.perf_counter()
    refused = eym_edit(
        sd15_workspace, "run", "--source", "me.mp4", "--reference", "dance.mp4", *SD15, "--memory-budget", "12GiB"
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert time.perf_counter() - start < 120
    assert "the edit would need about" in refused.stderr and "is in --memory-budget" in refused.stderr
    assert "Settings that fit: --set frames.count=" in refused.stderr or "--set frames.width=" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (sd15_workspace / "data" / "cases").exists() and not (sd15_workspace / "data" / "manifest.yaml").exists()

    bad = eym_edit(sd15_workspace, "plan", *SD15, "--memory-budget", "lots")
    assert bad.returncode == 2 and "--memory-budget must be auto, none or a size" in bad.stderr


def test_a_plan_is_traced_once_and_traced_again_when_the_model_changes(sd15_workspace, tmp_path):
    """The trace cache: the same plan again reads its four stages back (same figures, no trace written
    again); a changed network configuration is traced anew."""
    cache = {"EYM_CACHE": str(tmp_path / "cache")}
    first = eym_edit(sd15_workspace, "plan", *SD15, "--json", env=cache)
    traces = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "traces").glob("*.json")}
    assert len(traces) == 4, first.stdout + first.stderr
    again = eym_edit(sd15_workspace, "plan", *SD15, "--json", env=cache)
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "traces").glob("*.json")} == traces  # none rewritten

    changed = tmp_path / "sd15"
    shutil.copytree(sd15_workspace / "models" / "sd15", changed)
    text_config = json.loads((changed / "text_encoder" / "config.json").read_text())
    (changed / "text_encoder" / "config.json").write_text(json.dumps({**text_config, "num_hidden_layers": 6}))
    other = eym_edit(sd15_workspace, "plan", *SD15[:3], str(changed), *SD15[4:], "--json", env=cache)
    assert len(list((tmp_path / "cache" / "traces").glob("*.json"))) == 8, other.stderr
    shallower = json.loads(other.stdout)
    assert shallower["stage2"]["peak_bytes"] < json.loads(first.stdout)["stage2"]["peak_bytes"]


def test_a_long_clip_that_does_not_fit_is_offered_a_smaller_window(sd15_workspace, tmp_path):
    """A 48-frame clip runs 16 frames at a time: fewer frames would not lower the peak, a smaller
    window does, so the settings that fit name window.frames (its overlap scaled), not frames.count."""
    models = REPO / "models" / "eym-mini"
    mini = ("--base-model", str(models / "base"), "--controlnet", str(models / "controlnet"))
    cache = {"EYM_CACHE": str(tmp_path / "cache")}

    def peak(*settings: str) -> int:
        planned = eym_edit(sd15_workspace, "plan", *mini, "--set", "frames.count=48", *settings, "--json", env=cache)
        return max(p["peak_bytes"] for p in json.loads(planned.stdout).values())

    whole, small = peak(), peak("--set", "window.frames=8", "--set", "window.overlap=2")
    assert small < whole
    budget = str((whole + small) // 2)
    refused = eym_edit(sd15_workspace, "plan", *mini, "--set", "frames.count=48", "--memory-budget", budget, env=cache)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    fits = refused.stderr.split("Settings that fit:")[1]
    assert "--set window.frames=8 --set window.overlap=2" in fits and "frames.count" not in fits, fits
