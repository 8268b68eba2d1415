"""eym-mini: seed ranges kept apart, its tokenizer, its training phases (resumable), and the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import REPO, make_case_dir, repo_params

from eym.keypoints import read_keypoints
from eym.puppet.seeds import EVALUATION, HELDOUT, TRAINING, check_seed, seeds_for


def test_evaluation_and_training_seeds_never_meet(tmp_path):
    from eym.puppet.cases import make_case
    from eym_model.mini.data import actor_frames

    ranges = [set(range(r.start, r.start + 1000)) | {r.stop - 1} for r in (EVALUATION, TRAINING, HELDOUT)]
    assert EVALUATION.stop <= TRAINING.start and TRAINING.stop <= HELDOUT.start
    assert not (ranges[0] & ranges[1]) and not (ranges[1] & ranges[2])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    benchmark = params["puppet"]["seed"] * 100003 + np.arange(params["puppet"]["cases"])
    assert all(int(s) in EVALUATION for s in benchmark)
    demo = (REPO / "scripts" / "run-demo.sh").read_text()
    assert "--seed 1 " in demo and 1 in EVALUATION
    with pytest.raises(ValueError, match="training range"):
        make_case(tmp_path / "c", seed=TRAINING.start + 5, size=64, num_frames=2)
    with pytest.raises(ValueError, match="evaluation range"):
        actor_frames(3, "training", 64, 1)
    assert check_seed(seeds_for("heldout", 2)[1], "heldout") == HELDOUT.start + 1


def test_tokenizer_holds_every_puppet_prompt_word_as_one_token(tmp_path):
    from eym.puppet.cases import make_case, read_case_info
    from eym_model.mini.tokenizer import mini_tokenizer, puppet_words

    tokenizer = mini_tokenizer()
    for word in puppet_words():
        assert len(tokenizer(word).input_ids) == 3, word  # start, the word, end
    make_case(tmp_path / "c", seed=5, size=64, num_frames=2)
    prompt = read_case_info(tmp_path / "c")["prompt"]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(prompt).input_ids)[1:-1]
    assert all(t.endswith("</w>") for t in tokens), tokens  # whole words (and "-"), no byte pieces
    assert tokenizer("Any other text, even ünïcode!").input_ids[-1] == tokenizer.eos_token_id


TINY_MINI = {
    "eym_mini": {
        "data": {"size": 64, "train_actors": 6, "heldout_actors": 2, "poses_per_actor": 2, "workers": 1},
        "vae": {
            "block_out_channels": [8, 8, 16, 16],
            "norm_num_groups": 4,
            "steps": 4,
            "batch": 2,
            "warmup": 1,
            "checkpoint_every": 1,
            "heldout_every": 2,
            "heldout_check_frames": 2,
        },
        "diffusion": {
            "text_encoder": {"hidden_size": 16, "intermediate_size": 32, "heads": 2, "layers": 1},
            "unet": {"block_out_channels": [16, 32], "heads": 2, "norm_num_groups": 8},
            "steps": 3,
            "batch": 2,
            "warmup": 1,
            "checkpoint_every": 1,
            "controlnet_dropout": 0.5,
        },
        "export": {"eval_frames": 2, "eval_steps": 2, "detect_size": 64},
    }
}


def _phase(root, phase, *extra, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "eym_model.mini",
            phase,
            "--params",
            str(REPO / "params.yaml"),
            "--params",
            str(root / "tiny.yaml"),
            "--root",
            str(root),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture(scope="module")
def tiny_mini(tmp_path_factory):
    """eym-mini's four phases at a toy size, run from the command line as DVC runs them, then shipped."""
    root = tmp_path_factory.mktemp("mini")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_MINI))
    for phase in ("data", "vae", "diffusion", "export", "ship"):
        result = _phase(root, phase)
        assert result.returncode == 0, phase + result.stderr[-3000:]
    return root


def test_phases_write_an_sd15_layout_that_the_project_and_diffusers_load(tiny_mini):
    import json

    from eym_model.components import load_components

    base, controlnet = tiny_mini / "models/eym-mini/base", tiny_mini / "models/eym-mini/controlnet"
    for part in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
        assert (base / part).is_dir(), part
    components = load_components(
        {
            "base": str(base),
            "controlnet": str(controlnet),
            "device": "cpu",
            "motion_attention_dim": 8,
            "motion_attention_heads": 2,
            "temporal_head_dim": 8,
        }
    )
    assert components.latent_factor() == 16
    metrics = json.loads((tiny_mini / "models/eym-mini/metrics.json").read_text())
    assert metrics["controlnet_eval_frames"] == 2 and metrics["vae_heldout_psnr"] > 0  # the pipeline ran
    card = (tiny_mini / "models/eym-mini/README.md").read_text()
    assert "not a model of real footage" in card and "dvc repro eym_mini" in card
    assert "guidance 1.0, ControlNet scale 1.5: the edits' sampling settings" in card  # params.yaml's check
    assert "controlnet_pck_person_found" in metrics  # wrong pose told apart from no figure found
    assert metrics["controlnet_pck_other_skeletons"] >= 0  # the chance level beside the score
    assert "padded by 0.25 of their side before detection" in card  # the detector's set-up is stated
    d = TINY_MINI["eym_mini"]["diffusion"]
    assert f"| {d['steps']} x {d['batch']} (" in card and " CPU, " in card  # steps x batch (machine, minutes)
    for phase in ("vae", "diffusion"):
        rows = (tiny_mini / f"models/eym-mini/logs/{phase}_loss.tsv").read_text().splitlines()
        assert rows[0].startswith("step\tloss\tlr\tseconds") and len(rows) == 1 + TINY_MINI["eym_mini"][phase]["steps"]


def test_ship_copies_the_release_that_export_made_and_nothing_else_writes_the_shipped_model(tiny_mini, tmp_path):
    release, shipped = tiny_mini / "build/eym-mini/release", tiny_mini / "models/eym-mini"
    for part in (
        "base/unet/diffusion_pytorch_model.safetensors",
        "controlnet/config.json",
        "metrics.json",
        "README.md",
    ):
        assert (release / part).read_bytes() == (shipped / part).read_bytes(), part
    assert (tiny_mini / "docs/eym-mini-controlnet.png").read_bytes() == (release / "controlnet.png").read_bytes()
    assert (shipped / "logs/diffusion_runs.tsv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "tiny.yaml").write_text(yaml.safe_dump(TINY_MINI))
    refused = _phase(empty, "ship")
    assert refused.returncode == 2 and "no complete release to ship" in refused.stderr, refused.stderr[-2000:]
    assert not (empty / "models").exists()


def test_a_phase_stopped_by_its_time_budget_resumes_to_the_same_weights(tiny_mini, tmp_path):
    from safetensors.torch import load_file

    root = tmp_path / "again"
    root.mkdir()
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_MINI))
    (root / "data").symlink_to(tiny_mini / "data")
    stopped = _phase(root, "vae", env={"EYM_MINI_MAX_MINUTES": "0.00001"})
    assert stopped.returncode == 3, stopped.stderr[-2000:]
    assert "stopped at step 1 of 4" in stopped.stderr and (root / "build/eym-mini/vae.ckpt/checkpoint.pt").is_file()
    resumed = _phase(root, "vae")
    assert resumed.returncode == 0 and "resuming after step 1" in resumed.stderr
    a = load_file(tiny_mini / "build/eym-mini/vae/diffusion_pytorch_model.safetensors")
    b = load_file(root / "build/eym-mini/vae/diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not (root / "build/eym-mini/vae.ckpt").exists()


def test_raising_the_diffusion_steps_continues_from_the_trained_weights(tiny_mini, tmp_path):
    import shutil

    root = tmp_path / "longer"
    root.mkdir()
    (root / "data").symlink_to(tiny_mini / "data")
    shutil.copytree(tiny_mini / "build", root / "build")
    steps = TINY_MINI["eym_mini"]["diffusion"]["steps"]
    longer = yaml.safe_load(yaml.safe_dump(TINY_MINI))
    longer["eym_mini"]["diffusion"]["steps"] = steps + 2
    (root / "tiny.yaml").write_text(yaml.safe_dump(longer))
    result = _phase(root, "diffusion")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"continuing from the {steps} steps" in result.stderr
    state = json.loads((root / "build/eym-mini/diffusion/training.json").read_text())
    assert state["steps"] == steps + 2 and [r["step"] for r in state["log"]] == list(range(1, steps + 3))
    log = (root / "build/eym-mini/logs/diffusion_loss.tsv").read_text().splitlines()
    assert len(log) == 1 + steps + 2  # the earlier run's rows, then the new ones

    again = _phase(root, "diffusion")  # the same parameters again: nothing left to train
    assert again.returncode == 0 and "already trained with these parameters" in again.stderr
    assert json.loads((root / "build/eym-mini/diffusion/training.json").read_text())["steps"] == steps + 2
    longer["eym_mini"]["diffusion"]["steps"] = steps + 1  # fewer steps than trained: keep the weights, say so
    (root / "tiny.yaml").write_text(yaml.safe_dump(longer))
    fewer = _phase(root, "diffusion")
    assert fewer.returncode == 2 and "raise the steps to go on" in fewer.stderr, fewer.stderr[-2000:]
    assert json.loads((root / "build/eym-mini/diffusion/training.json").read_text())["steps"] == steps + 2
    longer["eym_mini"]["diffusion"]["unet"]["block_out_channels"] = [8, 16]
    longer["eym_mini"]["diffusion"]["unet"]["norm_num_groups"] = 4
    (root / "tiny.yaml").write_text(yaml.safe_dump(longer))
    other = _phase(root, "diffusion")
    assert other.returncode == 0 and "training from scratch" in other.stderr


def _diffusion_root(tiny_mini, root, **diffusion):
    """A root with tiny_mini's data and VAE, no diffusion weights, and TINY_MINI changed by ``diffusion``."""
    import shutil

    (root / "build/eym-mini").mkdir(parents=True)
    (root / "data").symlink_to(tiny_mini / "data")
    shutil.copytree(tiny_mini / "build/eym-mini/vae", root / "build/eym-mini/vae")
    layer = yaml.safe_load(yaml.safe_dump(TINY_MINI))
    layer["eym_mini"]["diffusion"].update(diffusion)
    (root / "tiny.yaml").write_text(yaml.safe_dump(layer))
    return layer


def test_training_goes_on_from_an_exported_model_of_the_same_architecture(tiny_mini, tmp_path):
    import shutil

    root, steps = tmp_path / "onwards", TINY_MINI["eym_mini"]["diffusion"]["steps"]
    layer = _diffusion_root(tiny_mini, root, steps=steps + 2, start_from=str(tiny_mini / "models/eym-mini"))
    result = _phase(root, "diffusion")
    assert result.returncode == 0 and f"going on from the {steps} steps" in result.stderr, result.stderr[-3000:]
    log = (root / "build/eym-mini/logs/diffusion_loss.tsv").read_text().splitlines()
    assert log[0].startswith("step\tloss\tlr\tseconds") and [r.split("\t")[0] for r in log[1:]] == [
        str(i) for i in range(1, steps + 3)
    ]
    lrs = [float(r.split("\t")[2]) for r in log[1:]]
    assert lrs[steps] == lrs[0] > lrs[steps - 1]  # a schedule of its own: warm-up again, not the old cosine's end
    runs = (root / "build/eym-mini/logs/diffusion_runs.tsv").read_text().splitlines()
    batch = TINY_MINI["eym_mini"]["diffusion"]["batch"]
    assert [r.split("\t")[:3] for r in runs] == [
        ["first_step", "last_step", "batch"],
        ["1", str(steps), str(batch)],  # the exported model's own run
        [str(steps + 1), str(steps + 2), str(batch)],  # this one
    ]
    assert all("CPU" in r.split("\t")[3] for r in runs[1:])
    unlogged = _phase(root, "export")  # the VAE came without its log: said at once, not after the check
    assert unlogged.returncode == 2 and "vae_loss.tsv: missing" in unlogged.stderr, unlogged.stderr[-2000:]
    shutil.copy(tiny_mini / "models/eym-mini/logs/vae_loss.tsv", root / "build/eym-mini/logs/vae_loss.tsv")
    exported = _phase(root, "export")
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = (root / "build/eym-mini/release/README.md").read_text()
    assert f"| {steps + 2} x {batch} (" in card  # both runs on this CPU at this batch, as one row

    shutil.rmtree(root / "build/eym-mini/diffusion")
    layer["eym_mini"]["diffusion"]["unet"]["block_out_channels"] = [8, 16]
    layer["eym_mini"]["diffusion"]["unet"]["norm_num_groups"] = 4
    (root / "tiny.yaml").write_text(yaml.safe_dump(layer))
    other = _phase(root, "diffusion")
    assert other.returncode == 2 and "another unet architecture" in other.stderr, other.stderr[-2000:]


def test_batches_drawn_by_worker_processes_train_the_same_weights(tiny_mini, tmp_path):
    from safetensors.torch import load_file

    root = tmp_path / "workers"
    _diffusion_root(tiny_mini, root, draw_workers=2)
    result = _phase(root, "diffusion")
    assert result.returncode == 0, result.stderr[-3000:]
    for part in ("unet", "controlnet"):
        a = load_file(tiny_mini / f"build/eym-mini/diffusion/{part}/diffusion_pytorch_model.safetensors")
        b = load_file(root / f"build/eym-mini/diffusion/{part}/diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), part


MINI = REPO / "models" / "eym-mini"


def _generate(base, controlnet, skeletons, prompts, steps=12, guidance=3.0):
    """Frames drawn by diffusers' own ControlNet pipeline from the model folders, as they are."""
    import torch
    from PIL import Image

    from eym_model.mini.export import controlnet_pipeline

    pipe = controlnet_pipeline(base, controlnet)
    size = skeletons.shape[1]
    out = pipe(
        prompt=prompts,
        image=[Image.fromarray(s) for s in skeletons],
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=size,
        width=size,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    return (out * 255).round().astype(np.uint8)


def _person_on_skeleton(frames, skeletons) -> float:
    """Share of the skeletons' limb pixels that selfie segmentation finds a person on."""
    from eym.detect.mediapipe_backend import segment_people

    people = segment_people(frames) > 0.5
    limbs = skeletons.any(-1)
    return float((people & limbs).sum() / limbs.sum())


@pytest.mark.skipif(not (MINI / "base").is_dir(), reason="eym-mini is trained by `dvc repro eym_mini`")
def test_eym_mini_draws_a_person_where_the_skeleton_is_and_random_weights_do_not(tiny_models, tmp_path):
    from eym.puppet.cases import KEYPOINTS, make_case
    from eym.skeleton import draw_skeletons

    make_case(tmp_path / "c", seed=77, size=128, num_frames=4, fps=4)  # an evaluation seed: unseen
    kp = read_keypoints(tmp_path / "c" / KEYPOINTS["edit"])[0]
    skeletons = draw_skeletons(kp, 128, 128)
    prompt = json.loads((tmp_path / "c" / "case.json").read_text())["prompt"]
    trained = _person_on_skeleton(_generate(MINI / "base", MINI / "controlnet", skeletons, [prompt] * 4), skeletons)
    tiny = _person_on_skeleton(_generate(tiny_models[0], tiny_models[1], skeletons, [prompt] * 4, steps=4), skeletons)
    assert trained > 0.5 > 0.2 > tiny, (trained, tiny)


@pytest.mark.skipif(not (MINI / "base").is_dir(), reason="eym-mini is trained by `dvc repro eym_mini`")
def test_eym_mini_edits_the_motion_end_to_end_and_beats_returning_the_source(tmp_path):
    """The demo's case through all nine stages with params.yaml's defaults (eym-mini, 200 + 200 tuning
    steps: at 100 + 100 the raised arms are not found yet), tuned with the source's prompt and sampled
    with the edit's as eym-edit does, against "copy the source" on the same case."""
    import shutil

    from eym.puppet.cases import make_case
    from stages import evaluate, frames, invert, offset, pose, sample, segment, stage1, stage2

    info = make_case(
        tmp_path / "in", seed=1, size=256, num_frames=24, source_motion="walk_in_place", reference_motion="arms_raise"
    )
    inputs = tmp_path / "in"
    case = make_case_dir(tmp_path / "edit", inputs / "source.mp4", inputs / "reference.mp4", inputs / "gt" / "edit.mp4")
    tuning, editing = repo_params(prompt=info["source_prompt"]), repo_params(prompt=info["prompt"])
    for stage in (frames, segment, pose, offset, stage1, stage2, invert):
        stage.run(case, tuning)
    for stage in (sample, evaluate):
        stage.run(case, editing)
    copy = shutil.copytree(case, tmp_path / "copy")
    copying = repo_params(prompt=info["prompt"], sampling={"start": "source"})
    for stage in (sample, evaluate):
        stage.run(copy, copying)
    edit, source = (json.loads((c / "eval" / "metrics.json").read_text()) for c in (case, copy))
    # The arms moved. The copy's moved joints are near 0, not 0: the evaluation re-detects with a border
    # (evaluation.pose_margin) that the pose stage, which drew the source's skeleton, does not use.
    assert source["pose_pck_moved"] < 0.1 < 0.5 < edit["pose_pck_moved"], (edit, source)
    assert edit["psnr_person"] > source["psnr_person"], (edit, source)
    assert edit["pose_pck"] > 0.8, edit  # 0.61 re-detected without the border: MediaPipe missed the figure
