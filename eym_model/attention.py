"""Spatial self-attention across frames, as a diffusers attention processor for the UNet's ``attn1``.

Frames are folded into the batch (``batch * frames`` rows). Each mode gives a frame's queries the
keys and values of a set of frames, projected with the layer's own pretrained weights:

- ``frame``: its own frame (plain per-frame self-attention; the image model).
- ``rca``: recurrent causal attention (Edit-Your-Motion): frames i-1 and i+1. Edges follow the
  paper: frame 0 uses frames 0 and 1, the last frame uses the last two. ``edge="circular"``
  wraps around instead.
- ``sparse_causal``: Tune-A-Video: the first frame and frame i-1.
- ``full``: every frame (the cost reference that RCA avoids).

RCA costs twice a per-frame attention whatever the clip length; ``full`` costs F times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

MODES = ("frame", "rca", "sparse_causal", "full")
EDGES = ("paper", "circular")


@dataclass
class FrameContext:
    """State shared by a video model's processors and hooks for the forward pass in flight.

    ``num_frames`` stays set after a forward so that gradient checkpointing can recompute blocks
    during the backward pass.
    """

    num_frames: int | None = None
    residuals: tuple | None = field(default=None, repr=False)

    def frames(self) -> int:
        if self.num_frames is None:
            raise RuntimeError("the number of frames is unknown: call the video model, not its UNet directly")
        return self.num_frames


def source_frames(mode: str, num_frames: int, edge: str = "paper") -> torch.Tensor:
    """(frames, sources) long tensor: the frames whose keys/values each frame attends to."""
    f = torch.arange(num_frames)
    if mode == "frame":
        return f[:, None]
    if mode == "full":
        return f[None, :].expand(num_frames, num_frames)
    if mode == "sparse_causal":
        return torch.stack([torch.zeros_like(f), (f - 1).clamp(min=0)], 1)
    if mode == "rca":
        if edge == "circular":
            return torch.stack([(f - 1) % num_frames, (f + 1) % num_frames], 1)
        if edge != "paper":
            raise ValueError(f"RCA edge must be one of {EDGES}, not {edge!r}")
        if num_frames == 1:
            return torch.zeros(1, 2, dtype=torch.long)
        prev = (f - 1).clamp(min=0, max=num_frames - 2)
        return torch.stack([prev, prev + 1 + (f > 0) * (f < num_frames - 1)], 1)
    raise ValueError(f"spatial attention mode must be one of {MODES}, not {mode!r}")


def gather_frames(x: torch.Tensor, num_frames: int, index: torch.Tensor) -> torch.Tensor:
    """(batch*frames, tokens, dim) -> (batch*frames, sources*tokens, dim), each frame its sources' tokens."""
    bf, tokens, dim = x.shape
    x = x.view(bf // num_frames, num_frames, tokens, dim)
    picked = x[:, index.to(x.device)]  # (batch, frames, sources, tokens, dim)
    return picked.reshape(bf, index.shape[1] * tokens, dim)


class VideoSelfAttnProcessor:
    """Replaces a UNet ``attn1`` processor; reuses the layer's to_q/to_k/to_v/to_out weights."""

    def __init__(self, context: FrameContext, mode: str = "rca", edge: str = "paper", backend: str | None = None):
        source_frames(mode, 3, edge)  # validates mode and edge
        self.context, self.mode, self.edge, self.backend = context, mode, edge, backend

    def __call__(
        self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("VideoSelfAttnProcessor is for self-attention layers (attn1) only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            bf, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(bf, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        if self.mode != "frame":
            if attention_mask is not None:
                raise ValueError(f"attention masks are not supported with {self.mode} attention")
            num_frames = self.context.frames()
            index = source_frames(self.mode, num_frames, self.edge)
            key, value = gather_frames(key, num_frames, index), gather_frames(value, num_frames, index)
        elif attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], query.shape[0])
            attention_mask = attention_mask.view(query.shape[0], attn.heads, -1, attention_mask.shape[-1])

        batch, head_dim = query.shape[0], key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim) for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, scale=attn.scale, backend=self.backend)
        out = out.reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(bf, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
