"""Faults injected into eym-edit as a user runs it: what the user sees, how long it takes, what is lost.

    .venv/bin/python benchmarks/reliability.py --steps 40

A throwaway workspace with the tiny models and a 128x128 puppet clip; stage 1 tunes ``--steps`` steps
with a checkpoint every 2. Each fault is injected once: Ctrl-C (SIGINT to the process group) and
SIGTERM during stage 1, then the same command again; kill -9 of eym-edit alone, and of its Prefect
server, then the same command again; Ctrl-C and the checkpoint cut short, then the same command; a
typo in --set, a wrong value, a missing base model, a GPU the machine lacks, a UNet file cut short, a
skeleton file naming joint 30. Prints a Markdown table: the fault, the
seconds until eym-edit exited (or its processes were gone), its last line, and what the rerun did.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import yaml


def eym_edit(
    root: Path, case: str, params: str, *extra: str, reference: str = "inputs/p0/reference.mp4"
) -> subprocess.Popen:
    from sandbox.workspace import start_eym_edit

    args = ["run", "--source", "inputs/p0/source.mp4", "--reference", reference]
    args += ["--prompt", "a person", "--params", params, "--id", case, "--source-prompt", case, *extra]
    return start_eym_edit(root, *args)


def checkpoint_of(root: Path, case: str) -> Path:
    deadline = time.time() + 600
    while not (root / "data" / "cases" / case / "case.yaml").is_file():
        if time.time() > deadline:
            raise TimeoutError(case)
        time.sleep(0.2)
    from stages.common import source_dir

    return source_dir(root / "data" / "cases" / case) / "stage1.ckpt" / "checkpoint.pt"


def descendants(pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("EYM_SUPERVISOR_PID") == str(pid) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def interrupt(root: Path, case: str, how: str) -> dict:
    """Start a run, inject ``how`` at the first stage-1 checkpoint, then rerun the same command."""
    proc = eym_edit(root, case, "inputs/slow.yaml")
    checkpoint = checkpoint_of(root, case)
    while not checkpoint.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{case}: ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    started = time.perf_counter()
    if how == "kill -9 of eym-edit":
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        while descendants(proc.pid):
            time.sleep(0.2)
        seen = "nothing (killed); its stage processes and Prefect server end by themselves"
    elif how == "kill -9 of the Prefect server":
        (server,) = [p for p in descendants(proc.pid) if "flows.prefect_server" in " ".join(p.cmdline())]
        server.kill()
        _, err = proc.communicate(timeout=300)
        seen = f"exit {proc.returncode}: `{last_line(err)}`"
    elif how == "a checkpoint cut short":  # Ctrl-C, then the checkpoint loses its second half
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
        seen = f"exit {proc.returncode} (Ctrl-C), then the checkpoint cut to half its size"
    else:
        os.killpg(proc.pid, signal.SIGINT if how == "Ctrl-C" else signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        seen = f"exit {proc.returncode}: `{last_line(err)}`"
    stopped = time.perf_counter() - started
    left = len(descendants(proc.pid))
    started = time.perf_counter()
    again = eym_edit(root, case, "inputs/slow.yaml")
    _, err = again.communicate(timeout=1800)
    log = (checkpoint.parent.parent / "logs" / "stage1.log").read_text()
    said = ("resuming after step", "cannot be read")
    resumed = next((line.split("INFO ", 1)[-1] for line in log.splitlines() if any(s in line for s in said)), "")
    resumed = resumed.split("WARNING ", 1)[-1]
    rerun = f"exit {again.returncode} in {time.perf_counter() - started:.0f} s; {resumed or 'started over'}"
    return {"fault": how, "seconds": stopped, "seen": seen, "left": left, "rerun": rerun}


def refused(root: Path, case: str, fault: str, *extra: str, **reference) -> dict:
    started = time.perf_counter()
    proc = eym_edit(root, case, "inputs/tiny.yaml", *extra, **reference)
    _, err = proc.communicate(timeout=300)
    created = (root / "data" / "cases" / case).exists()
    return {
        "fault": fault,
        "seconds": time.perf_counter() - started,
        "seen": f"exit {proc.returncode}: `{last_line(err)}`",
        "left": 0,
        "rerun": "case folder created" if created else "nothing was created; no stage ran",
    }


FAULTS = {  # injected in this order
    "ctrl-c": lambda root: interrupt(root, "sigint", "Ctrl-C"),
    "sigterm": lambda root: interrupt(root, "sigterm", "SIGTERM"),
    "kill-9": lambda root: interrupt(root, "killed", "kill -9 of eym-edit"),
    "typo": lambda root: refused(
        root, "typo", "`--set sampling.guidance_scal=7.5`", "--set", "sampling.guidance_scal=7.5"
    ),
    "wrong-value": lambda root: refused(root, "wrong", "`--set stage1.steps=abc`", "--set", "stage1.steps=abc"),
    "no-weights": lambda root: refused(
        root, "noweights", "`--set model.base=/nonexistent`", "--set", "model.base=/nonexistent"
    ),
    "server-kill": lambda root: interrupt(root, "noserver", "kill -9 of the Prefect server"),
    "cut-checkpoint": lambda root: interrupt(root, "cutckpt", "a checkpoint cut short"),
    "cuda-on-cpu": lambda root: refused(root, "cuda", "`--set model.device=cuda:63`", "--set", "model.device=cuda:63"),
    "cut-unet": lambda root: refused(
        root, "cutunet", "a UNet file cut short (`--set model.base=./models/cut`)", "--set", "model.base=./models/cut"
    ),
    "joint-30": lambda root: refused(
        root, "joint30", "a skeleton file naming joint 30", reference="inputs/joint30.parquet"
    ),
}


def broken_inputs(root: Path) -> None:
    """A base model whose UNet weights lost their last 100 bytes, and a skeleton file with joint 30."""
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(root / "models" / "base", root / "models" / "cut")
    unet = root / "models" / "cut" / "unet" / "diffusion_pytorch_model.safetensors"
    unet.write_bytes(unet.read_bytes()[:-100])
    table = pq.read_table(root / "inputs" / "p0" / "gt" / "reference_keypoints.parquet")
    joints = table.column("joint").to_pylist()
    joints[5] = 30
    pq.write_table(
        table.set_column(table.schema.get_field_index("joint"), "joint", [joints]), root / "inputs" / "joint30.parquet"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="stage-1 steps of the interrupted runs")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    if set(faults) - set(FAULTS):
        raise SystemExit(f"unknown fault(s) {sorted(set(faults) - set(FAULTS))}; known: {', '.join(FAULTS)}")
    os.environ.update(DVC_NO_ANALYTICS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    from sandbox.workspace import TINY_CASE_PARAMS, make_workspace

    with tempfile.TemporaryDirectory() as tmp:
        root = make_workspace(Path(tmp), [("dance", "wave")])
        os.environ.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect"))
        (root / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY_CASE_PARAMS))
        slow = {**TINY_CASE_PARAMS, "stage1": {"steps": args.steps, "checkpoint_every": 2}}
        (root / "inputs" / "slow.yaml").write_text(yaml.safe_dump(slow))
        broken_inputs(root)
        rows = [FAULTS[fault](root) for fault in faults]
    print("| fault | seconds to stop | what the user sees | processes left | the same command again |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['fault']} | {row['seconds']:.1f} | {row['seen']} | {row['left']} | {row['rerun']} |")


if __name__ == "__main__":
    main()
