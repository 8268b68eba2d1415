"""Temporal attention: attention over frames at each spatial position, one layer per transformer block.

Each layer is LayerNorm -> sinusoidal frame-position embedding -> diffusers ``Attention`` with a
zero-initialised output projection, added as a residual after the block (after its FFN, as in
Tune-A-Video). At initialisation every layer is the identity, so the inflated video model equals
the image model frame by frame. The layers live in one ``TemporalLayers`` model, saved and loaded
with ``save_pretrained``/``from_pretrained`` like any diffusers model.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def frames_to_sequence(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch*frames, tokens, dim) -> (batch*tokens, frames, dim)."""
    bf, tokens, dim = x.shape
    return x.view(bf // num_frames, num_frames, tokens, dim).transpose(1, 2).reshape(-1, num_frames, dim)


def sequence_to_frames(x: torch.Tensor, tokens: int) -> torch.Tensor:
    """(batch*tokens, frames, dim) -> (batch*frames, tokens, dim)."""
    bt, frames, dim = x.shape
    return x.view(bt // tokens, tokens, frames, dim).transpose(1, 2).reshape(-1, tokens, dim)


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, head_dim: int = 64, max_frames: int = 64):
        super().__init__()
        heads = max(1, dim // head_dim)
        self.norm = nn.LayerNorm(dim)
        self.position = SinusoidalPositionalEmbedding(dim, max_seq_length=max_frames)
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, out_bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)
        self.max_frames = max_frames

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames > self.max_frames:
            raise ValueError(f"{num_frames} frames exceed the temporal layers' max_frames={self.max_frames}")
        tokens = hidden_states.shape[1]
        seq = frames_to_sequence(hidden_states, num_frames)
        seq = self.attn(self.position(self.norm(seq)))
        return hidden_states + sequence_to_frames(seq, tokens)


class TemporalLayers(ModelMixin, ConfigMixin):
    """One TemporalAttention per UNet transformer block, in the UNet's module order."""

    @register_to_config
    def __init__(self, block_names: list[str], channels: list[int], head_dim: int = 64, max_frames: int = 64):
        super().__init__()
        if len(block_names) != len(channels):
            raise ValueError("block_names and channels must have the same length")
        self.layers = nn.ModuleList(TemporalAttention(c, head_dim, max_frames) for c in channels)

    @classmethod
    def for_unet(cls, unet, head_dim: int = 64, max_frames: int = 64) -> "TemporalLayers":
        blocks = transformer_blocks(unet)
        return cls([name for name, _ in blocks], [b.attn1.query_dim for _, b in blocks], head_dim, max_frames)


def transformer_blocks(unet) -> list[tuple[str, nn.Module]]:
    """The UNet's BasicTransformerBlocks (spatial attention, cross attention, FFN) with their names."""
    from diffusers.models.attention import BasicTransformerBlock

    return [(name, module) for name, module in unet.named_modules() if isinstance(module, BasicTransformerBlock)]
