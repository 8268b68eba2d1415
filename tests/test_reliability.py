"""Stopping and configuring safely, through eym-edit as a user runs it: Ctrl-C, SIGTERM and kill -9
leave nothing running and lose nothing; bad parameters and missing weights fail before any stage;
concurrent manifest writers; leftover checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from sandbox.workspace import TINY_CASE_PARAMS as TINY
from sandbox.workspace import make_workspace, start_eym_edit

SLOW_TUNING = {**TINY, "stage1": {"steps": 40, "checkpoint_every": 2}}  # long enough to be interrupted


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    root = make_workspace(tmp_path_factory.mktemp("reliability"), [("dance", "wave")], models=tiny_models)
    (root / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (root / "inputs" / "slow.yaml").write_text(yaml.safe_dump(SLOW_TUNING))
    return root


def run_args(case_id: str, params: str = "inputs/slow.yaml", *extra: str) -> list[str]:
    return [
        "run",
        "--source",
        "inputs/p0/source.mp4",
        "--reference",
        "inputs/p0/reference.mp4",
        "--prompt",
        "a person",
        "--params",
        params,
        "--id",
        case_id,
        *extra,
    ]


def descendants_of_run(pid: int) -> list[psutil.Process]:
    """Every process started on behalf of eym-edit ``pid`` (they carry its pid in their environment)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("EYM_SUPERVISOR_PID") == str(pid) or proc.pid == pid:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def source_of(case: Path, timeout: float = 300) -> Path:
    """The source folder of an edit folder, once eym-edit has created it."""
    wait_for(lambda: (case / "case.yaml").is_file(), timeout, f"{case} to be created")
    from stages.common import source_dir

    return source_dir(case)


def nothing_left(pid: int, timeout: float = 20.0) -> None:
    def gone():
        return not [p for p in descendants_of_run(pid) if p.status() != psutil.STATUS_ZOMBIE]

    wait_for(gone, timeout, f"the processes of eym-edit {pid} to end: {descendants_of_run(pid)}")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_tuning_stops_everything_and_keeps_the_checkpoint(workspace, signum, code):
    """Both signals stop the same way, leaving the checkpoint; that the same command then resumes from
    it and finishes is shown by test_benchmarks' reliability run (Ctrl-C, then the same command)."""
    case = workspace / "data" / "cases" / f"stop-{signum.name.lower()}"
    proc = start_eym_edit(workspace, *run_args(case.name, "inputs/slow.yaml", "--source-prompt", signum.name))
    source = source_of(case)
    checkpoint = source / "stage1.ckpt" / "checkpoint.pt"
    wait_for(lambda: checkpoint.exists() or proc.poll() is not None, 600, "the first stage-1 checkpoint")
    assert proc.poll() is None, proc.communicate()
    started = time.time()
    os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C (or `timeout`) does to the job
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err[-2000:]
    assert time.time() - started < 30
    last = err.strip().splitlines()[-1]
    assert "stage1 interrupted: at step" in last and "the same command resumes from step" in last, err[-2000:]
    assert "Traceback" not in err
    nothing_left(proc.pid)
    assert checkpoint.exists() and not (source / "stage1" / "weights.safetensors").exists()


@pytest.mark.slow
def test_kill_9_of_eym_edit_leaves_no_orphans_and_a_rerun_works_at_once(workspace):
    case = workspace / "data" / "cases" / "killed"
    proc = start_eym_edit(workspace, *run_args(case.name, "inputs/slow.yaml", "--source-prompt", "killed"))
    checkpoint = source_of(case) / "stage1.ckpt" / "checkpoint.pt"
    wait_for(lambda: checkpoint.exists() or proc.poll() is not None, 600, "the first stage-1 checkpoint")
    helpers = [p for p in descendants_of_run(proc.pid) if p.pid != proc.pid]
    assert helpers, "no stage or server process was found"
    os.kill(proc.pid, signal.SIGKILL)  # eym-edit alone
    proc.communicate()
    nothing_left(proc.pid, timeout=30)

    again = start_eym_edit(workspace, *run_args(case.name, "inputs/slow.yaml", "--source-prompt", "killed"))
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    assert "is busy" not in err and (case / "eval" / "metrics.json").is_file()
    assert "resuming after step" in (checkpoint.parent.parent / "logs" / "stage1.log").read_text()


@pytest.mark.slow
def test_a_dead_prefect_server_stops_the_run_in_seconds_and_the_same_command_resumes(workspace):
    case = workspace / "data" / "cases" / "no-server"
    args = run_args(case.name, "inputs/slow.yaml", "--source-prompt", "no server")
    proc = start_eym_edit(workspace, *args)
    checkpoint = source_of(case) / "stage1.ckpt" / "checkpoint.pt"
    wait_for(lambda: checkpoint.exists() or proc.poll() is not None, 600, "the first stage-1 checkpoint")
    server = [p for p in descendants_of_run(proc.pid) if "flows.prefect_server" in " ".join(p.cmdline())]
    assert server and proc.poll() is None, proc.communicate()
    started = time.time()
    server[0].kill()
    out, err = proc.communicate(timeout=120)
    assert time.time() - started < 30, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in err and "ConnectError" not in err, err[-3000:]
    assert last.startswith("eym-edit: the temporary Prefect server stopped (killed by SIGKILL)"), err[-2000:]
    assert "the same command resumes" in last
    nothing_left(proc.pid)
    again = start_eym_edit(workspace, *args)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    assert "resuming after step" in (checkpoint.parent.parent / "logs" / "stage1.log").read_text()


def test_a_second_eym_edit_on_a_running_case_says_who_holds_it(workspace):
    from flows.locks import CaseLock

    case = workspace / "data" / "cases" / "held"
    case.mkdir(parents=True)
    case.joinpath("dvc.yaml").write_text("stages: {}\n")
    models = {"base": str(workspace / "models" / "base"), "controlnet": str(workspace / "models" / "controlnet")}
    case.joinpath("params.yaml").write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], **models}}))
    with CaseLock(case):
        other = start_eym_edit(workspace, "case", str(case))
        out, err = other.communicate(timeout=120)
    assert other.returncode == 2
    assert "is being run by eym-edit (pid" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--set", "sampling.guidance_scal=7.5"],
            "unknown parameter 'sampling.guidance_scal' (did you mean 'sampling.guidance_scale'?) in --set",
        ),
        (["--set", "stage1.stepz=10"], "did you mean 'stage1.steps'?"),
        (["--set", "foo.bar=1"], "unknown parameter 'foo.bar'"),
        (["--set", "stage1.steps=abc"], "parameter 'stage1.steps' = 'abc' (from --set)"),
        (["--set", "model.spatial_attention=bogus"], "'rca', 'frame', 'sparse_causal' or 'full'"),
        (["--set", "frames.count=-1"], "parameter 'frames.count' = -1 (from --set): input should be greater"),
        (["--set", "window.overlap=16"], "'window.overlap' = 16 (from --set): must be less than window.frames (16)"),
        (["--set", "model.base=/nonexistent"], "base model: folder /nonexistent does not exist"),
        (["--set", "sampling.steps=3"], "'sampling.steps' = 3 (from --set) must equal 'inversion.steps' = 2 (from"),
        (["--pose-backend", "openpose", "--annotator", "/no/annotator"], "OpenPose annotator '/no/annotator'"),
        (["--set", "model.device=cuda:63"], "model.device is cuda:63, but this machine has"),
        (["--set", "model.base=./models/cut"], "diffusion_pytorch_model.safetensors: "),
        (["--set", "model.controlnet=./models/garbled"], "config.json: Expecting"),
    ],
)
def test_bad_parameters_and_missing_weights_fail_before_any_stage(workspace, extra, message):
    """Each fails in seconds, before any stage: a typo, a bad value, missing weights, a GPU the machine
    lacks, a UNet cut short (an unfinished copy), a ControlNet config that does not parse."""
    models = workspace / "models"
    if not (models / "cut").exists():
        shutil.copytree(models / "base", models / "cut")
        unet = models / "cut" / "unet" / "diffusion_pytorch_model.safetensors"
        unet.write_bytes(unet.read_bytes()[: unet.stat().st_size - 100])
        shutil.copytree(models / "controlnet", models / "garbled")
        (models / "garbled" / "config.json").write_text('{"_class_name": "ControlNetModel", ')
    case_id = f"bad-{abs(hash(tuple(extra))) % 10**6}"
    started = time.time()
    proc = start_eym_edit(workspace, *run_args(case_id, "inputs/tiny.yaml", *extra))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert message in err and "Traceback" not in err
    assert time.time() - started < 30
    assert not (workspace / "data" / "cases" / case_id).exists()  # nothing created, no stage ran


def test_a_bad_value_in_a_params_file_names_the_file(workspace):
    bad = workspace / "inputs" / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "offset": {"anchor": "elbow"}}))
    proc = start_eym_edit(workspace, *run_args("bad-file", "inputs/bad.yaml"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and f"parameter 'offset.anchor' = 'elbow' (from {bad})" in err


def test_concurrent_writers_keep_every_manifest_row(tmp_path):
    manifest = tmp_path / "manifest.yaml"
    code = (
        "import sys; from pathlib import Path; from flows.new_cases import add_to_manifest; "
        "add_to_manifest(Path(sys.argv[1]), {'id': sys.argv[2], 'source': 's.mp4', 'reference': 'r.mp4'})"
    )
    repo = Path(__file__).resolve().parents[1]
    writers = [subprocess.Popen([sys.executable, "-c", code, str(manifest), f"case-{i}"], cwd=repo) for i in range(8)]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    rows = yaml.safe_load(manifest.read_text())["cases"]
    assert sorted(r["id"] for r in rows) == sorted(f"case-{i}" for i in range(8))


@pytest.mark.slow
def test_a_leftover_checkpoint_goes_when_the_output_is_restored_from_the_run_cache(workspace):
    case = workspace / "data" / "cases" / "cached"
    # the source of the SIGINT test above, already tuned when this test runs after it (else tuned here)
    args = run_args(case.name, "inputs/slow.yaml", "--source-prompt", "SIGINT")
    first = start_eym_edit(workspace, *args)
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    import shutil

    source = source_of(case)
    shutil.rmtree(source / "stage1")  # DVC will restore it from its run cache, without running stage 1
    (source / "stage1.ckpt").mkdir()
    (source / "stage1.ckpt" / "checkpoint.pt").write_bytes(b"left over by an interrupted run")
    again = start_eym_edit(workspace, "case", str(case))
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    assert (source / "stage1" / "weights.safetensors").is_file() and not (source / "stage1.ckpt").exists()
