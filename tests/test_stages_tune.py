"""Tuning, inversion and sampling stages on the tiny model and a short puppet clip."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import tiny_model_params, write_params
from safetensors.torch import load_file

from eym.errors import TrainingError
from eym.media import read_frames, read_video
from stages import stage1, stage2
from stages.common import WEIGHTS


def _copy(case, tmp_path, name="case"):
    target = tmp_path / name
    shutil.copytree(case, target)
    return target


def _cli(stage, case, params_file, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{stage}", str(case), "--params", str(params_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _loss_log(case, stage):
    rows = (case / stage / "loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss\tlr\tseconds"
    return np.array([[float(v) for v in row.split("\t")] for row in rows[1:]])


@pytest.fixture(scope="module")
def edited_case(tmp_path_factory, preprocessed_128, tiny_models):
    """All four stages run from the command line, as DVC and Prefect run them."""
    case = _copy(preprocessed_128, tmp_path_factory.mktemp("tuned"))
    params = write_params(case.parent / "params.yaml", tiny_model_params(tiny_models, stage1={"steps": 40, "lr": 3e-3}))
    for stage in ("stage1", "stage2", "invert", "sample"):
        proc = _cli(stage, case, params)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    return case


def test_stage1_loss_goes_down(edited_case):
    loss = _loss_log(edited_case, "stage1")
    assert loss[:, 0].tolist() == list(range(1, 41))
    # Per-step losses are noisy (random timestep and noise); compare the first and last quarters.
    assert loss[-10:, 1].mean() < 0.9 * loss[:10, 1].mean()
    assert np.all(np.diff(loss[:, 3]) > 0)  # seconds accumulate


def test_weight_files_hold_only_the_intended_tensors(edited_case):
    first = set(load_file(edited_case / "stage1" / WEIGHTS))
    second = set(load_file(edited_case / "stage2" / WEIGHTS))
    assert first and all(n.startswith(("temporal.", "motion_attention.")) for n in first)
    assert any(n.startswith("temporal.") for n in first) and any(n.startswith("motion_attention.") for n in first)
    assert all(n.startswith("motion_attention.") or ".attn1." in n for n in second)
    assert {n for n in second if ".attn1." in n} and not any(n.startswith("temporal.") for n in second)
    meta = json.loads((edited_case / "stage2" / "meta.json").read_text())
    assert meta["trainable_groups"] == ["spatial_attention", "motion_attention"] and meta["masked_frames"] is False


def test_inversion_and_sampling_outputs(edited_case):
    latents = load_file(edited_case / "inversion" / "latents.safetensors")
    assert latents["noise"].shape == (1, 4, 8, 16, 16)
    info = json.loads((edited_case / "inversion" / "inversion.json").read_text())
    assert {"reconstruction_psnr", "vae_psnr", "reconstruction_latent_mae"} <= set(info)
    edited = read_video(edited_case / "sample" / "edited.mp4")
    assert edited.shape == (8, 128, 128, 3)
    assert read_frames(edited_case / "sample" / "frames").shape == (8, 128, 128, 3)
    import decord

    reader = decord.VideoReader(str(edited_case / "sample" / "edited.mp4"))
    assert reader.get_avg_fps() == pytest.approx(6.0)  # 12 fps source, stride 2
    assert read_video(edited_case / "sample" / "comparison.mp4").shape == (8, 128, 5 * 128, 3)  # with the ground truth
    from PIL import Image

    with Image.open(edited_case / "sample" / "edited.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (128, 128)


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, preprocessed_128, tiny_models):
    """A long clip's tuning (each step on a window of 4 of its 8 frames) killed after a checkpoint resumes
    to the uninterrupted run's weights and losses."""
    settings = tiny_model_params(tiny_models, stage1={"steps": 24, "checkpoint_every": 4})
    params = write_params(tmp_path / "params.yaml", {**settings, "window": {"frames": 4, "overlap": 1}})
    straight = _copy(preprocessed_128, tmp_path, "straight")  # from the command line too, so that every run
    proc = _cli("stage1", straight, params)  # here has the same process settings (torch's threads)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    killed = _copy(preprocessed_128, tmp_path, "killed")
    proc = _cli("stage1", killed, params, start_new_session=True)
    checkpoint = killed / "stage1.ckpt" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its first checkpoint"
    assert not (killed / "stage1").exists()  # nothing half-written for DVC to trust
    garbled = _copy(killed, tmp_path, "garbled")  # the same checkpoint, truncated (a full disk, say)
    bad = garbled / "stage1.ckpt" / "checkpoint.pt"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])

    proc = _cli("stage1", killed, params)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming after step" in err and "each on a window of 4 of the 8 frames" in err
    assert json.loads((straight / "stage1" / "meta.json").read_text())["window_frames"] == 4
    assert not checkpoint.parent.exists()
    a, b = load_file(straight / "stage1" / WEIGHTS), load_file(killed / "stage1" / WEIGHTS)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-6, err_msg=name)
    np.testing.assert_allclose(_loss_log(straight, "stage1")[:, 1], _loss_log(killed, "stage1")[:, 1], atol=1e-6)

    # An unreadable checkpoint is named, moved aside for inspection, and the stage starts again from step 0.
    proc = _cli("stage1", garbled, params)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"the checkpoint {bad} cannot be read" in err and "starts again from step 0" in err, err
    assert (garbled / "stage1.unreadable.ckpt" / "checkpoint.pt").is_file() and not bad.parent.exists()
    assert load_file(garbled / "stage1" / WEIGHTS).keys() == a.keys()
    np.testing.assert_allclose(_loss_log(straight, "stage1")[:, 1], _loss_log(garbled, "stage1")[:, 1], atol=1e-6)


def test_nan_loss_stops_the_stage_and_saves_nothing(tmp_path, preprocessed_128, tiny_models):
    case = _copy(preprocessed_128, tmp_path)
    params = tiny_model_params(tiny_models, stage1={"steps": 6, "lr": 1.0e12, "max_grad_norm": 1.0e12})
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d+; nothing was saved"):
        stage1.run(case, params)
    assert not (case / "stage1").exists()


def test_a_write_the_system_refuses_is_the_stages_last_line(tmp_path, preprocessed_128, tiny_models):
    """A file size limit (as a full disk does) makes saving the weights fail: the stage's last line says
    so in words eym-edit shows, with no traceback and no half-written output."""
    import resource

    case = _copy(preprocessed_128, tmp_path)
    params = write_params(tmp_path / "params.yaml", tiny_model_params(tiny_models, stage1={"steps": 2}))

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))

    proc = _cli("stage1", case, params, preexec_fn=small_files)
    _, err = proc.communicate(timeout=300)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 1 and "stage1 failed: " in last and "File too large" in last, err[-3000:]
    assert "a write failed: is the disk full, or a file size limit reached?" in last and "Traceback" not in err
    assert not (case / "stage1").exists()


@pytest.mark.parametrize(
    "variant, overrides, expect",
    [
        (
            "w/o MA",
            {"model": {"motion_attention": False}},
            lambda names: not any("motion_attention" in n for n in names),
        ),
        (
            "w/o STL",
            {
                "stage1": {"enabled": False},
                "stage2": {"trainable": ["temporal", "spatial_attention", "motion_attention"], "steps": 4},
            },
            lambda names: any(n.startswith("temporal.") for n in names) and any(".attn1." in n for n in names),
        ),
        (
            "Tune-A-Video",
            {
                "model": {"spatial_attention": "sparse_causal", "motion_attention": False},
                "stage1": {"enabled": False},
                "stage2": {"trainable": ["attn1.to_q", "attn2.to_q", "temporal"]},
            },
            lambda names: {n.split(".")[-2] for n in names if n.startswith("unet.")} == {"to_q"},
        ),
    ],
)
def test_ablations_are_parameters(tmp_path, preprocessed_128, tiny_models, variant, overrides, expect):
    case = _copy(preprocessed_128, tmp_path)
    params = tiny_model_params(tiny_models, **overrides)
    stage1.run(case, params)
    stage2.run(case, params)
    assert expect(set(load_file(case / "stage2" / WEIGHTS))), variant
    if not params["stage1"]["enabled"]:
        assert load_file(case / "stage1" / WEIGHTS) == {}
        assert json.loads((case / "stage1" / "meta.json").read_text())["skipped"] is True


def test_each_tuning_stage_draws_its_own_noise_stream(tmp_path, preprocessed_128, tiny_models):
    """Same seed, same inputs, same trainable set, no learning: stage 1 and stage 2 still see
    different noise and timesteps; a stage run twice sees the same."""
    same = {"steps": 3, "lr": 0.0, "trainable": ["temporal"], "masked": False, "seed": 33}
    params = tiny_model_params(tiny_models, stage1=same, stage2=same)
    first, again = _copy(preprocessed_128, tmp_path, "a"), _copy(preprocessed_128, tmp_path, "b")
    for case in (first, again):
        stage1.run(case, params)
    stage2.run(first, params)
    np.testing.assert_array_equal(_loss_log(first, "stage1")[:, 1], _loss_log(again, "stage1")[:, 1])
    assert not np.allclose(_loss_log(first, "stage1")[:, 1], _loss_log(first, "stage2")[:, 1])


def test_sampling_refuses_a_step_count_other_than_the_inversion(edited_case, tmp_path, tiny_models):
    from eym.errors import InputError
    from stages import sample

    case = _copy(edited_case, tmp_path)
    params = tiny_model_params(tiny_models, inversion={"steps": 5}, sampling={"steps": 7})
    with pytest.raises(InputError, match="inverted with 5 DDIM steps, but sampling.steps is 7"):
        sample.run(case, params)
