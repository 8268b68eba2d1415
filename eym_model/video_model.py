"""The Edit-Your-Motion video model: a pretrained image UNet inflated to video, plus ControlNet and MA.

Layout: latents are (batch, channels, frames, h, w); inside, frames are folded into the batch and
the stock diffusers UNet2DConditionModel and ControlNetModel run unchanged. Video behaviour is
added with diffusers' own extension points, not a fork of the UNet:

- spatial self-attention (``attn1``) gets a ``VideoSelfAttnProcessor`` (RCA by default);
- each transformer block gets a forward hook that applies its temporal attention layer;
- with MA on, ControlNet's residuals are passed through MA just before the up blocks consume the
  skip connections (a forward pre-hook on each up block), exactly where diffusers would add them;
  the mid-block residual is added after the mid block, as diffusers does. With MA off the
  residuals go to the UNet through its own ``down_block_additional_residuals`` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import FrameContext, VideoSelfAttnProcessor
from .motion_attention import MotionAttentionAdapter
from .temporal import TemporalLayers, transformer_blocks


class EditYourMotionModel(nn.Module):
    def __init__(
        self,
        unet,
        controlnet=None,
        temporal: TemporalLayers | None = None,
        motion_attention: MotionAttentionAdapter | None = None,
        spatial_attention: str = "rca",
        rca_edge: str = "paper",
        attention_backend: str | None = None,
    ):
        super().__init__()
        self.unet, self.controlnet = unet, controlnet
        self.temporal = temporal if temporal is not None else TemporalLayers.for_unet(unet)
        self.motion_attention = motion_attention
        self.use_motion_attention = motion_attention is not None
        self.context = FrameContext()
        self.attention_backend = attention_backend
        self._blocks = transformer_blocks(unet)
        if [name for name, _ in self._blocks] != list(self.temporal.config.block_names):
            raise ValueError("temporal layers were built for a different UNet (transformer block names differ)")
        if motion_attention is not None:
            if controlnet is None:
                raise ValueError("motion attention needs a ControlNet")
            if len(motion_attention.blocks) != len(controlnet.controlnet_down_blocks):
                raise ValueError("motion attention blocks do not match the ControlNet's residuals")
        self.set_spatial_attention(spatial_attention, rca_edge)
        self._hooks = self._install_hooks()

    # -- configuration ----------------------------------------------------------------------------
    def set_spatial_attention(self, mode: str, edge: str = "paper") -> None:
        """Switch attn1 of every transformer block to ``frame``, ``rca``, ``sparse_causal`` or ``full``."""
        processor = VideoSelfAttnProcessor(self.context, mode, edge, self.attention_backend)
        for _, block in self._blocks:
            block.attn1.set_processor(processor)
        self.spatial_attention, self.rca_edge = mode, edge

    def enable_gradient_checkpointing(self) -> None:
        for module in (self.unet, self.controlnet, self.motion_attention):
            if module is not None:
                module.enable_gradient_checkpointing()

    def _install_hooks(self) -> list:
        hooks = []
        for (_, block), layer in zip(self._blocks, self.temporal.layers):
            hooks.append(block.register_forward_hook(self._temporal_hook(layer)))
        if self.motion_attention is not None:
            hooks.append(self.unet.mid_block.register_forward_hook(self._mid_residual_hook))
            total = len(self.controlnet.controlnet_down_blocks)
            end = total
            for up_block in self.unet.up_blocks:
                start = end - len(up_block.resnets)
                hooks.append(up_block.register_forward_pre_hook(self._skip_hook(start), with_kwargs=True))
                end = start
        return hooks

    def _temporal_hook(self, layer):
        def hook(module, args, output):
            return layer(output, self.context.frames())

        return hook

    def _mid_residual_hook(self, module, args, output):
        if self.context.residuals is None:
            return None
        return output + self.context.residuals[1]

    def _skip_hook(self, start: int):
        def hook(module, args, kwargs):
            if self.context.residuals is None:
                return None
            down = self.context.residuals[0]
            skips = kwargs["res_hidden_states_tuple"]
            frames = self.context.frames()
            kwargs["res_hidden_states_tuple"] = tuple(
                u + self.motion_attention(start + i, down[start + i], u, frames) for i, u in enumerate(skips)
            )
            return args, kwargs

        return hook

    # -- forward ----------------------------------------------------------------------------------
    def forward(
        self,
        latents: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        skeletons: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
    ) -> torch.Tensor:
        """Predict noise for video latents (batch, c, frames, h, w).

        ``encoder_hidden_states``: (batch, tokens, dim) text embeddings, shared by a video's frames.
        ``skeletons``: (batch, 3, frames, H, W) skeleton images in [0, 1] for ControlNet, or None.
        """
        batch, channels, frames, height, width = latents.shape
        self.context.num_frames = frames
        sample = latents.transpose(1, 2).reshape(batch * frames, channels, height, width)
        text = encoder_hidden_states.repeat_interleave(frames, dim=0)
        timestep = torch.as_tensor(timestep, device=latents.device).reshape(-1).expand(batch).repeat_interleave(frames)

        down = mid = None
        if skeletons is not None and self.controlnet is not None and conditioning_scale != 0:
            cond = skeletons.transpose(1, 2).reshape(batch * frames, *skeletons.shape[1:2], *skeletons.shape[3:])
            down, mid = self.controlnet(
                sample,
                timestep,
                text,
                controlnet_cond=cond.to(sample.dtype),
                conditioning_scale=conditioning_scale,
                return_dict=False,
            )
        if down is not None and self.use_motion_attention:
            self.context.residuals = (down, mid)
            try:
                out = self.unet(sample, timestep, text, return_dict=False)[0]
            finally:
                self.context.residuals = None
        else:
            out = self.unet(
                sample,
                timestep,
                text,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
                return_dict=False,
            )[0]
        return out.reshape(batch, frames, *out.shape[1:]).transpose(1, 2)


def _schema_default(name: str):
    from eym.schema import Model

    return Model.model_fields[name].default


@dataclass
class VideoModelConfig:
    """The video model's switches, as named in params.yaml (section ``model``); their defaults are the
    schema's (eym.schema.Model)."""

    spatial_attention: str = _schema_default("spatial_attention")  # frame | rca | sparse_causal | full
    rca_edge: str = _schema_default("rca_edge")  # paper | circular
    motion_attention: bool = _schema_default("motion_attention")  # False: "w/o MA"
    motion_attention_dim: int = _schema_default("motion_attention_dim")
    motion_attention_heads: int = _schema_default("motion_attention_heads")
    temporal_head_dim: int = _schema_default("temporal_head_dim")
    max_frames: int = _schema_default("max_frames")
    attention_backend: str = _schema_default("attention_backend")  # auto | native | xformers
    gradient_checkpointing: bool = _schema_default("gradient_checkpointing")
    init_seed: int = _schema_default("init_seed")  # the new layers' initial weights (their outputs start at zero)

    @classmethod
    def from_params(cls, params) -> "VideoModelConfig":
        """From the ``model`` section (its schema object or a dict of its keys)."""
        known = {k: v for k, v in dict(params).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def build_video_model(unet, controlnet, config: VideoModelConfig) -> EditYourMotionModel:
    """Inflate a loaded UNet (+ ControlNet) into the video model described by ``config``."""
    backend = resolve_attention_backend(config.attention_backend, unet.device)
    if backend == "xformers":
        for module in (unet, controlnet):
            if module is not None:
                module.enable_xformers_memory_efficient_attention()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(config.init_seed)
    try:
        temporal = TemporalLayers.for_unet(unet, config.temporal_head_dim, config.max_frames)
        adapter = None
        if config.motion_attention and controlnet is not None:
            adapter = MotionAttentionAdapter.for_controlnet(
                controlnet, config.motion_attention_dim, config.motion_attention_heads, config.max_frames
            )
    finally:
        torch.random.set_rng_state(generator_state)
    temporal.to(unet.device)
    if adapter is not None:
        adapter.to(unet.device)
    model = EditYourMotionModel(
        unet,
        controlnet,
        temporal,
        adapter,
        config.spatial_attention,
        config.rca_edge,
        None if backend == "native" else backend,
    )
    if backend == "xformers":
        from diffusers.models.attention_processor import Attention, XFormersAttnProcessor

        for module in (temporal, adapter):
            for layer in module.modules() if module is not None else ():
                if isinstance(layer, Attention):
                    layer.set_processor(XFormersAttnProcessor())
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def resolve_attention_backend(name: str, device) -> str:
    """'auto' picks xformers on CUDA when it is installed, else PyTorch's SDPA ('native')."""
    if name not in ("auto", "native", "xformers"):
        raise ValueError(f"attention_backend must be auto, native or xformers, not {name!r}")
    if name == "native":
        return name
    try:
        import xformers  # noqa: F401

        available = str(device).startswith("cuda")
    except ImportError:
        available = False
    if name == "xformers" and not available:
        raise ImportError("attention_backend: xformers needs the xformers package and a CUDA device")
    return "xformers" if available else "native"
