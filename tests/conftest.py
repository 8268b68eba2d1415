"""Shared fixtures: small puppet cases generated once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "documents(*commands): README commands the test runs on a small case (test_documented_commands)"
    )


@pytest.fixture(scope="session", autouse=True)
def prefect_home(tmp_path_factory):
    """One Prefect home for the session's eym-edit runs and benchmarks: its database is created once
    (7 s of each temporary server's start on a new home), as on a user's machine after the first run."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    return os.environ["PREFECT_HOME"]


@pytest.fixture(scope="session")
def puppet_case(tmp_path_factory):
    """A 128x128, 8-frame puppet case folder (walk in place -> wave)."""
    from puppet_world.cases import make_case

    folder = tmp_path_factory.mktemp("puppet") / "case"
    make_case(folder, seed=7, size=128, num_frames=8, fps=8, source_motion="walk_in_place", reference_motion="wave")
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folders of a tiny random SD-1.5-layout base model and ControlNet (diffusers format)."""
    from sandbox.models import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def tiny_video_model(tiny_models):
    """A fresh tiny video model (RCA + temporal + MA + ControlNet), loaded through the real loader."""
    from eym_model.loading import load_base_model, load_controlnet
    from eym_model.video_model import VideoModelConfig, build_video_model

    base = load_base_model(str(tiny_models[0]))
    controlnet = load_controlnet(str(tiny_models[1]))
    config = VideoModelConfig(motion_attention_dim=16, motion_attention_heads=2, temporal_head_dim=8)
    return base, build_video_model(base.unet, controlnet, config)


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def repo_params(**overrides) -> dict:
    """The repository's params.yaml (its ./ paths resolved, as the stages read it) with section
    overrides, e.g. frames={"width": 128}."""
    from eym.parameters import read_layer
    from stages.common import deep_merge

    return deep_merge(read_layer(REPO / "params.yaml"), overrides)


def write_params(path, params: dict):
    import yaml

    path.write_text(yaml.safe_dump(params))
    return path


def make_case_dir(folder, source, reference, ground_truth=None, case_id="case"):
    """A case folder whose case.yaml points at the given input files."""
    import os

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = {"id": case_id, "source": os.path.relpath(source, folder), "reference": os.path.relpath(reference, folder)}
    if ground_truth:
        data["ground_truth"] = os.path.relpath(ground_truth, folder)
    (folder / "case.yaml").write_text(yaml.safe_dump(data))
    return folder


@pytest.fixture(scope="session")
def puppet_256(tmp_path_factory):
    """A 256x256, 24-frame puppet case (dance -> squat), large enough for mediapipe."""
    from puppet_world.cases import make_case

    folder = tmp_path_factory.mktemp("puppet256") / "input"
    make_case(folder, seed=11, size=256, num_frames=24, fps=12, source_motion="dance", reference_motion="squat")
    return folder


@pytest.fixture(scope="session")
def preprocessed_case(tmp_path_factory, puppet_256):
    """A case folder with frames, masks, pose and offset done (mediapipe, 256x256, 8 frames)."""
    return preprocess(tmp_path_factory.mktemp("pre") / "case", puppet_256, 256)


def preprocess(case_dir, inputs, size: int):
    """A case folder for the puppet ``inputs`` with the four preprocessing stages run at size x size."""
    from stages import frames, offset, pose, segment

    case = make_case_dir(case_dir, inputs / "source.mp4", inputs / "reference.mp4", inputs / "gt" / "edit.mp4")
    params = repo_params(frames={"width": size, "height": size})
    for stage in (frames, segment, pose, offset):
        stage.run(case, params)
    return case


def tiny_model_params(tiny_models, **overrides) -> dict:
    """params.yaml with the tiny models, small frames and short tuning, plus section overrides."""
    from stages.common import deep_merge

    base = repo_params(
        frames={"width": 128, "height": 128},
        model={
            "base": str(tiny_models[0]),
            "controlnet": str(tiny_models[1]),
            "gradient_checkpointing": False,
            "motion_attention_dim": 16,
            "motion_attention_heads": 2,
            "temporal_head_dim": 8,
        },
        stage1={"steps": 6, "checkpoint_every": 3, "lr": 1.0e-3},
        stage2={"steps": 6, "checkpoint_every": 3, "lr": 1.0e-3},
        inversion={"steps": 5},
        sampling={"steps": 5},
        prompt="a person dancing",
    )
    return deep_merge(base, overrides)


@pytest.fixture(scope="session")
def preprocessed_128(tmp_path_factory, puppet_256):
    """A case folder preprocessed at 128x128 (frames, masks, pose, offset), for the tuning stages."""
    return preprocess(tmp_path_factory.mktemp("pre128") / "case", puppet_256, 128)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect API for the session's flow runs (a local SQLite server)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def evaluated_case(tmp_path_factory, preprocessed_128, tiny_models):
    """A case folder through all nine stages (tiny model, 2 tuning steps, 3 DDIM steps)."""
    import shutil

    from stages import evaluate, invert, sample, stage1, stage2

    case = tmp_path_factory.mktemp("evaluated") / "puppet-eval"
    shutil.copytree(preprocessed_128, case)
    params = tiny_model_params(
        tiny_models, stage1={"steps": 2}, stage2={"steps": 2}, inversion={"steps": 3}, sampling={"steps": 3}
    )
    for stage in (stage1, stage2, invert, sample, evaluate):
        stage.run(case, params)
    return case


@pytest.fixture(scope="session")
def browser():
    """Debian's headless chromium driven by playwright (no browser download)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install chromium (scripts/run-tests.sh does it as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


def open_page(browser, path):
    """Load a local page; returns the page and the console errors and page errors it produced."""
    page = browser.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors
