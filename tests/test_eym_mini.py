"""eym-mini: seed ranges kept apart, its tokenizer, its training phases (resumable), and the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from eym.keypoints import read_keypoints
from puppet_world.seeds import EVALUATION, HELDOUT, TRAINING, check_seed, seeds_for


def test_evaluation_and_training_seeds_never_meet(tmp_path):
    from eym_mini.data import actor_frames
    from puppet_world.cases import make_case

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
    from eym_mini.tokenizer import mini_tokenizer, puppet_words
    from puppet_world.cases import make_case, read_case_info

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
            "eym_mini",
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
    """eym-mini's four phases at a toy size, run by `dvc repro eym_mini` in a workspace with the root
    dvc.yaml and a params.yaml made small, then shipped, as the README says."""
    import shutil
    import subprocess
    import sys

    from eym.parameters import deep_merge
    from flows.stage_task import stage_environment

    root = tmp_path_factory.mktemp("mini")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_MINI))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    for name in ("eym", "puppet_world", "eym_model", "eym_mini"):  # the code the stages declare
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY_MINI)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["dvc", "repro", "eym_mini"], ["eym_mini", "ship"]):
        result = subprocess.run(
            [sys.executable, "-m", *command], cwd=root, capture_output=True, text=True, env=stage_environment()
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


@pytest.mark.documents("dvc repro eym_mini")
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


@pytest.mark.documents("python -m eym_mini ship")
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


@pytest.mark.documents(".venv/bin/python benchmarks/detector_margin.py --params params.yaml --margins 0,0.1,0.25,0.5")
def test_the_detector_margin_benchmark_scores_the_shipped_model_at_each_margin(tiny_mini):
    """benchmarks/detector_margin.py in the toy workspace: the shipped model draws the held-out skeletons,
    and each margin gets a row of PCK for the drawn and the true frames and the chance level."""
    import subprocess
    import sys

    command = [sys.executable, str(REPO / "benchmarks" / "detector_margin.py"), "--params", "params.yaml"]
    out = subprocess.run([*command, "--margins", "0,0.25"], cwd=tiny_mini, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row[0].strip() for row in rows[1:]] == ["0", "0.25"], out.stdout
    assert all(0 <= float(cell) <= 1 for row in rows[1:] for cell in row[1:]), out.stdout


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

    from eym_mini.export import controlnet_pipeline

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
    from eym.skeleton import draw_skeletons
    from puppet_world.cases import KEYPOINTS, make_case

    make_case(tmp_path / "c", seed=77, size=128, num_frames=4, fps=4)  # an evaluation seed: unseen
    kp = read_keypoints(tmp_path / "c" / KEYPOINTS["edit"])[0]
    skeletons = draw_skeletons(kp, 128, 128)
    prompt = json.loads((tmp_path / "c" / "case.json").read_text())["prompt"]
    trained = _person_on_skeleton(_generate(MINI / "base", MINI / "controlnet", skeletons, [prompt] * 4), skeletons)
    tiny = _person_on_skeleton(_generate(tiny_models[0], tiny_models[1], skeletons, [prompt] * 4, steps=4), skeletons)
    assert trained > 0.5 > 0.2 > tiny, (trained, tiny)


@pytest.mark.documents("scripts/train-eym-mini-gpu.sh build/gpu 8 build/gpu-out")
def test_the_gpu_training_script_goes_on_from_the_shipped_weights(tmp_path):
    """The GPU script on this CPU at a toy size (a layer of its own, as $EYM_MINI_EXTRA allows): data,
    the probe going on from the shipped weights, the steps that fit the budget, the packed parts."""
    import os
    import subprocess
    import sys

    toy = {
        "eym_mini": {
            "device": "cpu",
            "data": {"train_actors": 2, "heldout_actors": 1, "poses_per_actor": 2, "workers": 1},
            "diffusion": {"batch": 2, "draw_workers": 0, "checkpoint_every": 1000},
        }
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(toy))
    root, out = tmp_path / "gpu", tmp_path / "gpu-out"
    out.mkdir()
    env = dict(os.environ, EYM_MINI_EXTRA=str(tmp_path / "toy.yaml"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        ["scripts/train-eym-mini-gpu.sh", str(root), "1", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shipped = len((REPO / "models/eym-mini/logs/diffusion_loss.tsv").read_text().splitlines()) - 1
    state = json.loads((root / "build/eym-mini/diffusion/training.json").read_text())
    assert state["steps"] == shipped + 60 + 10  # the probe, then the least the budget allows
    assert list(out.glob("diffusion.tar.*")), "no packed weights"
