"""What each model stage holds and computes, found by running its work on PyTorch's meta device: the
networks built from their configs (no weight is read), the live tensor bytes and the FLOPs traced.

The planner (eym_model/planner.py) turns these counts into predicted peak memory and time per step
with coefficients measured on real runs (benchmarks/planner_calibration.py).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from eym.parameters import typed_section

from .loading import BASE_PARTS, locate, resolve_dtype
from .trainable import select
from .video_model import VideoModelConfig, build_video_model
from .windows import window_starts

DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


@dataclass
class StageWork:
    """One model stage's counts: bytes that stay for the whole stage, the peak of the bytes its
    computations allocate on top of them, FLOPs of one step, and the parameter counts behind them."""

    static_bytes: int
    dynamic_bytes: int
    flops_per_step: float
    parameters: dict = field(default_factory=dict)


class LiveBytes(TorchDispatchMode):
    """The bytes of tensor storages that ops create and that are still referenced, and their peak."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0
        self._alive: set[int] = set()

    def _free(self, key: int, size: int) -> None:
        self._alive.discard(key)
        self.now -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata  # views share their base's storage: counted once
                if key not in self._alive:
                    size = storage.nbytes()
                    self._alive.add(key)
                    self.now += size
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._free, key, size)
        return out


def _memory_efficient_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
    """SDPA as the CPU's flash kernel, xformers or CUDA's kernels run it, without an attention matrix: on
    the meta device PyTorch would pick the math path, which stores one."""
    if attn_mask is not None or kw.get("enable_gqa"):
        return _SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kw)
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, None, query.requires_grad, dropout_p, is_causal, scale=scale
    )[0]


_SDPA = F.scaled_dot_product_attention


@contextmanager
def traced():
    """Live bytes and FLOPs of what runs inside (on meta tensors)."""
    live, flops = LiveBytes(), FlopCounterMode(display=False)
    F.scaled_dot_product_attention = _memory_efficient_sdpa
    try:
        with flops, live:
            yield live, flops
    finally:
        F.scaled_dot_product_attention = _SDPA


def meta_networks(model_params) -> dict:
    """The stage's networks on the meta device in their run precision: unet (inside the video model),
    vae, text_encoder, controlnet and the video model itself."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    m = typed_section("model", model_params)
    base = locate(m.base, "base model", BASE_PARTS, m.allow_download, m.variant)
    controlnet_folder = locate(m.controlnet, "ControlNet", (), m.allow_download, m.variant)
    config = VideoModelConfig.from_params(m.model_dump())
    config.attention_backend = "native"  # memory-efficient kernels are what the trace assumes for all
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(base, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(base, subfolder="vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(base / "text_encoder"))
        controlnet = ControlNetModel.from_config(ControlNetModel.load_config(controlnet_folder))
        model = build_video_model(unet, controlnet, config)
    model.requires_grad_(False)
    return {"model": model, "vae": vae, "text_encoder": text}


@contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def stage_work(nets: dict, stage: str, params: dict, frames: int, height: int, width: int, device: str) -> StageWork:
    """The counts of ``stage`` (stage1, stage2, invert or sample) for a clip of ``frames`` at height×width."""
    m = typed_section("model", params.get("model", {}))
    dtype = resolve_dtype(m.precision, device)
    model, autoencoder = nets["model"], nets["vae"]
    for net in nets.values():
        if next(net.parameters()).dtype != dtype:
            with _quiet_diffusers():  # it warns on every cast of a VAE, meant for real weights
                net.to(dtype)
    weights = sum(parameter_count(n) for n in nets.values())
    counts = {"weights": weights}
    static = weights * DTYPE_BYTES[dtype]
    factor = 2 ** (len(autoencoder.config.block_out_channels) - 1)
    latents = (1, autoencoder.config.latent_channels, frames, height // factor, width // factor)
    check = stage == "invert" and typed_section("inversion", params.get("inversion", {})).check_reconstruction
    decodes = stage == "sample" or check  # the tuning stages only encode
    vae_peak = _vae_peak(autoencoder, min(frames, m.vae_chunk), height, width, dtype, decodes)
    w = typed_section("window", params.get("window", {}))  # a long clip: one window at a time
    windows, window = (
        len(window_starts(frames, w.frames, w.overlap)),
        (*latents[:2], min(frames, w.frames), *latents[3:]),
    )
    if stage in ("stage1", "stage2"):
        p = typed_section(stage, params.get(stage, {}))
        groups = [g for g in p.trainable if g != "motion_attention" or m.motion_attention]
        trained = sum(t.numel() for t in select(model, groups).values())
        counts["trained"] = trained
        static += trained * ((4 - DTYPE_BYTES[dtype]) + (2 if p.use_8bit_adam else 8))  # fp32 masters, Adam
        peak, flops = _training_step(model, groups, window, height, width, dtype)  # a step trains on a window
    else:
        guided = stage == "sample" and typed_section("sampling", params.get("sampling", {})).guidance_scale != 1.0
        with_controlnet = stage == "sample" or typed_section("inversion", params.get("inversion", {})).controlnet
        peak, flops = _inference_step(model, window, height, width, dtype, 2 if guided else 1, with_controlnet or check)
        if stage == "invert":  # its FLOPs: the inversion's step; the check samples once more
            flops = _inference_step(model, window, height, width, dtype, 1, with_controlnet)[1]
        flops *= windows  # every window, each step
    return StageWork(static, max(peak, vae_peak), float(flops), counts)


def _inputs(latents, height, width, dtype, text_dim, batch=1):
    shape = (batch, *latents[1:])
    return (
        torch.zeros(shape, device="meta", dtype=dtype),
        torch.zeros(batch, 77, text_dim, device="meta", dtype=dtype),
        torch.zeros(batch, 3, latents[2], height, width, device="meta", dtype=dtype),
    )


def _training_step(model, groups, latents, height, width, dtype):
    trainable = select(model, groups)
    for param in trainable.values():
        param.requires_grad_(True)
    model.train()
    noisy, text, skeletons = _inputs(latents, height, width, dtype, model.unet.config.cross_attention_dim)
    try:
        with traced() as (live, flops):
            out = model(noisy, torch.tensor([500]), text, skeletons)
            loss = F.mse_loss(out.float(), torch.zeros_like(out, dtype=torch.float32))
            loss.backward()
            del out, loss
    finally:
        for param in trainable.values():
            param.requires_grad_(False)
            param.grad = None
        model.eval()
    return live.peak, flops.get_total_flops()


@torch.no_grad()
def _inference_step(model, latents, height, width, dtype, batch, with_controlnet):
    noisy, text, skeletons = _inputs(latents, height, width, dtype, model.unet.config.cross_attention_dim, batch)
    with traced() as (live, flops):
        model(noisy, torch.tensor([500]), text, skeletons if with_controlnet else None)
    return live.peak, flops.get_total_flops()


_VAE_PEAKS: dict = {}


def _vae_peak(vae, chunk, height, width, dtype, decode: bool) -> int:
    """The larger of encoding ``chunk`` frames and, when the stage decodes, decoding them."""
    key = (id(vae), chunk, height, width, dtype, decode)
    if key not in _VAE_PEAKS:
        _VAE_PEAKS[key] = _traced_vae_peak(vae, chunk, height, width, dtype, decode)
    return _VAE_PEAKS[key]


@torch.no_grad()
def _traced_vae_peak(vae, chunk, height, width, dtype, decode: bool) -> int:
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    with traced() as (live, _):
        vae.encode(torch.zeros(chunk, 3, height, width, device="meta", dtype=dtype))
        if decode:
            vae.decode(
                torch.zeros(
                    chunk, vae.config.latent_channels, height // factor, width // factor, device="meta", dtype=dtype
                )
            )
    return live.peak
