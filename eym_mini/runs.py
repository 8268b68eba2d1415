"""Where eym-mini's diffusion phase goes on from: an earlier run's weights (same architecture) or an
exported model, and the record of every run (steps, batch, machine, time).
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import torch

from eym.atomic import write_text
from eym.errors import InputError

log = logging.getLogger("eym")

TRAINING_STATE = "training.json"
RUNS_LOG = "diffusion_runs.tsv"  # beside the loss log: which steps ran at which batch on which machine


def continue_from(out_dir: Path, architecture: str, config: str, modules: dict, total: int) -> dict:
    """Load an earlier run's weights from ``out_dir`` into ``modules`` when training can go on from them:
    same architecture and latents, and fewer steps than ``total`` (or exactly this ``config``: nothing to do;
    as many or more with another config: an InputError).

    Returns the earlier run's steps, seconds, loss log and the step its learning-rate schedule began at
    (zero and empty when starting afresh).
    """
    fresh = {"steps": 0, "seconds": 0.0, "log": [], "schedule_start": 0, "runs": []}
    state_file = out_dir / TRAINING_STATE
    if not state_file.is_file():
        return fresh
    state = json.loads(state_file.read_text())
    same = state.get("config") == config
    if state.get("architecture") != architecture:
        log.info("eym-mini diffusion: %s was trained with other parameters: training from scratch", out_dir)
        return fresh
    if int(state["steps"]) >= total and not same:  # never throw away longer training (a GPU run's) unasked
        raise InputError(
            f"{out_dir}: trained for {state['steps']} steps with other parameters, as many as or more than "
            f"eym_mini.diffusion.steps ({total}): raise the steps to go on from these weights, or delete the "
            "folder to train from scratch"
        )
    for name, module in modules.items():
        trained = type(module).from_pretrained(out_dir / name)
        module.load_state_dict(trained.state_dict())
    if same:
        log.info("eym-mini diffusion: %s is already trained with these parameters", out_dir)
    else:
        log.info("eym-mini diffusion: continuing from the %d steps in %s to %d", state["steps"], out_dir, total)
    return {
        "steps": int(state["steps"]),
        "seconds": float(state["seconds"]),
        "log": list(state["log"]),
        "schedule_start": int(state.get("schedule_start", 0)),
        "runs": list(state.get("runs", [])),
    }


def start_from(model_dir: Path, modules: dict, vae) -> dict:
    """Load the text encoder, UNet and ControlNet of an exported eym-mini (``models/eym-mini``) into
    ``modules``, checking that its VAE and architecture are these; returns its steps, seconds and loss log.
    The run that goes on from it has a schedule of its own (warm-up, then cosine over its own steps)."""
    from diffusers import AutoencoderKL

    if not (model_dir / "base/unet/config.json").is_file() or not (model_dir / "controlnet").is_dir():
        raise InputError(f"{model_dir}: eym_mini.diffusion.start_from is not an exported eym-mini folder")
    folders = {
        "text_encoder": model_dir / "base/text_encoder",
        "unet": model_dir / "base/unet",
        "controlnet": model_dir / "controlnet",
    }
    theirs = AutoencoderKL.from_pretrained(model_dir / "base/vae").state_dict()
    ours = vae.state_dict()
    if theirs.keys() != ours.keys() or any(not torch.equal(theirs[k].half(), ours[k].half().cpu()) for k in ours):
        raise InputError(f"{model_dir}/base/vae: another VAE than build/eym-mini/vae: its latents would not fit")
    for name, module in modules.items():
        trained = type(module).from_pretrained(folders[name]).state_dict()
        if {k: v.shape for k, v in trained.items()} != {k: v.shape for k, v in module.state_dict().items()}:
            raise InputError(f"{folders[name]}: another {name} architecture than eym_mini.diffusion's")
        module.load_state_dict(trained)
    log_rows = [{k: float(v) for k, v in row.items() if v} for row in read_tsv(model_dir / "logs/diffusion_loss.tsv")]
    for row in log_rows:
        row["step"] = int(row["step"])
    log.info("eym-mini diffusion: going on from the %d steps of %s", len(log_rows), model_dir)
    seconds = log_rows[-1]["seconds"] if log_rows else 0.0
    runs = read_runs(model_dir / "logs" / RUNS_LOG)
    return {"steps": len(log_rows), "seconds": seconds, "log": log_rows, "schedule_start": len(log_rows), "runs": runs}


def read_tsv(path: Path) -> list[dict[str, str]]:
    """The rows of a log table written by the phases (none when the file is missing)."""
    if not path.is_file():
        return []
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    return [dict(zip(lines[0], row)) for row in lines[1:]]


def read_runs(path: Path) -> list[dict]:
    """The training runs recorded in a ``diffusion_runs.tsv`` (empty when there is none)."""
    return [
        {**r, **{k: int(r[k]) for k in ("first_step", "last_step", "batch")}, "seconds": float(r["seconds"])}
        for r in read_tsv(path)
    ]


def write_runs(path: Path, runs: list[dict]) -> None:
    columns = ("first_step", "last_step", "batch", "device", "seconds")
    write_text(path, "\n".join(["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in runs]) + "\n")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
