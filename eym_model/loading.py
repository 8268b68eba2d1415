"""Loading Stable Diffusion 1.5 and ControlNet-OpenPose in diffusers format, from a folder or a hub id.

A hub id is looked up in the local Hugging Face cache only, unless downloads are allowed: on a
machine without network a missing model fails at once with a message that says what was looked
for and how to provide it, instead of hanging on a download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eym.errors import MissingWeightsError

if TYPE_CHECKING:  # torch is imported where it is used: eym-edit's checks locate models without it
    import torch

DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET = "lllyasviel/sd-controlnet-openpose"
BASE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_WEIGHT_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
_SKIP_PATTERNS = ["*.ckpt", "*.bin", "*.msgpack", "*.onnx", "*non_ema*", "safety_checker/*", "feature_extractor/*"]


@dataclass
class BaseModel:
    unet: "torch.nn.Module"
    vae: "torch.nn.Module"
    text_encoder: "torch.nn.Module"
    tokenizer: object
    scheduler_config: dict
    source: str


def resolve_dtype(precision: str, device: str) -> torch.dtype:
    """'auto' is fp16 on CUDA and fp32 on CPU."""
    import torch

    if precision == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    try:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    except KeyError:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingWeightsError(f"device {device!r} was asked for, but no CUDA GPU is visible to torch")
    return device


def locate(
    name_or_path: str, what: str, required: tuple[str, ...], allow_download: bool = False, variant: str | None = None
) -> Path:
    """A local folder for a model given as a folder or a hub id, checking that ``required`` parts exist."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        _check_parts(path, what, required)
        return path
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise MissingWeightsError(f"{what}: folder {path} does not exist (and {name_or_path!r} is not a hub id)")
    from huggingface_hub import snapshot_download

    patterns = [f"{part}/{p}" for part in required for p in _WEIGHT_PATTERNS] if required else list(_WEIGHT_PATTERNS)
    skip = list(_SKIP_PATTERNS) + ([] if variant else ["*.fp16.*"])
    try:
        folder = Path(
            snapshot_download(
                name_or_path,
                allow_patterns=patterns + ["*.json"],
                ignore_patterns=skip,
                local_files_only=not allow_download,
            )
        )
    except Exception as exc:  # hub errors differ between offline, missing and gated repositories
        raise MissingWeightsError(_missing_message(what, name_or_path, allow_download, exc)) from exc
    _check_parts(folder, what, required)
    return folder


def damaged_files(folder: Path, parts: tuple[str, ...] = (), variant: str | None = None) -> list[str]:
    """The files of a model folder (in its ``parts``, or at its top) that cannot be what they claim,
    one message each: JSON that does not parse, a safetensors file whose header does not parse or whose
    size is not the one its header describes (an unfinished download). Headers only: no tensor is read."""
    roots = [folder / part for part in parts] if parts else [folder]
    files = [folder / "model_index.json"] if (folder / "model_index.json").is_file() else []
    for root in roots:
        files += sorted(root.glob("*.json"))
        files += [f for f in sorted(root.glob("*.safetensors")) if _loaded_variant(f, variant)]
    problems = []
    for file in files:
        try:
            if file.suffix == ".json":
                json.loads(file.read_text())
            else:
                _check_safetensors(file)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: {exc}")
    return problems


def _loaded_variant(file: Path, variant: str | None) -> bool:
    """Whether diffusers would load this weight file: ``x.fp16.safetensors`` with variant fp16 only."""
    stem = file.name[: -len(".safetensors")]
    return stem.endswith(f".{variant}") if variant else "." not in stem


def _check_safetensors(file: Path) -> None:
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            raise ValueError(f"not a safetensors file, or cut short ({size} bytes)")
        header = json.loads(handle.read(length))
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + length + end != size:
        raise ValueError(f"{size} bytes where its header describes {8 + length + end}: cut short (an unfinished copy?)")


def _missing_message(what: str, repo: str, allow_download: bool, exc: Exception) -> str:
    how = (
        f"download it where you have network, e.g.\n    hf download {repo} --local-dir models/{repo.split('/')[-1]}\n"
        f"and give that folder instead of the hub id"
    )
    if not allow_download:
        how += ", or allow downloads (model.allow_download: true) on a machine with network"
    return (
        f"{what} {repo!r} was not found in the local Hugging Face cache"
        f"{'' if not allow_download else ' and could not be downloaded'} ({type(exc).__name__}). To provide it, {how}."
    )


# A key of a base model's model_index.json (diffusers ignores keys that start with "_"): the world a
# model knows, for eym-mini "puppet", so that an edit of other footage with it is told what it gets.
WORLD_KEY = "_eym_world"


def model_world(name_or_path: str) -> str | None:
    """The ``WORLD_KEY`` of a local base model folder (None for a hub id or a model without one)."""

    index = Path(str(name_or_path)).expanduser() / "model_index.json"
    try:
        return json.loads(index.read_text()).get(WORLD_KEY)
    except (OSError, ValueError):
        return None


def domain_warning(base: str, source: Path) -> str | None:
    """A warning when a puppet-world base model is asked to edit a source the puppet world did not draw."""
    from puppet_world.files import is_puppet_source

    if model_world(base) != "puppet" or is_puppet_source(source):
        return None
    return (
        f"the base model {base} is eym-mini, a model of the puppet world only: on other footage it returns "
        "a blurred copy of the source. Edit real videos with Stable Diffusion 1.5 "
        "(--params configs/sd15.yaml and its weights: README, Weights)"
    )


def _check_parts(folder: Path, what: str, required: tuple[str, ...]) -> None:
    missing = [part for part in required if not (folder / part).is_dir()]
    if not required and not (folder / "config.json").is_file():
        missing = ["config.json"]
    if missing:
        raise MissingWeightsError(f"{what}: {folder} is not a diffusers model folder (missing {', '.join(missing)})")


def _quiet_when_captured() -> None:
    """No weight-loading progress bars when the output goes to a log (DVC, Prefect)."""
    import sys

    if not sys.stderr.isatty():
        import diffusers
        import transformers

        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.disable_progress_bar()


def load_base_model(
    name_or_path: str = DEFAULT_BASE_MODEL,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    allow_download: bool = False,
    variant: str | None = None,
) -> BaseModel:
    """UNet, VAE, text encoder, tokenizer and scheduler config of an SD-1.5-layout model."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = dtype or torch.float32

    folder = locate(name_or_path, "base model", BASE_PARTS, allow_download, variant)
    _quiet_when_captured()
    kwargs = {"torch_dtype": dtype, "variant": variant}
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype, variant=variant)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        scheduler_config = dict(DDIMScheduler.load_config(folder, subfolder="scheduler"))
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(f"base model: could not load from {folder}: {exc}") from exc
    for module in (unet, vae, text_encoder):
        module.to(device).requires_grad_(False).eval()
    return BaseModel(unet, vae, text_encoder, tokenizer, scheduler_config, str(name_or_path))


def load_controlnet(
    name_or_path: str = DEFAULT_CONTROLNET,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    allow_download: bool = False,
    variant: str | None = None,
):
    import torch
    from diffusers import ControlNetModel

    dtype = dtype or torch.float32
    folder = locate(name_or_path, "ControlNet", (), allow_download, variant)
    try:
        controlnet = ControlNetModel.from_pretrained(folder, torch_dtype=dtype, variant=variant)
    except (OSError, ValueError) as exc:
        raise MissingWeightsError(f"ControlNet: could not load from {folder}: {exc}") from exc
    return controlnet.to(device).requires_grad_(False).eval()
