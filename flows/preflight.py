"""Checks before the first stage runs: the parameters against the schema, the devices they ask for, and
the weights they name (located, their headers and configs read, not loaded), so that a typo, a missing
GPU or a broken download fails in seconds, not after preprocessing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eym.errors import InputError, MissingWeightsError
from eym.parameters import ParameterError, inconsistencies, merge_checked

log = logging.getLogger("eym")


def check_weights(params: dict, models: bool = True) -> list[str]:
    """Every weight the parameters name that is not on this machine: one message each (empty: all
    found). ``models``: also the base model and ControlNet (not needed to preview a retargeting)."""
    from eym_model.loading import BASE_PARTS, locate

    model = params["model"]
    allow, variant = bool(model["allow_download"]), model["variant"]
    checks = []
    if models:
        checks.append(
            lambda: _intact(locate(model["base"], "base model", BASE_PARTS, allow, variant), BASE_PARTS, model)
        )
        checks.append(lambda: _intact(locate(model["controlnet"], "ControlNet", (), allow, variant), (), model))
    pose, segmentation = params["pose"], params["segmentation"]
    if pose["backend"] == "openpose":
        from eym.detect.openpose_backend import locate_body_model

        checks.append(lambda: locate_body_model(pose["annotator"], bool(pose["allow_download"])))
    if pose["backend"] == "dwpose":
        from eym.detect.dwpose_backend import locate as locate_dwpose

        checks.append(lambda: locate_dwpose(pose["dwpose"], bool(pose["allow_download"])))
    if segmentation["backend"] == "rembg":
        from eym.detect.rembg_backend import locate as locate_rembg

        checks.append(lambda: locate_rembg(segmentation["rembg_model"], segmentation["rembg_model_path"]))
    problems = []
    for check in checks:
        try:
            check()
        except MissingWeightsError as exc:
            problems.append(str(exc))
    return problems


def _intact(folder: Path, parts: tuple[str, ...], model: dict) -> None:
    """Raise MissingWeightsError naming the files of a located model folder that are damaged."""
    from eym_model.loading import damaged_files

    damaged = damaged_files(folder, parts, model["variant"])
    if damaged:
        raise MissingWeightsError(f"{folder}: damaged model files (copy or download them again): " + "; ".join(damaged))


def check_devices(params: dict) -> list[str]:
    """The devices the parameters ask for that this machine does not have, one message each."""
    problems = []
    for key in ("model", "evaluation"):
        device = str(params[key]["device"])
        if device in ("auto", "cpu"):
            continue
        import torch

        if device == "mps" and not torch.backends.mps.is_available():
            problems.append(f"{key}.device is mps, but this machine has no Apple GPU: set {key}.device: auto")
        if device.startswith("cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(device.split(":")[1]) if ":" in device else 0
            if index >= count:
                has = (
                    f"has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}" if count else "has no CUDA GPU torch can use"
                )
                problems.append(f"{key}.device is {device}, but this machine {has}: set {key}.device: auto")
    return problems


def resolution_hint(params: dict) -> str | None:
    """A warning when the frames' size differs from the size the base model was trained at."""
    from eym_model.loading import locate

    model = params["model"]
    try:
        folder = locate(model["base"], "base model", ("unet", "vae"), bool(model.get("allow_download")))
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
    except (MissingWeightsError, OSError, ValueError):
        return None
    trained = int(unet.get("sample_size", 0)) * 2 ** (len(vae.get("block_out_channels", [0])) - 1)
    frames = params["frames"]
    if trained and (frames["width"], frames["height"]) != (trained, trained):
        return (
            f"the base model {model['base']} was trained at {trained}x{trained}, but frames are "
            f"{frames['width']}x{frames['height']} (frames.width/height)"
        )
    return None


def preflight(layers: list[tuple[str, dict]], weights: bool = True, models: bool = True) -> dict:
    """Merged, checked parameters; raises InputError naming every problem before anything runs."""
    params = merge_checked(layers)
    problems = inconsistencies(layers, params)
    if problems:
        raise ParameterError(problems)
    if weights and models:
        problems = check_devices(params)
        if problems:
            raise InputError("; ".join(problems))
    if weights:
        problems = check_weights(params, models)
        if problems:
            raise MissingWeightsError("\n".join(problems))
    if weights and models:
        hint = resolution_hint(params)
        if hint:
            log.warning("%s", hint)
    return params


def check_manifest(manifest: Path, repo_params: Path, layers: list[tuple[str, dict]] = (), budget="none") -> list:
    """Every row of a manifest, its parameters (with the command line's ``layers`` on top), the
    weights they name and whether its model stages fit ``budget`` (flows.plan) checked; returns the cases."""
    from eym.manifest import read_manifest
    from eym.parameters import read_layer
    from flows.plan import clip_frames, memory_verdict

    cases = read_manifest(manifest)
    base = (str(repo_params), read_layer(repo_params))
    seen, planned = set(), {}
    for number, case in enumerate(cases, start=1):
        key = repr(sorted(case.params.items()))
        where = f"{manifest}: row {number} (id {case.id!r})"
        params = preflight([base, (where, case.params), *layers], weights=key not in seen)
        seen.add(key)
        frames = clip_frames(params, case.source) if budget != "none" else 0
        if budget != "none" and (key, frames) not in planned:  # one plan per parameters and clip length
            planned[key, frames] = memory_verdict(params, frames, budget)
            if not planned[key, frames][0]:
                raise InputError(f"{where}: {planned[key, frames][1]}")
    return cases
