"""The Motion Attention module (MA): adapts ControlNet's skeleton residuals to the UNet's features.

One block per ControlNet down residual. A block projects the residual r (skeleton features) and
the UNet's skip feature u of the same resolution into a small inner width, then applies
self-attention over r, cross-attention with queries from r and keys/values from u, and temporal
attention over frames, and adds a zero-initialised projection back to r. At initialisation MA is
the identity on the residuals. The inner width keeps MA light (a few million parameters at SD-1.5
scale): the paper calls it a lightweight adapter.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .temporal import frames_to_sequence, sequence_to_frames


class MotionAttentionBlock(nn.Module):
    def __init__(self, channels: int, inner_dim: int = 128, heads: int = 4, max_frames: int = 64):
        super().__init__()
        self.skeleton_in = nn.Linear(channels, inner_dim)
        self.unet_in = nn.Linear(channels, inner_dim)
        self.norm_self, self.norm_cross, self.norm_unet, self.norm_temporal = (
            nn.LayerNorm(inner_dim) for _ in range(4)
        )
        head_dim = inner_dim // heads
        self.self_attn = Attention(inner_dim, heads=heads, dim_head=head_dim, out_bias=True)
        self.cross_attn = Attention(
            inner_dim, cross_attention_dim=inner_dim, heads=heads, dim_head=head_dim, out_bias=True
        )
        self.temporal_attn = Attention(inner_dim, heads=heads, dim_head=head_dim, out_bias=True)
        self.position = SinusoidalPositionalEmbedding(inner_dim, max_seq_length=max_frames)
        self.out = nn.Linear(inner_dim, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, skeleton: torch.Tensor, unet: torch.Tensor, num_frames: int) -> torch.Tensor:
        bf, channels, height, width = skeleton.shape
        x = self.skeleton_in(skeleton.flatten(2).transpose(1, 2))
        u = self.norm_unet(self.unet_in(unet.flatten(2).transpose(1, 2).to(x.dtype)))
        x = x + self.self_attn(self.norm_self(x))
        x = x + self.cross_attn(self.norm_cross(x), encoder_hidden_states=u)
        seq = frames_to_sequence(x, num_frames)
        seq = seq + self.temporal_attn(self.position(self.norm_temporal(seq)))
        x = sequence_to_frames(seq, height * width)
        return skeleton + self.out(x).transpose(1, 2).reshape(bf, channels, height, width).to(skeleton.dtype)


class MotionAttentionAdapter(ModelMixin, ConfigMixin):
    """MA blocks for every ControlNet down residual, in ControlNet's output order."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, residual_channels: list[int], inner_dim: int = 128, heads: int = 4, max_frames: int = 64):
        super().__init__()
        self.blocks = nn.ModuleList(MotionAttentionBlock(c, inner_dim, heads, max_frames) for c in residual_channels)
        self.gradient_checkpointing = False

    @classmethod
    def for_controlnet(cls, controlnet, inner_dim: int = 128, heads: int = 4, max_frames: int = 64):
        channels = [block.out_channels for block in controlnet.controlnet_down_blocks]
        return cls(channels, inner_dim, heads, max_frames)

    def forward(self, index: int, skeleton: torch.Tensor, unet: torch.Tensor, num_frames: int) -> torch.Tensor:
        block = self.blocks[index]
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, skeleton, unet, num_frames, use_reentrant=False)
        return block(skeleton, unet, num_frames)
