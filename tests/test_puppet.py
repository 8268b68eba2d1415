"""The puppet world: deterministic, consistent ground truth, and figures that real detectors see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from eym.detect.mediapipe_backend import detect_poses, segment_people
from eym.keypoints import read_keypoints
from eym.manifest import read_manifest
from eym.media import read_masks, read_video
from eym.skeleton import J, feet_centre, pck
from puppet_world.body import Proportions
from puppet_world.cases import CASE_INFO, GT_EDIT_VIDEO, KEYPOINTS, MASKS, SOURCE_VIDEO, make_case


def _case_arrays(folder):
    return {
        "source": read_video(folder / SOURCE_VIDEO),
        "edit": read_video(folder / GT_EDIT_VIDEO),
        **{f"kp_{r}": read_keypoints(folder / p)[0] for r, p in KEYPOINTS.items()},
        **{f"mask_{r}": read_masks(folder / p) for r, p in MASKS.items()},
    }


def test_same_seed_gives_the_same_case(tmp_path):
    for name in ("a", "b"):
        make_case(tmp_path / name, seed=3, size=64, num_frames=4)
    a, b = _case_arrays(tmp_path / "a"), _case_arrays(tmp_path / "b")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (tmp_path / "a" / CASE_INFO).read_text() == (tmp_path / "b" / CASE_INFO).read_text()


def test_different_seeds_give_different_cases(tmp_path):
    make_case(tmp_path / "a", seed=3, size=64, num_frames=4)
    make_case(tmp_path / "b", seed=4, size=64, num_frames=4)
    a, b = _case_arrays(tmp_path / "a"), _case_arrays(tmp_path / "b")
    assert not np.array_equal(a["source"], b["source"])
    assert not np.allclose(a["kp_source"], b["kp_source"])


def test_ground_truth_edit_is_the_source_body_performing_the_reference_motion(puppet_case):
    source, _ = read_keypoints(puppet_case / KEYPOINTS["source"])
    reference, _ = read_keypoints(puppet_case / KEYPOINTS["reference"])
    edit, _ = read_keypoints(puppet_case / KEYPOINTS["edit"])
    # The feet of frame 0 land on the source's.
    np.testing.assert_allclose(feet_centre(edit[0]), feet_centre(source[0]), atol=1e-3)
    limbs = [
        (J["right_shoulder"], J["right_elbow"]),
        (J["left_elbow"], J["left_wrist"]),
        (J["right_hip"], J["right_knee"]),
        (J["left_knee"], J["left_ankle"]),
    ]
    for a, b in limbs:
        # The source's own limb lengths (rigid: the same in every frame) ...
        np.testing.assert_allclose(_length(edit, a, b), _length(source, a, b).mean(), rtol=1e-4)
        # ... pointing where the reference's limbs point.
        np.testing.assert_allclose(_direction(edit, a, b), _direction(reference, a, b), atol=1e-4)
    info = json.loads((puppet_case / CASE_INFO).read_text())
    assert info["edit_transform"]["anchor"] == "feet"


def _length(kp, a, b):
    return np.linalg.norm(kp[:, b, :2] - kp[:, a, :2], axis=-1)


def _direction(kp, a, b):
    return (kp[:, b, :2] - kp[:, a, :2]) / _length(kp, a, b)[:, None]


def test_partial_views_and_other_bodies(tmp_path):
    full = make_case(tmp_path / "full", seed=9, size=128, num_frames=2, reference_body="child")
    crop = make_case(
        tmp_path / "crop", seed=9, size=128, num_frames=2, reference_body="child", source_view="upper_body"
    )
    assert full["reference"]["body_type"] == "child" and crop["source_view"] == "upper_body"
    kp, _ = read_keypoints(tmp_path / "crop" / KEYPOINTS["source"])
    legs = [J[n] for n in ("right_knee", "left_knee", "right_ankle", "left_ankle")]
    assert np.isnan(kp[:, legs, 0]).all() and np.isfinite(kp[:, J["neck"], 0]).all()  # legs out of the view
    video = read_video(tmp_path / "crop" / SOURCE_VIDEO)
    assert video.shape == (2, 128, 128, 3)
    child = Proportions.sample(np.random.default_rng(0), "child")
    adult = Proportions.sample(np.random.default_rng(0))
    assert child.thigh < 0.85 * adult.thigh and child.neck_to_nose > 1.3 * adult.neck_to_nose


def test_ground_truth_edit_keeps_the_source_background(puppet_case):
    arrays = _case_arrays(puppet_case)
    people = arrays["mask_source"] | arrays["mask_edit"]
    kernel = np.ones((7, 7), np.uint8)
    background = np.stack([cv2.dilate(m.astype(np.uint8), kernel) == 0 for m in people])
    diff = np.abs(arrays["edit"].astype(int) - arrays["source"].astype(int)).mean(-1)
    assert diff[background].mean() < 3.0  # only video compression noise
    assert diff[arrays["mask_edit"] & ~arrays["mask_source"]].mean() > 20  # the figure moved


def test_mediapipe_sees_the_puppets(tmp_path):
    for seed, (m1, m2) in enumerate([("dance", "squat"), ("jump", "turn")]):
        folder = tmp_path / f"c{seed}"
        make_case(folder, seed=seed, size=256, num_frames=8, source_motion=m1, reference_motion=m2)
        frames = read_video(folder / SOURCE_VIDEO)
        truth, _ = read_keypoints(folder / KEYPOINTS["source"])
        assert pck(detect_poses(frames), truth, alpha=0.1) >= 0.9
        # Single frames with a border around them (eym-mini's check): keypoints in the frame's own coordinates.
        assert pck(detect_poses(frames, video_mode=False, margin=0.25), truth, alpha=0.1) >= 0.9
        masks = segment_people(frames) > 0.5
        gt = read_masks(folder / MASKS["source"])
        iou = (masks & gt).sum((1, 2)) / (masks | gt).sum((1, 2))
        assert iou.mean() >= 0.7


@pytest.mark.documents(
    "eym-puppet case --out /tmp/case --seed 3 --size 512 --frames 24",
    "eym-puppet case --out /tmp/child --seed 4 --reference-body child --source-view upper_body",
)
def test_case_command_writes_a_case_and_draws_other_bodies_and_views(tmp_path):
    eym_puppet = str(Path(sys.executable).parent / "eym-puppet")
    small = ["--size", "64", "--frames", "4"]
    subprocess.run([eym_puppet, "case", "--out", str(tmp_path / "case"), "--seed", "3", *small], check=True)
    child = ["--reference-body", "child", "--source-view", "upper_body"]
    subprocess.run([eym_puppet, "case", "--out", str(tmp_path / "child"), "--seed", "4", *child, *small], check=True)
    for name in ("case", "child"):
        for rel in ("source.mp4", "source.png", "reference.mp4", "gt/edit.mp4", KEYPOINTS["edit"], "case.json"):
            assert (tmp_path / name / rel).is_file(), (name, rel)
    info = json.loads((tmp_path / "child" / "case.json").read_text())
    assert info["reference"]["body_type"] == "child" and info["source_view"] == "upper_body"


def test_benchmark_command_writes_cases_and_manifest(tmp_path):
    out = tmp_path / "bench"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "puppet_world.benchmark",
            "benchmark",
            "--out",
            str(out),
            "--cases",
            "3",
            "--size",
            "64",
            "--frames",
            "4",
            "--image-source-every",
            "3",
            "--workers",
            "1",
        ],
        check=True,
    )
    cases = read_manifest(out / "manifest.yaml")
    assert [c.id for c in cases] == ["bench-000", "bench-001", "bench-002"]  # ids named after the folder
    assert [c.source_is_image for c in cases] == [False, False, True]
    assert all(c.ground_truth and c.ground_truth.is_file() and c.prompt for c in cases)
    assert len({c.prompt for c in cases}) == 3


def test_benchmark_pairs_every_source_with_several_references(tmp_path):
    from puppet_world.benchmark import make_benchmark

    manifest = make_benchmark(
        tmp_path / "bench", 6, size=64, num_frames=4, progress=False, references_per_source=3, prefix="puppet"
    )
    cases = read_manifest(manifest)
    assert [c.id for c in cases[:3]] == ["puppet-000-r0", "puppet-000-r1", "puppet-000-r2"]
    assert len({c.source for c in cases}) == 2 and len({c.reference for c in cases}) == 6
    assert all(c.source_prompt and c.prompt != c.source_prompt for c in cases)  # the source's motion, the edit's
    infos = [json.loads((c.reference.parent / CASE_INFO).read_text()) for c in cases[:3]]
    assert len({i["reference"]["motion"]["name"] for i in infos}) == 3  # three different motions
    assert {i["source"]["motion"]["name"] for i in infos} != {i["reference"]["motion"]["name"] for i in infos}
    with pytest.raises(ValueError, match="do not split"):
        make_benchmark(tmp_path / "odd", 5, size=64, num_frames=4, progress=False, references_per_source=2)
