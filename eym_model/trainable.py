"""Trainable parameter sets, their freezing, and saving/loading only those weights as safetensors.

Groups (names as in params.yaml):

- ``temporal``: the temporal attention layers;
- ``motion_attention``: the MA adapter;
- ``spatial_attention`` (alias ``rca``): the UNet's spatial self-attention projections (attn1
  to_q, to_k, to_v, to_out), which RCA uses;
- ``attn1.to_q``, ``attn2.to_q``, ...: one projection of the UNet's transformer blocks (the
  Tune-A-Video set is ``attn1.to_q, attn2.to_q, temporal``).

The paper's sets: stage 1 = temporal + motion_attention; stage 2 = spatial_attention +
motion_attention.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from eym.atomic import atomic_path
from eym.schema import TRAINABLE_ALIASES, TRAINABLE_GROUPS, TRAINABLE_PROJECTION

if TYPE_CHECKING:  # torch is imported where it is used: the parameter check needs the group names only
    import torch

NAMED_GROUPS = {  # the names are the schema's (eym.schema.TRAINABLE_GROUPS)
    "temporal": re.compile(r"^temporal\."),
    "motion_attention": re.compile(r"^motion_attention\."),
    "spatial_attention": re.compile(r"^unet\..*\.attn1\.(to_q|to_k|to_v|to_out\.0)\."),
}
assert tuple(NAMED_GROUPS) == TRAINABLE_GROUPS


def group_pattern(group: str) -> re.Pattern:
    group = TRAINABLE_ALIASES.get(group, group)
    if group in NAMED_GROUPS:
        return NAMED_GROUPS[group]
    if re.fullmatch(TRAINABLE_PROJECTION, group):
        return re.compile(rf"^unet\..*\.{re.escape(group)}\.")
    known = sorted(NAMED_GROUPS) + sorted(TRAINABLE_ALIASES)
    raise ValueError(f"unknown trainable group {group!r}: use {known} or e.g. 'attn1.to_q'")


def select(model: torch.nn.Module, groups: list[str]) -> dict[str, torch.nn.Parameter]:
    """Parameters of ``model`` in any of ``groups``, by name; every group must match something."""
    named = dict(model.named_parameters())
    chosen = {}
    for group in groups:
        pattern = group_pattern(group)
        matched = {n: p for n, p in named.items() if pattern.search(n)}
        if not matched:
            raise ValueError(
                f"trainable group {group!r} matches no parameter (is that part of the model switched off?)"
            )
        chosen.update(matched)
    return dict(sorted(chosen.items()))


def set_trainable(model: torch.nn.Module, groups: list[str]) -> dict[str, torch.nn.Parameter]:
    """Freeze everything, then unfreeze exactly the parameters of ``groups``; returns them."""
    chosen = select(model, groups)
    model.requires_grad_(False)
    for param in chosen.values():
        param.requires_grad_(True)
    return chosen


def save_trainable(
    model: torch.nn.Module,
    path: str | Path,
    groups: list[str],
    dtype: torch.dtype | None = None,
    metadata: dict | None = None,
) -> None:
    """Write the parameters of ``groups`` (and nothing else) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().to("cpu", dtype or p.dtype).contiguous() for n, p in select(model, groups).items()}
    info = {"groups": json.dumps(groups), **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=info)


def load_trainable(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Load a file written by save_trainable into ``model``; returns the names loaded."""
    import torch
    from safetensors.torch import load_file

    from eym.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trained weights not found (run the tuning stage that writes it)")
    tensors = load_file(str(path))
    named = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(named))
    if unknown:
        raise InputError(
            f"{path}: {len(unknown)} weights do not exist in this model (e.g. {unknown[0]}); "
            "was it trained with a different model configuration?"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            if named[name].shape != tensor.shape:
                raise InputError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(named[name].shape)}"
                )
            named[name].copy_(tensor.to(named[name].dtype))
    return sorted(tensors)


def make_optimizer(
    params, lr: float, weight_decay: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8, use_8bit: bool = False
) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' 8-bit AdamW when asked for and installed."""
    import torch

    params = list(params)
    if use_8bit:
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ImportError("8-bit Adam needs bitsandbytes: pip install bitsandbytes (CUDA only)") from exc
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps)
