"""The video model on tiny random weights: inflation, MA, trainable sets, saving, DDIM, loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eym.errors import InputError, MissingWeightsError
from eym_model.diffusion import ddim_invert, ddim_sample, encode_prompts, training_loss
from eym_model.loading import load_base_model, load_controlnet
from eym_model.trainable import load_trainable, save_trainable, select, set_trainable
from eym_model.video_model import VideoModelConfig, build_video_model

FRAMES = 4


def fresh_model(tiny_models, **config):
    """The tiny video model (base loaded from its folder, new layers), with ``config`` overrides."""
    base = load_base_model(str(tiny_models[0]))
    config = VideoModelConfig(
        **{"motion_attention_dim": 16, "motion_attention_heads": 2, "temporal_head_dim": 8, **config}
    )
    controlnet = load_controlnet(str(tiny_models[1])) if config.motion_attention else None
    return base, build_video_model(base.unet, controlnet, config)


def _loss(model, base):
    """The tuning loss on the fixed test clip, with a fixed timestep and noise."""
    from diffusers import DDPMScheduler

    latents, skeletons, text = _inputs(base)
    scheduler = DDPMScheduler.from_config(base.scheduler_config)
    return training_loss(model, scheduler, latents, text, skeletons, generator=torch.Generator().manual_seed(0))


def _inputs(base, seed=0, frames=FRAMES):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, frames, 8, 8, generator=g)
    skeletons = torch.rand(1, 3, frames, 64, 64, generator=g)
    text = encode_prompts(base.tokenizer, base.text_encoder, ["a person waving"])
    return latents, skeletons, text


def _per_frame_image_model(model, latents, t, text, skeletons):
    """The untouched 2-D UNet + ControlNet run frame by frame, with stock attention processors."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for _, block in model._blocks:
        block.attn1.set_processor(AttnProcessor2_0())
    frames = []
    for f in range(latents.shape[2]):
        x, cond = latents[:, :, f], skeletons[:, :, f]
        with torch.no_grad():
            down, mid = model.controlnet(x, t, text, controlnet_cond=cond, return_dict=False)
            out = model.unet.__class__.forward(
                model.unet, x, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample
        frames.append(out)
    return torch.stack(frames, 2)


def test_inflated_model_at_init_equals_the_image_model_frame_by_frame(tiny_video_model):
    base, model = tiny_video_model
    latents, skeletons, text = _inputs(base)
    model.set_spatial_attention("frame")
    with torch.no_grad():
        video = model(latents, 500, text, skeletons)
    # Hooks stay installed, so switch them off by giving the temporal layers one frame at a time.
    model.context.num_frames = 1
    image = _per_frame_image_model(model, latents, torch.tensor([500]), text, skeletons)
    torch.testing.assert_close(video, image, atol=1e-5, rtol=1e-5)
    # RCA changes the output (it attends to the neighbours), temporal layers at init do not.
    model.set_spatial_attention("rca")
    with torch.no_grad():
        assert (model(latents, 500, text, skeletons) - video).abs().max() > 1e-4


def test_motion_attention_is_the_identity_at_init_and_its_bypass_is_plain_controlnet(tiny_video_model):
    base, model = tiny_video_model
    latents, skeletons, text = _inputs(base)
    with torch.no_grad():
        with_ma = model(latents, 300, text, skeletons)
        model.use_motion_attention = False
        bypass = model(latents, 300, text, skeletons)
        model.use_motion_attention = True
        # The bypass is diffusers' own ControlNet path: residuals into the UNet's arguments.
        b, c, f, h, w = latents.shape
        sample = latents.transpose(1, 2).reshape(f, c, h, w)
        cond = skeletons.transpose(1, 2).reshape(f, 3, 64, 64)
        t, txt = torch.full((f,), 300), text.repeat(f, 1, 1)
        down, mid = model.controlnet(sample, t, txt, controlnet_cond=cond, return_dict=False)
        native = model.unet(
            sample, t, txt, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        no_control = model(latents, 300, text, None)
    assert torch.equal(with_ma, bypass)
    torch.testing.assert_close(bypass, native.reshape(b, f, c, h, w).transpose(1, 2), atol=0, rtol=0)
    assert (bypass - no_control).abs().max() > 1e-4  # the skeletons matter
    # Once MA's output projection is non-zero, MA changes the result.
    with torch.no_grad():
        for block in model.motion_attention.blocks:
            block.out.weight.normal_(std=0.05)
        assert (model(latents, 300, text, skeletons) - bypass).abs().max() > 1e-4


def _transformer_block_names(model):
    return [name for name, _ in model._blocks]


def test_trainable_sets_are_exactly_the_papers(tiny_video_model):
    _, model = tiny_video_model
    blocks = _transformer_block_names(model)
    stage1 = set(select(model, ["temporal", "motion_attention"]))
    assert stage1 == {n for n, _ in model.named_parameters() if n.startswith(("temporal.", "motion_attention."))}
    stage2 = set(select(model, ["rca", "motion_attention"]))
    attn1 = {
        f"unet.{b}.attn1.{p}"
        for b in blocks
        for p in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias")
    }
    assert stage2 == attn1 | {n for n in stage1 if n.startswith("motion_attention.")}
    tav = set(select(model, ["attn1.to_q", "attn2.to_q", "temporal"]))
    assert {n for n in tav if n.startswith("unet.")} == {
        f"unet.{b}.attn{i}.to_q.weight" for b in blocks for i in (1, 2)
    }
    with pytest.raises(ValueError, match="unknown trainable group"):
        select(model, ["everything"])


@pytest.mark.parametrize("groups", [["temporal", "motion_attention"], ["spatial_attention", "motion_attention"]])
def test_one_optimisation_step_changes_only_the_trainable_set(tiny_video_model, groups):
    base, model = tiny_video_model

    trainable = set_trainable(model, groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    loss = _loss(model, base)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= set(trainable)
    with_gradient = {n for n, p in trainable.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_gradient and with_gradient <= changed
    for group in groups:
        assert changed & set(select(model, [group])), group


def test_gradient_checkpointing_gives_the_same_gradients(tiny_models):

    grads = []
    for checkpointing in (False, True):
        base, model = fresh_model(tiny_models, gradient_checkpointing=checkpointing)
        model.train()
        params = set_trainable(model, ["temporal", "spatial_attention", "motion_attention"])
        torch.manual_seed(0)
        with torch.no_grad():  # give zero-initialised outputs weight so that every gradient flows
            for name, p in params.items():
                if name.endswith(("out.weight", "to_out.0.weight")):
                    p.normal_(std=0.05)
        loss = _loss(model, base)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in params.items()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_trainable_weights_round_trip_bit_exactly(tiny_models, tmp_path):
    def fresh():
        return fresh_model(tiny_models)[1]

    groups = ["spatial_attention", "motion_attention"]
    model = fresh()
    with torch.no_grad():
        for p in select(model, groups).values():
            p.add_(torch.randn_like(p))
    save_trainable(model, tmp_path / "w.safetensors", groups)
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "w.safetensors")) == set(select(model, groups))
    other = fresh()
    loaded = load_trainable(other, tmp_path / "w.safetensors")
    assert loaded == sorted(select(model, groups))
    for name, p in other.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), name
    # A model without MA cannot take the file.
    _, no_ma = fresh_model(tiny_models, motion_attention=False)
    with pytest.raises(InputError, match="do not exist in this model"):
        load_trainable(no_ma, tmp_path / "w.safetensors")


def test_ddim_inversion_then_sampling_reconstructs_the_latents(tiny_video_model):
    base, model = tiny_video_model
    # Random weights predict erratic noise; scaling the UNet's output makes the predictor as smooth
    # as a trained one is along a DDIM path (see docs/benchmarks.md for the unscaled figure).
    with torch.no_grad():
        model.unet.conv_out.weight.mul_(0.1)
        model.unet.conv_out.bias.mul_(0.1)
    latents, skeletons, _ = _inputs(base, seed=3)
    empty = encode_prompts(base.tokenizer, base.text_encoder, [""])
    config = base.scheduler_config
    noise = ddim_invert(model, latents, empty, config, steps=50, skeletons=skeletons, progress=False)
    again = ddim_sample(model, noise, empty, config, steps=50, skeletons=skeletons, progress=False)
    error = (again - latents).abs().mean().item()
    from_random = ddim_sample(
        model, torch.randn_like(noise), empty, config, steps=50, skeletons=skeletons, progress=False
    )
    baseline = (from_random - latents).abs().mean().item()
    assert (noise - latents).abs().mean() > 0.5 * latents.abs().mean()  # it really went up the noise levels
    assert error < 0.02 and error < 0.01 * baseline


def test_guidance_scale_one_is_plain_sampling(tiny_video_model):
    base, model = tiny_video_model
    latents, skeletons, text = _inputs(base)
    empty = encode_prompts(base.tokenizer, base.text_encoder, [""])
    plain = ddim_sample(model, latents, text, base.scheduler_config, steps=3, skeletons=skeletons, progress=False)
    one = ddim_sample(
        model,
        latents,
        text,
        base.scheduler_config,
        steps=3,
        skeletons=skeletons,
        guidance_scale=1.0,
        uncond=empty,
        progress=False,
    )
    guided = ddim_sample(
        model,
        latents,
        text,
        base.scheduler_config,
        steps=3,
        skeletons=skeletons,
        guidance_scale=7.5,
        uncond=empty,
        progress=False,
    )
    assert torch.equal(plain, one)
    assert (guided - plain).abs().max() > 1e-4


def test_loader_reads_the_saved_tiny_folders(tiny_models):
    base = load_base_model(str(tiny_models[0]))
    assert base.unet.config.cross_attention_dim == base.text_encoder.config.hidden_size
    assert base.scheduler_config["_class_name"] == "DDIMScheduler"
    controlnet = load_controlnet(str(tiny_models[1]))
    assert not any(p.requires_grad for p in controlnet.parameters())


def test_missing_weights_fail_fast_with_instructions(tmp_path, tiny_models):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_base_model(str(tmp_path / "nowhere"))
    with pytest.raises(
        MissingWeightsError,
        match=r"(?s)not found in the local Hugging Face cache.*hf download someone/not-a-cached-model",
    ):
        load_base_model("someone/not-a-cached-model")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(MissingWeightsError, match="missing vae, text_encoder, tokenizer, scheduler"):
        load_base_model(str(tmp_path / "half"))
    with pytest.raises(MissingWeightsError, match="not a diffusers model folder"):
        load_controlnet(str(tiny_models[0]))  # the base folder has no ControlNet config.json


def test_the_full_size_model_has_stable_diffusion_15s_exact_architecture():
    """benchmarks/full_size_model.py builds SD 1.5's UNet, VAE and CLIP text encoder with the released
    checkpoints' parameter counts, and ControlNet-OpenPose's configuration (built on the meta device:
    no memory); its tokenizer's ids fit CLIP's vocabulary."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "full_size_model.py"
    spec = importlib.util.spec_from_file_location("full_size_model", path)
    full_size = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(full_size)
    parts = full_size.components("meta")
    counts = {name: sum(p.numel() for p in parts[name].parameters()) for name in full_size.PARAMETERS}
    assert counts == full_size.PARAMETERS
    config = parts["controlnet"].config
    assert list(config.conditioning_embedding_out_channels) == [16, 32, 96, 256] and config.cross_attention_dim == 768
    ids = parts["tokenizer"]("a man in a red shirt dancing in front of a white wall, ünïcode too").input_ids
    assert (
        max(ids) < full_size.TEXT["vocab_size"] and len(parts["tokenizer"]("x", padding="max_length").input_ids) == 77
    )


def test_the_gpu_table_runs_on_this_cpu_at_a_toy_size(tmp_path):
    """benchmarks/gpu_table.py, the measurement a lent GPU runs, at a toy size on the CPU: every stage
    timed with and without checkpointing, and the whole edit extrapolated from them."""
    import importlib.util
    import json
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))  # as when run as a script: its sibling full_size_model
    try:
        spec = importlib.util.spec_from_file_location("gpu_table", folder / "gpu_table.py")
        gpu_table = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gpu_table)
        gpu_table.main(["--config", "tiny", "--size", "64", "--frames", "2", "--repeats", "1", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(folder))
    rows = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert [(r["frames"], r["checkpointing"]) for r in rows] == [(2, False), (2, True)]
    assert all(r["stages"][s]["seconds"] > 0 for r in rows for s in ("stage1", "stage2", "invert", "sample"))
    assert (tmp_path / "table.md").read_text().count("\n| 2 |") == 2


@pytest.mark.parametrize("count,frames,overlap", [(20, 8, 3), (17, 16, 4), (40, 16, 0), (9, 4, 3), (8, 16, 4)])
def test_windows_cover_every_frame_and_their_weights_sum_to_one(count, frames, overlap):
    """Each frame lies in a window and its fused weights sum to one; a model that treats frames one by
    one gives, in windows, what it gives on the whole clip; a clip within one window is one call."""
    from eym_model.windows import Windowed, fusion_weights, window_starts

    starts = window_starts(count, frames, overlap)
    covered = torch.zeros(count)
    for start in starts:
        assert 0 <= start and start + min(frames, count) <= count
        covered[start : start + frames] += 1
    assert covered.min() >= 1 and starts[0] == 0
    weights = fusion_weights(count, frames, overlap)
    assert torch.allclose(weights.sum(dim=0), torch.ones(count, dtype=torch.float64), atol=1e-12)
    for k, start in enumerate(starts):  # a window weighs exactly the frames it covers
        inside = torch.zeros(count, dtype=torch.bool)
        inside[start : start + frames] = True
        assert (weights[k][inside] > 0).all() and (weights[k][~inside] == 0).all()

    calls = []

    def per_frame(x, t, text, skeletons, scale):  # no frame sees another
        calls.append(x.shape[2])
        return torch.sin(x) * scale + skeletons.mean(dim=(1, 3, 4))[:, None, :, None, None]

    x, skeletons = torch.randn(1, 4, count, 3, 3), torch.rand(1, 3, count, 6, 6)
    fused = Windowed(per_frame, frames, overlap)(x, 0, None, skeletons, 1.5)
    assert len(calls) == len(starts) and max(calls) == min(frames, count)
    assert torch.allclose(fused, per_frame(x, 0, None, skeletons, 1.5), atol=1e-6)


def test_a_long_clip_is_inverted_and_sampled_in_windows(tiny_video_model):
    """14 frames in windows of 6 sharing 2 (3 windows): DDIM inversion then sampling, both fused
    at every step, still gives the clip back; a clip no longer than a window is the plain model's, bit for bit."""
    from eym_model.windows import Windowed

    base, model = tiny_video_model
    with torch.no_grad():  # as in the reconstruction test above: a predictor as smooth as a trained one
        model.unet.conv_out.weight.mul_(0.1)
        model.unet.conv_out.bias.mul_(0.1)
    latents, skeletons, _ = _inputs(base, seed=3, frames=14)
    empty = encode_prompts(base.tokenizer, base.text_encoder, [""])
    windowed = Windowed(model, 6, 2)
    assert windowed.windows(14) == 3
    noise = ddim_invert(windowed, latents, empty, base.scheduler_config, steps=50, skeletons=skeletons, progress=False)
    again = ddim_sample(windowed, noise, empty, base.scheduler_config, steps=50, skeletons=skeletons, progress=False)
    assert again.shape == latents.shape and (noise - latents).abs().mean() > 0.5 * latents.abs().mean()
    assert (again - latents).abs().mean().item() < 0.02
    short, short_skeletons, text = _inputs(base, frames=6)
    plain = ddim_sample(model, short, text, base.scheduler_config, steps=3, skeletons=short_skeletons, progress=False)
    one = ddim_sample(windowed, short, text, base.scheduler_config, steps=3, skeletons=short_skeletons, progress=False)
    assert torch.equal(plain, one)
