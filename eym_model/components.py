"""Everything a stage needs from the network, built from the ``model`` section of params.yaml."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from eym.parameters import Model, typed_section

from .loading import BaseModel, load_base_model, load_controlnet, resolve_device, resolve_dtype
from .video_model import EditYourMotionModel, VideoModelConfig, build_video_model

log = logging.getLogger("eym")


@dataclass
class Components:
    base: BaseModel
    model: EditYourMotionModel
    device: str
    dtype: torch.dtype  # weights of the frozen parts and the autocast dtype
    vae_chunk: int  # frames per VAE call (model.vae_chunk)

    def autocast(self):
        return torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype != torch.float32)

    def latent_factor(self) -> int:
        """Image sides must be multiples of this: the VAE's and the UNet's downsampling."""
        vae = 2 ** (len(self.base.vae.config.block_out_channels) - 1)
        unet = 2 ** (len(self.model.unet.config.block_out_channels) - 1)
        return vae * unet


def load_components(model_params: Model | dict, with_controlnet: bool = True) -> Components:
    """The base model, ControlNet and video model of a ``model`` parameter section (the schema's defaults
    fill in what it leaves out)."""
    model_params = typed_section("model", model_params)
    device = resolve_device(model_params.device)
    dtype = resolve_dtype(model_params.precision, device)
    allow, variant = model_params.allow_download, model_params.variant
    base = load_base_model(model_params.base, dtype, device, allow, variant)
    controlnet = load_controlnet(model_params.controlnet, dtype, device, allow, variant) if with_controlnet else None
    config = VideoModelConfig.from_params(model_params)
    if controlnet is None:
        config.motion_attention = False
    model = build_video_model(base.unet, controlnet, config)
    log.info(
        "model: %s + %s on %s (%s), spatial attention %s, motion attention %s",
        model_params.base,
        model_params.controlnet if with_controlnet else "no ControlNet",
        device,
        str(dtype).split(".")[-1],
        config.spatial_attention,
        "on" if model.use_motion_attention else "off",
    )
    return Components(base, model, device, dtype, model_params.vae_chunk)
