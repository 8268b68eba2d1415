"""The one-shot tuning loop shared by stage-1 and stage-2 tuning (spatio-temporal two-stage learning).

Trains the parameter groups of its params section on one clip: epsilon-prediction MSE with
ControlNet fed the source skeletons, AdamW, gradient clipping, autocast in the model's precision.
The clip's VAE posterior and prompt embedding are computed once. Writes ``<stage>/weights.safetensors``
(only the trained tensors), ``<stage>/loss.tsv`` (step, loss, lr, seconds: a DVC plot) and
``<stage>/meta.json``.

Checkpoints (trainable weights, optimizer, random state, loss log) go to ``<stage>.ckpt/`` every
``checkpoint_every`` steps, atomically. A rerun after an interruption resumes from the last one when
its fingerprint (parameters and input files) matches, and ends with the same weights as an
uninterrupted run. A NaN or infinite loss stops the stage with an error and saves nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import torch

from eym import interrupt
from eym.atomic import atomic_path, write_json, write_text
from eym.errors import InputError, TrainingError
from eym.media import read_frames
from eym.progress import Progress
from eym_model.components import load_components
from eym_model.diffusion import prompt_warnings
from eym_model.pipeline import EditYourMotionPipeline, TuningRun
from eym_model.trainable import save_trainable

from .common import FRAMES, MASKS, POSE, WEIGHTS, load_stage_weights, log, section

LOSS_LOG, META = "loss.tsv", "meta.json"
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for file in sorted(part.rglob("*")) if part.is_dir() else [part]:
                if file.is_file():
                    digest.update(file.name.encode())
                    digest.update(file.read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def train(case_dir: Path, params: dict, stage: str, previous: tuple[str, ...] = ()) -> dict:
    """Tune the ``params[stage]`` groups on the case's clip, starting from the ``previous`` stages' weights."""
    case_dir = Path(case_dir)
    p = section(params, stage)
    model_params = section(params, "model")
    out_dir = case_dir / stage
    if not p.enabled:
        return _write_skipped(out_dir, stage)
    frames_dir = case_dir / (MASKS + "/masked" if p.masked else FRAMES + "/source")
    skeleton_dir = case_dir / POSE / "source_skeleton"
    prompt = str(params["prompt"] or "")
    inputs = [frames_dir, skeleton_dir] + [case_dir / s / WEIGHTS for s in previous]
    ckpt_dir = case_dir / f"{stage}.ckpt"

    pipe = EditYourMotionPipeline(load_components(model_params))
    load_stage_weights(pipe, case_dir, previous)
    frames = read_frames(frames_dir)
    pipe.check_size(frames, str(frames_dir))
    skeleton_frames = read_frames(skeleton_dir)
    if len(skeleton_frames) != len(frames):
        raise InputError(f"{skeleton_dir}: {len(skeleton_frames)} skeleton images for {len(frames)} frames")
    window = params.get("window")  # a clip longer than window.frames: a window of it each step
    run = pipe.tuning(frames, skeletons=skeleton_frames, prompt=prompt, stage=stage, window=window, **p.model_dump())
    # a checkpoint resumes only the same run: settings, prompt, inputs, and the frames a step trains on
    window_part = [run.window] if run.windowed else []  # (none for a whole-clip run: older checkpoints still resume)
    print_ = fingerprint(p.model_dump(), model_params.model_dump(), prompt, *inputs, *window_part)
    if run.groups != list(p.trainable):
        log.info("%s: motion attention is off, so it is not trained", stage)
    state = {"step": 0, "log": [], "seconds": 0.0}
    resumed = _resume(ckpt_dir, print_, run, state)
    steps = int(p.steps)
    log.info(
        "%s: training %.2f M parameters (%s) for %d steps%s%s",
        stage,
        run.parameter_count / 1e6,
        ", ".join(run.groups),
        steps,
        f", each on a window of {run.window} of the {len(frames)} frames" if run.windowed else "",
        f", resuming after step {state['step']}" if resumed else "",
    )
    _loop(run, state, steps, ckpt_dir, print_)
    meta = {
        "stage": stage,
        "steps": steps,
        "trainable_groups": run.groups,
        "trainable_parameters": run.parameter_count,
        "final_loss": state["log"][-1][1] if state["log"] else None,
        "train_seconds": round(state["seconds"], 2),
        "resumed_after_step": resumed,
        "window_frames": run.window,
        "prompt": prompt,
        "masked_frames": bool(p.masked),
        "warnings": prompt_warnings(pipe.components.base.tokenizer, [prompt]),
    }
    with atomic_path(out_dir) as out:
        out.mkdir()
        save_trainable(pipe.components.model, out / WEIGHTS, run.groups, SAVE_DTYPES[p.save_dtype], {"stage": stage})
        write_text(out / LOSS_LOG, _loss_table(state["log"]))
        write_json(out / META, meta)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    log.info(
        "%s: final loss %.4f after %d steps (%.1f s of training)",
        stage,
        meta["final_loss"] or float("nan"),
        steps,
        state["seconds"],
    )
    return meta


def _loop(run: TuningRun, state: dict, steps: int, ckpt_dir: Path, print_: str) -> None:
    """The steps from ``state["step"]`` to ``steps``, a checkpoint every ``checkpoint_every``; a signal
    stops it at a step boundary, after a checkpoint."""
    every, lr = max(1, int(run.p.checkpoint_every)), float(run.p.lr)
    bar = Progress(steps, f"{run.stage} tuning", initial=state["step"], unit="step")
    with interrupt.deferred():
        while state["step"] < steps:
            if interrupt.requested():
                _checkpoint(ckpt_dir, print_, run, state)
                bar.close()
                raise interrupt.Interrupted(
                    f"at step {state['step']} of {steps}; its checkpoint is saved and the same command resumes "
                    f"from step {state['step']}",
                    interrupt.requested(),
                )
            started = time.perf_counter()
            try:
                loss = run.step()
            except TrainingError:
                bar.close()
                raise
            state["step"] += 1
            state["seconds"] += time.perf_counter() - started
            state["log"].append((state["step"], loss, lr, round(state["seconds"], 3)))
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
            if state["step"] % every == 0 and state["step"] < steps:
                _checkpoint(ckpt_dir, print_, run, state)
    bar.close()


def _loss_table(rows) -> str:
    return "step\tloss\tlr\tseconds\n" + "".join(f"{s}\t{loss:.6f}\t{lr:g}\t{sec}\n" for s, loss, lr, sec in rows)


def _checkpoint(ckpt_dir: Path, print_: str, run: TuningRun, state: dict) -> None:
    payload = {"fingerprint": print_, "state": state, **run.state_dict()}
    with atomic_path(ckpt_dir) as tmp:
        tmp.mkdir()
        torch.save(payload, tmp / "checkpoint.pt")


def _resume(ckpt_dir: Path, print_: str, run: TuningRun, state: dict) -> int:
    file = ckpt_dir / "checkpoint.pt"
    if not file.is_file():
        return 0
    try:
        payload = torch.load(file, map_location="cpu", weights_only=False)
        missing = {"fingerprint", "state", *run.STATE} - set(payload)
        if missing:
            raise ValueError(f"it lacks {', '.join(sorted(missing))}")
    except Exception as exc:  # truncated or garbled: torch and pickle raise many types
        aside = ckpt_dir.with_name(f"{run.stage}.unreadable.ckpt")
        shutil.rmtree(aside, ignore_errors=True)
        ckpt_dir.rename(aside)
        log.warning(
            "%s: the checkpoint %s cannot be read (%s: %s); moved to %s for inspection, training starts "
            "again from step 0",
            run.stage,
            file,
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            aside,
        )
        return 0
    if payload.get("fingerprint") != print_:
        log.warning("ignoring checkpoint %s: it was made with other parameters or inputs", ckpt_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return 0
    run.load_state_dict(payload)
    state.update(payload["state"])
    run.steps_done = state["step"]
    state["log"] = [tuple(row) for row in state["log"]]
    return state["step"]


def _write_skipped(out_dir: Path, stage: str) -> dict:
    """A disabled stage still writes its declared outputs: no weights, an empty loss log."""
    from safetensors.torch import save_file

    meta = {"stage": stage, "skipped": True, "steps": 0}
    with atomic_path(out_dir) as out:
        out.mkdir()
        save_file({}, str(out / WEIGHTS), metadata={"stage": stage, "skipped": "true"})
        write_text(out / LOSS_LOG, _loss_table([]))
        write_json(out / META, meta)
    log.info("%s: disabled (%s.enabled: false), wrote empty outputs", stage, stage)
    return meta
