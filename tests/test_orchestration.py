"""DVC per case, the Prefect flows, a batch with a corrupt case, a deployment on a real local server,
and the Dask task runner on a local cluster. Tiny models, 128x128 puppet clips, 2-step tuning."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.cases import STAGE_NAMES, create_cases
from flows.sandbox import TINY_CASE_PARAMS as TINY
from flows.sandbox import make_workspace, write_manifest

DVC = [sys.executable, "-m", "dvc"]
MOTIONS = [("dance", "wave"), ("squat", "jump"), ("turn", "arms_raise"), ("wave", "walk_in_place"), ("jump", "dance")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    """A DVC workspace (no git) with the project's code and params, tiny models and five puppet inputs."""
    root = make_workspace(tmp_path_factory.mktemp("workspace"), MOTIONS, models=tiny_models)
    (root / "inputs" / "broken.mp4").write_bytes(b"this is not a video" * 64)
    return root


def manifest(workspace: Path, name: str, cases: dict[str, str]) -> Path:
    return write_manifest(workspace, name, {k: "broken.mp4" if v == "broken" else v for k, v in cases.items()})


def dvc_repro(workspace: Path, case: str) -> set[str]:
    from flows.pipeline import stage_environment

    out = subprocess.run(
        DVC + ["repro", f"data/cases/{case}/dvc.yaml"],
        cwd=workspace,
        capture_output=True,
        text=True,
        env=stage_environment(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return set(re.findall(r"Running stage 'data/cases/[^:]+:(\w+)'", out.stdout))


def set_case_param(workspace: Path, case: str, section: str, key: str, value) -> None:
    path = workspace / "data" / "cases" / case / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(params))


def test_dvc_repro_reruns_only_what_changed(workspace):
    cases = create_cases(manifest(workspace, "dvc", {"a": "p0", "b": "p1"}), workspace / "data" / "cases", workspace)
    assert [c.name for c in cases] == ["a", "b"]
    assert dvc_repro(workspace, "a") == set(STAGE_NAMES)
    assert dvc_repro(workspace, "b") == set(STAGE_NAMES)
    lock_b = (workspace / "data" / "cases" / "b" / "dvc.lock").read_text()

    set_case_param(workspace, "a", "stage2", "steps", 3)
    assert dvc_repro(workspace, "a") == {"stage2", "invert", "sample", "evaluate"}
    assert dvc_repro(workspace, "b") == set()
    assert (workspace / "data" / "cases" / "b" / "dvc.lock").read_text() == lock_b
    metrics = json.loads((workspace / "data" / "cases" / "a" / "eval" / "metrics.json").read_text())
    assert metrics["psnr"] is not None and metrics["clip_ta"] is None  # no CLIP weights: unavailable, not 0


def test_flow_reruns_only_what_changed(workspace, prefect_harness):
    from flows.pipeline import edit_case

    (case,) = create_cases(manifest(workspace, "flow", {"c": "p2"}), workspace / "data" / "cases", workspace)
    first = edit_case(str(case))
    assert first["status"] == "ok" and first["ran"] == list(STAGE_NAMES)
    set_case_param(workspace, "c", "stage2", "steps", 3)
    second = edit_case(str(case))
    assert second["ran"] == ["stage2", "invert", "sample", "evaluate"]
    assert second["stages_cached"] == 5


def test_batch_records_a_failed_case_and_goes_on(workspace, prefect_harness, browser):
    import pyarrow.parquet as pq
    from conftest import open_page

    from flows.pipeline import edit_batch, with_runner

    cases = {"d": "p0", "e": "p1", "f": "broken", "g": "p2", "h": "p3", "i-wo-rca": "p4"}
    path = manifest(workspace, "batch", cases)
    rows_in = yaml.safe_load(path.read_text())
    rows_in["cases"][-1].update(
        variant="wo_rca", params=dict(TINY, model=dict(TINY["model"], spatial_attention="frame"))
    )
    path.write_text(yaml.safe_dump(rows_in))
    report = workspace / "reports" / "batch"
    rows = with_runner(edit_batch, workers=2)(str(path), str(workspace / "data" / "cases"), str(report))
    by_case = {r["case"]: r for r in rows}
    assert [c for c, r in by_case.items() if r["status"] == "ok"] == ["d", "e", "g", "h", "i-wo-rca"]
    assert by_case["f"]["status"] == "failed" and by_case["f"]["failed_stage"] == "frames"
    assert "unreadable video" in by_case["f"]["reason"] and "broken.mp4" in by_case["f"]["reason"]

    table = pq.read_table(report / "metrics.parquet").to_pylist()
    assert {r["case"]: r["status"] for r in table} == {c: by_case[c]["status"] for c in cases}
    assert all(r["psnr"] is not None for r in table if r["status"] == "ok")
    summary = (report / "summary.md").read_text()
    assert "| full | 4 | 1 |" in summary and "| wo_rca | 1 | 0 |" in summary

    page, errors = open_page(browser, report / "report.html")
    assert errors == []
    assert page.locator("#cases tbody tr").count() == 6
    assert page.locator(".grid img").count() == 5
    page.locator("#cases th", has_text="PSNR").click()  # sorting works without errors
    assert errors == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_deployment_runs_against_a_local_server(workspace, tmp_path):
    import urllib.request

    create_cases(manifest(workspace, "deploy", {"a": "p0"}), workspace / "data" / "cases", workspace)
    port = _free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    prefect = [sys.executable, "-m", "prefect"]
    server = subprocess.Popen(
        prefect + ["server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    served = None
    try:

        def healthy():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).status == 200
            except OSError:
                return False

        _wait_for(healthy, 120, "the Prefect server")
        served = subprocess.Popen(
            [sys.executable, "-m", "flows.serve"],
            cwd=workspace,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def deployed():
            out = subprocess.run(prefect + ["deployment", "ls"], env=env, capture_output=True, text=True)
            return "edit-case/local" in out.stdout and "edit-batch/local" in out.stdout

        _wait_for(deployed, 120, "the served deployments")
        run = subprocess.run(
            prefect
            + [
                "deployment",
                "run",
                "edit-case/local",
                "--param",
                f"case_dir={workspace / 'data' / 'cases' / 'a'}",
                "--watch",
                "--watch-timeout",
                "300",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Completed" in run.stdout
    finally:
        for proc in (served, server):
            if proc is not None:
                _stop(proc)


def test_dask_runner_sends_gpu_stages_to_gpu_workers(workspace, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    from flows.pipeline import edit_batch, with_runner

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"]
    procs = [
        subprocess.Popen(
            dask + ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        time.sleep(3)
        procs.append(
            subprocess.Popen(
                worker + ["--name", "cpu-worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=workspace,
            )
        )
        procs.append(
            subprocess.Popen(
                worker + ["--name", "gpu-worker", "--resources", "GPU=1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=workspace,
            )
        )
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        path = manifest(workspace, "dask", {"a": "p0", "b": "p1"})
        rows = with_runner(edit_batch, dask_address=address)(
            str(path), str(workspace / "data" / "cases"), gpu_resource=True
        )
        assert [r["status"] for r in rows] == ["ok", "ok"]
        for row in rows:
            assert {row["workers"][s] for s in ("stage1", "stage2", "invert", "sample")} == {"gpu-worker"}
            assert set(row["workers"].values()) <= {"cpu-worker", "gpu-worker"}
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_eym_edit_run_creates_the_case_and_runs_the_flow(workspace, tmp_path):
    (workspace / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--source",
            "inputs/p3/source.png",
            "--reference",
            "inputs/p3/reference.mp4",
            "--ground-truth",
            "inputs/p3/gt/edit.mp4",
            "--prompt",
            "a person",
            "--params",
            "inputs/tiny.yaml",
            "--set",
            "sampling.steps=3",
            "--set",
            "inversion.steps=3",
            "--id",
            "mine",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    case = workspace / "data" / "cases" / "mine"
    for rel in ("sample/edited.mp4", "sample/comparison.mp4", "eval/metrics.json", "eval/report.html"):
        assert f"{case / rel}" in result.stdout and (case / rel).is_file(), rel
    row = yaml.safe_load((workspace / "data" / "manifest.yaml").read_text())["cases"][0]
    assert row["id"] == "mine" and row["params"]["sampling"]["steps"] == 3 == row["params"]["inversion"]["steps"]
    assert row["params"]["model"]["base"] == str(workspace / "models" / "base")  # --params paths resolved
    assert (case / "dvc.yaml").is_file() and yaml.safe_load((case / "case.yaml").read_text())["source"].endswith(
        "source.png"
    )
