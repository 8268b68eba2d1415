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

from flows.cases import create_cases
from flows.registry import EDIT_STAGE_NAMES, SOURCE_STAGE_NAMES
from sandbox.workspace import TINY_CASE_PARAMS as TINY
from sandbox.workspace import make_workspace, write_manifest

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
    """``dvc repro`` of an edit's pipeline; returns the stages that ran: "source/<stage>" or "<stage>"."""
    from flows.stage_task import stage_environment

    out = subprocess.run(
        DVC + ["repro", f"data/cases/{case}/dvc.yaml"],
        cwd=workspace,
        capture_output=True,
        text=True,
        env=stage_environment(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ran = re.findall(r"Running stage 'data/(cases|sources)/[^:]+:(\w+)'", out.stdout)
    return {f"source/{stage}" if kind == "sources" else stage for kind, stage in ran}


def set_param(folder: Path, section: str, key: str, value) -> None:
    path = folder / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(params))


def set_case_param(workspace: Path, case: str, section: str, key: str, value) -> None:
    set_param(workspace / "data" / "cases" / case, section, key, value)


ALL = {f"source/{s}" for s in SOURCE_STAGE_NAMES} | set(EDIT_STAGE_NAMES)


def task_runs(name: str) -> int:
    """How many task runs of this name the Prefect API has recorded."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        return len(client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name]))))


def test_dvc_repro_of_an_edit_brings_its_source_up_to_date_and_reruns_only_what_changed(workspace):
    from stages.common import source_dir

    manifest_path = manifest(workspace, "dvc", {"a": "p0", "a2": ("p0", "p1"), "b": "p1"})
    cases = create_cases(manifest_path, workspace / "data" / "cases", workspace)
    assert [c.name for c in cases] == ["a", "a2", "b"]
    assert source_dir(cases[0]) == source_dir(cases[1]) != source_dir(cases[2])  # one source, two edits
    assert dvc_repro(workspace, "a") == ALL
    assert dvc_repro(workspace, "a2") == set(EDIT_STAGE_NAMES)  # the tuned source is reused
    assert dvc_repro(workspace, "b") == ALL
    lock_b = (workspace / "data" / "cases" / "b" / "dvc.lock").read_text()

    set_case_param(workspace, "a", "sampling", "eta", 0.5)  # an edit's sampling: its sampling and evaluation
    assert dvc_repro(workspace, "a") == {"sample", "evaluate"}
    assert dvc_repro(workspace, "a2") == set()
    set_param(source_dir(cases[0]), "stage2", "steps", 3)  # the source's tuning: every edit of it samples again
    assert dvc_repro(workspace, "a") == {"source/stage2", "source/invert", "sample", "evaluate"}
    assert dvc_repro(workspace, "a2") == {"sample", "evaluate"}
    assert dvc_repro(workspace, "b") == set()
    assert (workspace / "data" / "cases" / "b" / "dvc.lock").read_text() == lock_b
    metrics = json.loads((workspace / "data" / "cases" / "a" / "eval" / "metrics.json").read_text())
    assert metrics["psnr"] is not None and metrics["clip_ta"] is None  # no CLIP weights: unavailable, not 0

    config = workspace / "models" / "controlnet" / "config.json"  # new weights in the same folder (a retrained
    config.write_text(config.read_text() + "\n")  # eym-mini, say): what the model made is made again, nothing else
    ran = dvc_repro(workspace, "b")
    assert {"source/stage1", "source/stage2", "source/invert", "sample"} <= ran
    assert not ran & {"source/frames", "source/segment", "source/pose", "reference", "reference_pose", "offset"}


def test_flow_tunes_a_shared_source_once_and_reruns_only_what_changed(workspace, prefect_harness):
    from flows.pipeline import edit_case, edit_cases

    path = manifest(workspace, "flow", {"c": "p2", "c2": ("p2", "p3"), "c-wo-rca": "p2"})
    rows_in = yaml.safe_load(path.read_text())  # c's edit as another variant: other tuning, same retargeting
    rows_in["cases"][-1].update(
        variant="wo_rca", params=dict(TINY, model=dict(TINY["model"], spatial_attention="frame"))
    )
    path.write_text(yaml.safe_dump(rows_in))
    cases = create_cases(path, workspace / "data" / "cases", workspace)
    rows = edit_cases([str(c) for c in cases])
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"] and rows[0]["source"] == rows[1]["source"]
    # the source's frames, segment and pose come from DVC's run cache: the prepared source computed them
    assert set(rows[0]["ran"]) == {f"source {s}" for s in SOURCE_STAGE_NAMES[3:]} | set(EDIT_STAGE_NAMES)
    assert task_runs(f"{rows[0]['source']}/stage1") == 1  # one tuning for both edits
    assert task_runs("c/sample") == task_runs("c2/sample") == 1
    variant = rows[2]  # tuned again, but its retargeting is c's, from the run cache
    assert variant["source"] != rows[0]["source"] and variant["ran"][:3] == [
        "source stage1",
        "source stage2",
        "source invert",
    ]
    assert not {"reference", "reference_pose", "offset"} & set(variant["ran"])
    aligned = [(workspace / "data/cases" / c / "offset/aligned.parquet").read_bytes() for c in ("c", "c-wo-rca")]
    assert aligned[0] == aligned[1]
    set_case_param(workspace, "c", "sampling", "eta", 0.5)
    second = edit_case(str(cases[0]))
    assert second["ran"] == ["sample", "evaluate"]
    assert second["stages_cached"] == len(SOURCE_STAGE_NAMES) + 3


def test_batch_records_a_failed_case_and_goes_on(workspace, prefect_harness, browser):
    import pyarrow.parquet as pq
    from conftest import open_page

    from flows.pipeline import edit_batch, with_runner

    cases = {"d": "p0", "e": "p1", "f": "broken", "f2": ("broken.mp4", "p1"), "i-wo-rca": "p4"}
    path = manifest(workspace, "batch", cases)
    rows_in = yaml.safe_load(path.read_text())
    rows_in["cases"][-1].update(
        variant="wo_rca", params=dict(TINY, model=dict(TINY["model"], spatial_attention="frame"))
    )
    path.write_text(yaml.safe_dump(rows_in))
    report = workspace / "reports" / "batch"
    rows = with_runner(edit_batch, workers=2)(str(path), str(workspace / "data" / "cases"), str(report))
    by_case = {r["case"]: r for r in rows}
    assert [c for c, r in by_case.items() if r["status"] == "ok"] == ["d", "e", "i-wo-rca"]
    for case in ("f", "f2"):  # a failed source fails each of its edits, with the source's reason
        assert by_case[case]["status"] == "failed" and by_case[case]["failed_stage"] == "source frames"
        assert "unreadable video" in by_case[case]["reason"] and "broken.mp4" in by_case[case]["reason"]

    table = pq.read_table(report / "metrics.parquet").to_pylist()
    assert {r["case"]: r["status"] for r in table} == {c: by_case[c]["status"] for c in cases}
    assert all(r["psnr"] is not None for r in table if r["status"] == "ok")
    summary = (report / "summary.md").read_text()
    assert "| full | 2 | 2 |" in summary and "| wo_rca | 1 | 0 |" in summary

    page, errors = open_page(browser, report / "report.html")
    assert errors == []
    assert page.locator("#cases tbody tr").count() == 5
    assert page.locator(".grid img").count() == 3
    page.locator("#cases").get_by_role(
        "columnheader", name="PSNR (dB)", exact=True
    ).click()  # sorting works without errors
    assert errors == []

    import shutil  # the report is a folder of its own: copied elsewhere, its grid still shows every edit

    moved = shutil.copytree(report, workspace.parent / "moved-report")
    page, errors = open_page(browser, moved / "report.html")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    assert page.evaluate("[...document.querySelectorAll('.grid img')].map(i => i.naturalWidth > 0)") == [True] * 3
    links = page.evaluate("[...document.querySelectorAll('#cases a')].map(a => a.getAttribute('href'))")
    assert all(h.startswith("../../data/cases/") for h in links), links  # relative inside the workspace


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


@pytest.mark.documents(
    "prefect server start",
    "export PREFECT_API_URL=http://127.0.0.1:4200/api",
    "eym-edit serve",
    "prefect deployment run 'edit-case/local' --param case_dir=$PWD/data/cases/<id>",
    "prefect deployment run 'edit-batch/local' --param manifest=$PWD/data/benchmark/manifest.yaml "
    "--param cases_root=$PWD/data/cases --param report_dir=$PWD/reports/benchmark",
)
def test_deployment_runs_against_a_local_server(workspace):
    import urllib.request

    deploy = manifest(workspace, "deploy", {"a": "p0"})
    create_cases(deploy, workspace / "data" / "cases", workspace)
    port = _free_port()
    env = dict(
        os.environ,
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
            [str(Path(sys.executable).parent / "eym-edit"), "serve"],
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
        batch = subprocess.run(
            prefect
            + ["deployment", "run", "edit-batch/local", "--param", f"manifest={deploy}"]
            + ["--param", f"cases_root={workspace / 'data' / 'cases'}"]
            + ["--param", f"report_dir={workspace / 'reports' / 'deployed'}", "--watch", "--watch-timeout", "300"],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert batch.returncode == 0 and "Completed" in batch.stdout, batch.stdout + batch.stderr
        assert (workspace / "reports" / "deployed" / "report.html").is_file()
    finally:
        for proc in (served, server):
            if proc is not None:
                _stop(proc)


@pytest.mark.documents(
    "dask scheduler",
    "dask worker tcp://head:8786 --nthreads 1",
    "dask worker tcp://head:8786 --nthreads 1 --resources GPU=1",
    "eym-edit batch data/benchmark/manifest.yaml --dask-address tcp://head:8786 --report reports/benchmark",
)
def test_dask_runner_sends_gpu_stages_to_gpu_workers(workspace, prefect_harness):
    import pyarrow.parquet as pq
    from prefect.settings import PREFECT_API_URL

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
        batch = subprocess.run(
            [str(Path(sys.executable).parent / "eym-edit"), "batch", str(path), "--dask-address", address]
            + ["--report", "reports/dask"],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert batch.returncode == 0 and "2 of 2 cases finished" in batch.stdout, batch.stdout + batch.stderr
        for row in pq.read_table(workspace / "reports" / "dask" / "metrics.parquet").to_pylist():
            workers = dict(row["workers"])
            gpu = ("source stage1", "source stage2", "source invert", "sample")
            assert {workers[s] for s in gpu} == {"gpu-worker"}
            assert set(workers.values()) <= {"cpu-worker", "gpu-worker"}
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.mark.documents(
    'eym-edit run --source me.mp4 --reference dance.mp4 --reference jump.mp4 --source-prompt "a man in a red shirt '
    'walking" --prompt "a man in a red shirt dancing" --params configs/sd15.yaml --base-model '
    "/models/stable-diffusion-v1-5 --controlnet /models/sd-controlnet-openpose"
)
def test_eym_edit_runs_one_source_with_several_references_and_reuses_it_later(workspace):
    """A still image as the source, two references in one run (one tuning), then a third reference
    with its ground truth and a --set later: the source is reused as it was tuned. The README's command
    line (SD 1.5's configuration and weight options), made small by a layer of tiny settings after it."""
    (workspace / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    weights = ["--base-model", "models/base", "--controlnet", "models/controlnet"]  # relative: made absolute

    def eym_edit(*args):
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "--source", "inputs/p4/source.png"]
            + ["--source-prompt", "a person", "--prompt", "a person moving"]
            + ["--params", "configs/sd15.yaml", *weights, "--params", "inputs/tiny.yaml", *args],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    long_prompt = "a person moving " + "slowly " * 80  # longer than the text encoder reads: sampling warns
    first = eym_edit(
        *("--reference", "inputs/p1/reference.mp4", "--reference", "inputs/p2/reference.mp4", "--id", "many"),
        *("--prompt", long_prompt),
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    cases = [workspace / "data" / "cases" / f"many-{k}" for k in (1, 2)]
    assert all((c / "sample" / "edited.mp4").is_file() for c in cases)
    sources = {yaml.safe_load((c / "case.yaml").read_text())["source_dir"] for c in cases}
    assert len(sources) == 1 and first.stdout.count("stage1, stage2, invert ran for this edit") == 1
    # not a terminal: a plain line per stage, none of DVC's advice or Prefect's run lines (--verbose has them)
    shown = (first.stdout + first.stderr).splitlines()
    assert re.search(r"source-\w+ stage1: ran in [\d.]+ s, 2 steps, loss [\d.]+", first.stdout), first.stdout
    assert re.search(r"many-2 sample: ran in [\d.]+ s, 2 steps", first.stdout), first.stdout
    assert re.search(r"many-1 sample: warning: sampling: the prompt has \d+ tokens", first.stdout), first.stdout
    for noise in ("To track the changes with git", "Use `dvc push`", "Task run", "Running stage", "\x1b["):
        assert noise not in first.stdout + first.stderr, noise
    assert len(shown) <= 47, "\n".join(shown)  # 21 stages (5 running), two warnings, outputs, the source's line
    assert (cases[0] / "logs" / "sample.log").is_file()
    progress = json.loads((cases[0] / "logs" / "sample.progress.json").read_text())
    assert progress["task"] == "DDIM sampling" and progress["step"] == progress["total"] > 0

    again = eym_edit(  # the same source and a new motion, with its ground truth: no tuning
        *("--reference", "inputs/p4/reference.mp4", "--ground-truth", "inputs/p4/gt/edit.mp4"),
        *("--set", "sampling.conditioning_scale=0.5", "--id", "mine", "--verbose"),
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reused as tuned and inverted before" in again.stdout
    assert "Running stage 'data/cases/mine/dvc.yaml:sample'" in again.stdout + again.stderr  # --verbose: as before
    assert "measured      PSNR" in again.stdout  # the key metrics under the paths
    code, screen = in_terminal([sys.executable, "-m", "flows.cli", "case", "data/cases/mine"], workspace, env)
    assert code == 0, screen[-3000:]
    assert "\x1b[" in screen and re.search(r"mine +sample +.*up to date", screen), screen[-3000:]  # a live table
    assert "Task run" not in screen and "measured      PSNR" in screen
    case = workspace / "data" / "cases" / "mine"
    for rel in ("sample/edited.mp4", "sample/comparison.mp4", "eval/metrics.json", "eval/report.html"):
        assert f"{case / rel}" in again.stdout and (case / rel).is_file(), rel
    assert json.loads((case / "eval" / "metrics.json").read_text())["psnr"] is not None  # the ground truth is used
    row = yaml.safe_load((workspace / "data" / "manifest.yaml").read_text())["cases"][-1]
    assert row["id"] == "mine" and row["params"]["sampling"]["conditioning_scale"] == 0.5
    assert row["params"]["model"]["base"] == str(workspace / "models" / "base")  # paths resolved
    assert row["params"]["stage1"]["lr"] == 3.0e-5  # configs/sd15.yaml, under the tiny layer
    from stages.common import source_dir

    assert (case / "dvc.yaml").is_file() and (source_dir(case) / "dvc.yaml").is_file()
    assert yaml.safe_load((source_dir(case) / "case.yaml").read_text())["source"].endswith("source.png")


@pytest.mark.documents(
    "eym-edit run --source me.mp4 --reference dance.mp4 --set frames.count=null --set frames.stride=1"
)
def test_a_whole_clip_is_tuned_inverted_and_sampled_in_windows(workspace):
    """All 24 frames of a source (tiny settings, windows of 8 sharing 2): each tuning step on a window,
    the inversion and the sampling in 4 fused windows; the edited video has every frame."""
    from eym.media import read_video
    from stages.common import source_dir

    (workspace / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    command = [sys.executable, "-m", "flows.cli", "run", "--source", "inputs/p1/source.mp4", "--id", "whole"]
    command += ["--reference", "inputs/p1/reference.mp4", "--set", "frames.count=null", "--set", "frames.stride=1"]
    command += ["--params", "inputs/tiny.yaml", "--set", "window.frames=8", "--set", "window.overlap=2"]
    out = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    case = workspace / "data" / "cases" / "whole"
    assert len(read_video(case / "sample" / "edited.mp4")) == 24
    source = source_dir(case)
    for stage in ("stage1", "stage2"):
        assert json.loads((source / stage / "meta.json").read_text())["window_frames"] == 8
        assert "each on a window of 8 of the 24 frames" in (source / "logs" / f"{stage}.log").read_text()
    progress = json.loads((case / "logs" / "sample.progress.json").read_text())  # what the bars show
    assert progress["task"] == "DDIM sampling in 4 windows" and progress["step"] == progress["total"]
    assert re.search(r"whole sample: ran in [\d.]+ s, \d+ steps", out.stdout), out.stdout


def in_terminal(command: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    """A command run in a pseudo-terminal, as a user types it: its exit code and everything it drew."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(cwd)
        os.execvpe(command[0], command, env)
    drawn = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        drawn += chunk
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), drawn.decode(errors="replace")


def stale_stages(workspace: Path, case: str) -> set[str]:
    """The stages of an edit's pipeline and its sources that ``dvc status --with-deps`` finds changed:
    "<stage>" for the edit's, "source/<stage>" and "prepared/<stage>" for its sources' (DVC's Python API)."""
    from dvc.repo import Repo

    with Repo(str(workspace)) as repo:
        status = repo.status(targets=[str(workspace / "data" / "cases" / case / "dvc.yaml")], with_deps=True)
    labels = set()
    for name in status:
        path, stage = name.rsplit(":", 1)
        kind = "" if "data/cases/" in path else "prepared/" if "-prepared-" in path else "source/"
        labels.add(kind + stage)
    return labels


def _other(value):
    """A value of the same kind that differs (DVC only compares; no stage runs with it)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-edited" if isinstance(value, str) else 1


def test_a_hand_edit_of_any_key_or_of_any_code_a_stage_runs_makes_exactly_those_stages_stale(workspace):
    """Every section each stage reads, edited by hand in the edit's, the source's or the prepared
    source's params.yaml (a key the file did not set before), makes exactly those stages stale; so
    does a change in any project file a stage's module imports, directly or not."""
    from flows.registry import EDIT_STAGES, PREPARATION_STAGES, SOURCE_STAGES, code_closure
    from stages.common import read_case

    (case,) = create_cases(manifest(workspace, "keys", {"k": "p0"}), workspace / "data" / "cases", workspace)
    dvc_repro(workspace, "k")
    assert stale_stages(workspace, "k") == set()
    info = read_case(case)
    defaults = yaml.safe_load((workspace / "params.yaml").read_text())
    folders = {"": (case, EDIT_STAGES), "source/": (info.source_dir, SOURCE_STAGES)}
    folders["prepared/"] = (info.prepared_dir, PREPARATION_STAGES)
    for label, (folder, stages) in folders.items():
        original = (folder / "params.yaml").read_text()
        readers = {section: [] for spec in stages for section in (*spec.sections, "prompt")}
        for spec in stages:
            for section in (*spec.sections, "prompt") if spec.uses_prompt else spec.sections:
                readers[section].append(label + spec.name)
        for section, expected in readers.items():
            if not expected:
                continue
            params = yaml.safe_load(original)
            if section == "prompt":
                params["prompt"] += " edited"
            else:
                key = next(k for k, v in defaults[section].items() if not isinstance(v, (dict, list)))
                params[section][key] = _other(params[section].get(key, defaults[section][key]))
            (folder / "params.yaml").write_text(yaml.safe_dump(params))
            try:
                assert stale_stages(workspace, "k") == set(expected), (label, section)
            finally:
                (folder / "params.yaml").write_text(original)
    assert stale_stages(workspace, "k") == set()

    # A stage's code dependencies are its module's import closure: a change in eym/metrics.py (imported by
    # the evaluation alone) makes exactly the evaluation stale, one in eym/skeleton.py (PCK, the
    # retargeting, the pose stages: imported indirectly) every stage that runs it, one in code no stage
    # runs nothing.
    stages = yaml.safe_load((case / "dvc.yaml").read_text())["stages"]
    for spec in EDIT_STAGES:  # the dvc.yaml lists exactly the closure (besides inputs and weights)
        code = {d for d in stages[spec.name]["deps"] if d.startswith("../../../") and d.endswith(".py")}
        closure = {f"../../../{f.relative_to(workspace)}" for f in code_closure(workspace, spec.command_module)}
        assert code == closure, spec.name
    for rel, expected in (
        ("eym/metrics.py", {"evaluate"}),
        ("eym/skeleton.py", {"evaluate", "offset", "reference_pose", "source/pose", "prepared/pose"}),
        ("flows/cli.py", set()),
    ):
        path = workspace / rel
        original = path.read_text()
        path.write_text(original + "\n# changed\n")
        try:
            stale = stale_stages(workspace, "k")
        finally:
            path.write_text(original)
        assert stale == expected if rel != "eym/skeleton.py" else expected <= stale, (rel, stale)


@pytest.mark.documents(
    "eym-puppet benchmark --out data/benchmark --cases 80",
    "eym-puppet benchmark --out data/benchmark --cases 80 --references-per-source 4",
    "eym-edit batch data/benchmark/manifest.yaml --report reports/benchmark --workers 2",
)
def test_puppet_benchmark_then_eym_edit_batch_with_set_finishes_every_new_case(workspace, tmp_path):
    """The README's benchmark workflow on a new manifest: `eym-puppet benchmark` writes the cases,
    `eym-edit batch --params --set` creates, locks and runs them (ids named after the folder)."""
    import pyarrow.parquet as pq

    (workspace / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)

    def command(program, *args, timeout=900):
        """``program`` (a console script of the environment, or python) with ``args``, in the workspace."""
        exe = sys.executable if program == "python" else str(Path(sys.executable).parent / program)
        out = subprocess.run([exe, *args], cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    command(
        *("eym-puppet", "benchmark", "--out", "data/bench", "--cases", "2", "--references-per-source", "2"),
        *("--size", "128", "--frames", "16"),
    )
    out = command(
        *("eym-edit", "batch", "data/bench/manifest.yaml", "--report", "reports/bench", "--workers", "2"),
        *("--params", "inputs/tiny.yaml", "--set", "sampling.eta=0.5"),
    )
    assert "2 of 2 cases finished" in out, out[-3000:]
    ids = ["bench-000-r0", "bench-000-r1"]
    for case in ids:
        params = yaml.safe_load((workspace / "data" / "cases" / case / "params.yaml").read_text())
        assert params["sampling"]["eta"] == 0.5 and params["stage1"]["steps"] == TINY["stage1"]["steps"]
        assert (workspace / "data" / "cases" / case / "eval" / "metrics.json").is_file()
    table = pq.read_table(workspace / "reports" / "bench" / "metrics.parquet").to_pylist()
    assert {r["case"]: r["status"] for r in table} == dict.fromkeys(ids, "ok")
    outside = tmp_path / "report"  # a report written outside the workspace links each case by its absolute URI
    command(
        "python", "-m", "stages.aggregate", "data/bench/manifest.yaml", "--cases", "data/cases", "--out", str(outside)
    )
    page = (outside / "report.html").read_text()
    assert f"href='{(workspace / 'data/cases/bench-000-r0/eval/report.html').as_uri()}'" in page
    assert all((outside / "edits" / f"{case}.gif").is_file() for case in ids)
