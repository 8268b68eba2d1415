"""A disk cache of the planner's traces: a stage traced once for a model, clip shape and setting is
read back by every later plan, memory check and batch (tracing takes seconds, reading milliseconds).

The key is everything a trace depends on: the networks' config files (not their paths), the ``model``
section, the stage's settings that change its computation, the clip's shape and device, the code of
eym_model and the versions of torch, diffusers and transformers. The cache is in ``$EYM_CACHE/traces``
(default ``$XDG_CACHE_HOME/eym``, else ``~/.cache/eym``); an unwritable cache only costs the trace again.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from eym.atomic import write_json
from eym.parameters import typed_section

from .loading import BASE_PARTS, locate

CONFIGS = ("unet/config.json", "vae/config.json", "text_encoder/config.json")
# the model section's entries that name where the networks are, not what they are (their configs are hashed)
LOCATION_KEYS = ("base", "controlnet", "allow_download")


def cache_folder() -> Path:
    root = os.environ.get("EYM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eym"
    return Path(root).expanduser() / "traces"


def trace_key(params: dict, stage: str, frames: int, height: int, width: int, device: str) -> str:
    """The hash of what ``stage``'s trace depends on under ``params``."""
    model = typed_section("model", params.get("model", {})).model_dump()
    base = locate(model["base"], "base model", BASE_PARTS, model["allow_download"], model["variant"])
    controlnet = locate(model["controlnet"], "ControlNet", (), model["allow_download"], model["variant"])
    files = [base / name for name in CONFIGS] + [controlnet / "config.json"]
    inputs = {
        "configs": [_file_hash(f) for f in files],
        "model": {k: v for k, v in model.items() if k not in LOCATION_KEYS},
        "stage": stage,
        "settings": _stage_settings(stage, params),
        "shape": [frames, height, width],
        "device": device,
        "code": _code_version(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _stage_settings(stage: str, params: dict) -> dict:
    """The settings of a stage that change what one of its steps computes (not its step count or rate)."""
    w = typed_section("window", params.get("window", {}))
    window = [w.frames, w.overlap]  # a step runs one window at a time
    if stage in ("stage1", "stage2"):
        s = typed_section(stage, params.get(stage, {}))
        return {"trainable": list(s.trainable), "use_8bit_adam": s.use_8bit_adam, "window": window}
    inversion = typed_section("inversion", params.get("inversion", {}))
    if stage == "invert":
        return {"check": inversion.check_reconstruction, "controlnet": inversion.controlnet, "window": window}
    return {"guided": typed_section("sampling", params.get("sampling", {})).guidance_scale != 1.0, "window": window}


def read(key: str) -> dict | None:
    try:
        return json.loads((cache_folder() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def write(key: str, traced: dict) -> None:
    try:
        write_json(cache_folder() / f"{key}.json", traced)
    except OSError:
        pass  # a read-only or full cache folder: the next plan traces again


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"  # the trace itself will say what is wrong with the model folder


@lru_cache(maxsize=1)
def _code_version() -> str:
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    for package in ("torch", "diffusers", "transformers"):
        digest.update(metadata.version(package).encode())
    return digest.hexdigest()
