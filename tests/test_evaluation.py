"""Metric formulas against known values, the networks' metrics on tiny random networks, the
unavailable-weights path, and the case report in a real headless browser."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import open_page, tiny_model_params

from eym import metrics
from eym.errors import MissingWeightsError
from eym.metric_models import LPIPS, CLIPScorer, VideoFeatures


def _video(seed=0, frames=4, size=32):
    return np.random.default_rng(seed).integers(20, 230, (frames, size, size, 3), dtype=np.uint8)


def test_identical_videos_give_the_ideal_values():
    video = _video()
    assert metrics.psnr(video, video) == metrics.PSNR_CAP
    assert metrics.ssim(video, video) == pytest.approx(1.0)
    assert metrics.mae(video, video) == 0 and metrics.l1_disco(video, video) == 0


def test_a_known_shift_gives_known_values():
    truth = _video()
    shifted = truth + 10
    assert metrics.psnr(shifted, truth) == pytest.approx(10 * math.log10(255**2 / 100))  # MSE = 100
    assert metrics.mae(shifted, truth) == pytest.approx(10 / 255)
    assert metrics.l1_disco(shifted, truth) == pytest.approx(10 / (32 * 32))
    assert 0 < metrics.ssim(shifted, truth) < 1
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(truth[:2], truth)


def test_region_metrics_see_only_their_region():
    truth = _video()
    edited = truth.copy()
    edited[:, :16] = 255 - edited[:, :16]  # wrong in the top half only
    top = np.zeros(truth.shape[:3], bool)
    top[:, :16] = True
    assert metrics.region_psnr(edited, truth, ~top) == metrics.PSNR_CAP
    assert metrics.region_mae(edited, truth, ~top) == 0
    # SSIM is windowed: the untouched half is near 1, except where its windows reach into the changed half.
    assert metrics.region_ssim(edited, truth, ~top) > 0.85 > 0.2 > metrics.region_ssim(edited, truth, top)
    assert metrics.region_psnr(edited, truth, top) < metrics.psnr(edited, truth) < 20
    assert metrics.region_l1_disco(edited, truth, top) == pytest.approx(
        metrics.region_mae(edited, truth, top) * 255 / 32**2
    )
    assert math.isnan(metrics.region_psnr(edited, truth, np.zeros_like(top)))


def test_temporal_error_sees_flicker_that_per_frame_metrics_miss():
    truth = np.repeat(_video(frames=1), 6, axis=0)  # a still scene
    flicker = truth.astype(int) + np.array([6, -6, 6, -6, 6, -6])[:, None, None, None]
    steady = truth.astype(int) + 6
    flicker, steady = (np.clip(v, 0, 255).astype(np.uint8) for v in (flicker, steady))
    assert metrics.psnr(flicker, truth) == pytest.approx(metrics.psnr(steady, truth), abs=0.1)
    assert metrics.temporal_error(steady, truth) < 1e-3 < 0.03 < metrics.temporal_error(flicker, truth)


def test_person_and_background_metrics_of_an_edit(evaluated_case):
    values = json.loads((evaluated_case / "eval" / "metrics.json").read_text())
    details = json.loads((evaluated_case / "eval" / "details.json").read_text())
    assert details["edit_masks_from"].endswith("edit_masks")  # the puppet world's own masks
    assert 0.02 < details["person_area"] < 0.6
    for name in ("psnr", "ssim", "l1", "l1_disco"):
        assert values[f"{name}_person"] is not None and values[f"{name}_background"] is not None
    assert values["lpips_person"] is None and "lpips_person" in details["unavailable"]


def test_returning_the_source_scores_nothing_on_the_joints_the_edit_must_move(evaluated_case, tiny_models, tmp_path):
    import shutil

    from stages.evaluate import compute

    copy = tmp_path / "puppet-eval"
    shutil.copytree(evaluated_case, copy)
    shutil.rmtree(copy / "sample" / "frames")
    shutil.copytree(copy / "frames" / "source", copy / "sample" / "frames")  # "copy the source" as the edit
    values, details = compute(copy, tiny_model_params(tiny_models))
    assert details["moved_joints"] > 10  # dance -> squat: many joints differ
    assert values["pose_pck"] > 0.2  # the joints the two motions share still match
    assert values["pose_pck_moved"] == 0.0


def test_frechet_distance_of_shifted_gaussians():
    a = np.random.default_rng(0).normal(size=(500, 3))
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert metrics.frechet_distance(a, a + [3, 0, 4]) == pytest.approx(25, rel=1e-6)  # |shift|^2, same covariance


def test_lpips_with_a_local_backbone_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    lpips = LPIPS(str(tmp_path / "alexnet.pth"))
    a, b = _video(1, size=64), _video(2, size=64)
    assert np.allclose(lpips(a, a), 0, atol=1e-6)
    assert (lpips(a, b) > 0).all() and lpips(a, b).shape == (4,)
    half = np.zeros(a.shape[:3], bool)
    half[:, :32] = True
    mixed = np.where(half[..., None], b, a)  # differs from a in the top half only
    assert lpips.region(mixed, a, half) > 2 * lpips.region(mixed, a, ~half) > 0
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPS(str(tmp_path / "missing.pth"))


def _tiny_clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from sandbox.models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def test_clip_scores_with_a_tiny_random_clip(tmp_path):
    _tiny_clip(tmp_path / "clip")
    clip = CLIPScorer(str(tmp_path / "clip"))
    video = _video(size=48)
    assert -100 <= clip.text_alignment(video, "a person waving") <= 100
    still = np.repeat(video[:1], 4, 0)
    assert clip.temporal_consistency(still) == pytest.approx(1.0, abs=1e-5)
    assert clip.temporal_consistency(video) < 1.0
    with pytest.raises(MissingWeightsError, match="not available locally"):
        CLIPScorer("openai/not-in-the-cache")


def test_clip_loads_by_hub_id_from_the_local_hugging_face_cache(tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "hub/models--someone--tiny-clip/snapshots/0123abcd"
    _tiny_clip(tmp_path / "clip")
    shutil.copytree(tmp_path / "clip", snapshot)
    (tmp_path / "hub/models--someone--tiny-clip/refs").mkdir()
    (tmp_path / "hub/models--someone--tiny-clip/refs/main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clip = CLIPScorer("someone/tiny-clip")
    assert clip.temporal_consistency(np.repeat(_video(size=48)[:1], 2, 0)) == pytest.approx(1.0, abs=1e-5)


def test_video_features_with_the_stylegan_v_calling_convention(tmp_path):
    class TinyI3D(torch.nn.Module):
        def forward(
            self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
        ) -> torch.Tensor:
            if rescale:
                x = x / 127.5 - 1
            return torch.stack([x.mean((1, 2, 3, 4)), x.std((1, 2, 3, 4)), x[:, 0].mean((1, 2, 3))], 1)

    torch.jit.script(TinyI3D()).save(str(tmp_path / "i3d.pt"))
    network = VideoFeatures(str(tmp_path / "i3d.pt"), "FVD", min_frames=4)
    feats = network([_video(i) for i in range(3)])
    assert feats.shape == (3, 3)
    with pytest.raises(ValueError, match="at least 10 frames"):
        VideoFeatures(str(tmp_path / "i3d.pt"), "FVD")([_video()])
    with pytest.raises(MissingWeightsError, match="FVD needs a TorchScript"):
        VideoFeatures(None, "FVD")


def test_unavailable_metrics_are_reported_with_reasons_not_zeros(evaluated_case):
    values = json.loads((evaluated_case / "eval" / "metrics.json").read_text())
    details = json.loads((evaluated_case / "eval" / "details.json").read_text())
    for name in ("lpips", "lpips_n", "lpips_s", "clip_ta", "clip_tc"):
        assert values[name] is None and details["unavailable"][name]
    assert values["psnr"] > 0 and 0 <= values["ssim"] <= 1 and values["l1"] > 0


def test_networks_given_in_params_are_used(evaluated_case, tiny_models, tmp_path):
    import torchvision

    from stages.evaluate import compute

    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    _tiny_clip(tmp_path / "clip")
    params = tiny_model_params(
        tiny_models,
        evaluation={"lpips_backbone": str(tmp_path / "alexnet.pth"), "clip": str(tmp_path / "clip"), "device": "cpu"},
    )
    values, details = compute(evaluated_case, params)
    assert details["unavailable"] == {}
    assert all(values[m] is not None for m in ("lpips", "lpips_n", "lpips_s", "clip_ta", "clip_tc"))


def test_case_report_in_chromium(evaluated_case, browser):
    page, errors = open_page(browser, evaluated_case / "eval" / "report.html")
    assert errors == []
    assert "puppet-eval" in page.title()
    from stages.evaluate import ALL_METRICS

    rows = page.locator("table tbody tr")
    assert rows.count() == len(ALL_METRICS) == 22
    assert page.locator("td.na").count() == 7  # the network metrics (LPIPS also per region), each with its reason
    assert page.locator("svg").count() == 2  # stage-1 and stage-2 loss curves
    page.wait_for_function("document.querySelector('video').readyState >= 2", timeout=15000)
    assert page.evaluate("document.querySelector('img.edit').naturalWidth") == 128


def test_batch_summary_pairs_variants_with_bootstrap_intervals(tmp_path):
    import yaml

    from stages.aggregate import aggregate

    source = tmp_path / "sources" / "s"
    source.mkdir(parents=True)
    (source / "case.yaml").write_text(yaml.safe_dump({"id": "s", "source": "../../clip.mp4"}))
    rows = []
    rng = np.random.default_rng(0)
    for k in range(6):
        for variant, shift in (("worse", -2.0), ("full", 0.0), ("also", -1.0)):
            case = tmp_path / "cases" / f"e{k}-{variant}"
            case.mkdir(parents=True)
            (case / "case.yaml").write_text(
                yaml.safe_dump({"id": case.name, "source_dir": "../../sources/s", "reference": f"../../ref{k}.mp4"})
            )
            value = 20.0 + k + shift + rng.normal(0, 0.1)
            rows.append(
                {
                    "case": case.name,
                    "case_dir": str(case),
                    "variant": variant,
                    "status": "ok",
                    "psnr_person": value,
                    "pose_pck": 0.5,
                }
            )
    result = aggregate(rows, tmp_path / "report", {"evaluation": {}})
    difference = result["vs_full"]["worse"]["psnr_person"]
    assert difference["n"] == 6 and difference["mean"] == pytest.approx(-2.0, abs=0.1)
    assert difference["low"] < difference["mean"] < difference["high"] < 0  # the interval excludes 0
    assert result["vs_full"]["worse"]["pose_pck"]["mean"] == 0
    assert list(result["variants"]) == ["full", "worse", "also"]  # full first, then as the manifest lists them
    assert list(result["vs_full"]) == ["worse", "also"]
    assert (tmp_path / "report" / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "Paired difference to `full`" in (tmp_path / "report" / "summary.md").read_text()
