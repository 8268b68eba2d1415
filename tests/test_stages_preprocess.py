"""Preprocessing stages on puppet clips: frames, segmentation, pose, skeleton offset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_case_dir, repo_params, write_params

from eym.clean_plate import read_plate
from eym.errors import InputError, MissingWeightsError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import read_frames, read_image, read_masks, read_video, write_frames, write_image, write_video
from eym.skeleton import draw_skeletons, feet_centre, mid_hip, pck
from puppet_world.cases import KEYPOINTS, MASKS
from stages import frames, offset, pose, segment

INDICES = [0, 2, 4, 6, 8, 10, 12, 14]  # count 8, stride 2


def _cli(stage: str, case, params_file):
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", str(case), "--params", str(params_file)],
        capture_output=True,
        text=True,
    )


# -- frames ---------------------------------------------------------------------------------------
def test_frames_cli_samples_resizes_and_records_metadata(tmp_path, puppet_256):
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.mp4", puppet_256 / "reference.mp4")
    params = write_params(tmp_path / "p.yaml", repo_params(frames={"width": 128, "height": 96}))
    result = _cli("frames", case, params)
    assert result.returncode == 0, result.stderr
    source = read_frames(case / "frames" / "source")
    assert source.shape == (8, 96, 128, 3)
    assert read_frames(case / "frames" / "reference").shape == (8, 96, 128, 3)
    meta = json.loads((case / "frames" / "meta.json").read_text())
    assert meta["source"]["indices"] == INDICES and meta["source"]["fps"] == pytest.approx(12)
    assert meta["fps"] == pytest.approx(6) and meta["source"]["original_size"] == [256, 256]
    # 256x256 covered to 128x128 then centre-cropped to 96 rows: the middle rows of a 2x downscale.
    original = read_video(puppet_256 / "source.mp4", [2])[0]
    half = original.reshape(128, 2, 128, 2, 3).mean((1, 3))
    assert np.abs(source[1].astype(float) - half[16:112]).mean() < 4


def test_image_source_is_repeated_to_the_reference_length(tmp_path, puppet_256):
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.png", puppet_256 / "reference.mp4")
    meta = frames.run(case, repo_params(frames={"width": 64, "height": 64}))
    source = read_frames(case / "frames" / "source")
    assert len(source) == 8 and meta["source_kind"] == "image"
    assert all(np.array_equal(source[0], f) for f in source)


def test_reference_keypoints_get_the_same_frame_choice_and_transform(tmp_path, puppet_256):
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.mp4", puppet_256 / KEYPOINTS["reference"])
    frames.run(case, repo_params(frames={"width": 128, "height": 128}))
    got, meta = read_keypoints(case / "frames" / "reference_keypoints.parquet")
    truth, _ = read_keypoints(puppet_256 / KEYPOINTS["reference"])
    np.testing.assert_allclose(got[..., :2], truth[INDICES, :, :2] / 2, atol=1e-4)
    assert (meta["width"], meta["height"]) == (128, 128)


def test_the_reference_follows_the_source_frame_rate_or_is_stretched_over_it(tmp_path, puppet_256):
    """Source at 12 fps, every 2nd frame (6 frames a second): a 24 fps reference is taken every 4th frame
    (its motion at its own speed); ``stretch`` spreads a 10-frame reference over the 24-frame source; an
    image source with no frames.count takes the reference's length."""
    clip = read_video(puppet_256 / "reference.mp4")
    write_video(fast := tmp_path / "fast.mp4", clip, fps=24)
    write_video(short := tmp_path / "short.mp4", clip[:10], fps=12)
    meta = frames.run(make_case_dir(tmp_path / "a", puppet_256 / "source.mp4", fast), repo_params(frames={"count": 5}))
    assert meta["reference"]["indices"] == [0, 4, 8, 12, 16] and meta["source"]["indices"] == [0, 2, 4, 6, 8]
    assert "reference: 5 of its 24 frames (0 to 16, every 4) at the source's frame rate" in meta["taken"]

    stretch = {"count": None, "stride": 1, "reference_timing": "stretch"}
    meta = frames.run(make_case_dir(tmp_path / "b", puppet_256 / "source.mp4", short), repo_params(frames=stretch))
    assert meta["num_frames"] == 24 and len(read_frames(tmp_path / "b" / "frames" / "reference")) == 24
    assert meta["reference"]["indices"] == np.linspace(0, 9, 24).round().astype(int).tolist()
    assert "spread over the source's length: its motion at 0.39x its speed" in meta["taken"]  # 9/12 s over 23/12 s

    image = make_case_dir(tmp_path / "c", puppet_256 / "source.png", fast)
    meta = frames.run(image, repo_params(frames={"count": None}))
    assert meta["num_frames"] == 12 and len(read_frames(tmp_path / "c" / "frames" / "source")) == 12
    assert meta["reference"]["timing"] == "own" and meta["taken"].startswith("source: one image, repeated 12 times")


@pytest.mark.parametrize(
    "problem, message",
    [
        ("too_few", r"has 24 frames, fewer than asked: frames.count=30"),
        ("unreadable", r"unreadable video"),
        ("empty", r"video file is empty"),
        ("image_as_reference", r"this is an image, but a video is required"),
        (
            "mismatch",
            r"gives 24 frames but the reference .* gives fewer at the source's frame rate \(.*has 10 frames.*"
            r"frames.reference_timing=stretch",
        ),
        ("bad_size", r"frames.width.* = 100 \(from .*p.yaml\).*multiple of 8"),
        ("joint_index", r"joint indices must be 0\.\.17 \(OpenPose-18\)"),
        ("pixels_without_size", r"coordinates reach \d+ but the file gives no image size"),
        ("tiny_image", r"source image .*tiny.png is 16x16 pixels: too small to show a person"),
    ],
)
def test_frames_errors_name_the_file_and_the_problem(tmp_path, puppet_256, problem, message):
    source, reference = puppet_256 / "source.mp4", puppet_256 / "reference.mp4"
    p = {"width": 64, "height": 64}
    if problem == "too_few":
        p["count"] = 30
    elif problem == "unreadable":
        source = tmp_path / "broken.mp4"
        source.write_bytes(b"\x00\x01 not a video" * 100)
    elif problem == "empty":
        source = tmp_path / "empty.mp4"
        source.touch()
    elif problem == "image_as_reference":
        reference = puppet_256 / "source.png"
    elif problem == "mismatch":
        reference = tmp_path / "short.mp4"
        write_video(reference, read_video(puppet_256 / "reference.mp4")[:10], fps=12)
        p.update(count=None, stride=1)
    elif problem == "bad_size":
        p["width"] = 100
    elif problem in ("joint_index", "pixels_without_size"):
        reference = tmp_path / "skeleton.parquet"
        _skeleton_file(reference, puppet_256, joint_30=problem == "joint_index")
    elif problem == "tiny_image":
        source = tmp_path / "tiny.png"
        write_image(source, read_video(puppet_256 / "source.mp4")[0, ::16, ::16])
    case = make_case_dir(tmp_path / "case", source, reference)
    result = _cli("frames", case, write_params(tmp_path / "p.yaml", repo_params(frames=p)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert __import__("re").search(message, result.stderr), result.stderr
    if problem in ("unreadable", "empty"):
        assert str(source) in result.stderr
    assert "gives fewer" not in result.stderr or problem == "mismatch"


def _skeleton_file(path, puppet_256, joint_30=False):
    """The puppet's reference keypoints as a user's Parquet file: pixel coordinates and no image size in
    its metadata; with ``joint_30``, one row names joint 30."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kp, _ = read_keypoints(puppet_256 / KEYPOINTS["reference"])
    f, j = np.meshgrid(np.arange(len(kp)), np.arange(18), indexing="ij")
    joint = j.ravel().astype(np.int16)
    if joint_30:
        joint[5] = 30
    columns = {"frame": f.ravel().astype(np.int32), "joint": joint}
    columns |= {"x": kp[..., 0].ravel(), "y": kp[..., 1].ravel(), "confidence": kp[..., 2].ravel()}
    pq.write_table(pa.table(columns), path)


def test_broken_joints_of_a_skeleton_file_reach_the_verdict(tmp_path, puppet_256):
    """NaN coordinates with confidence 1 in every frame for six joints: the frames stage names the
    broken rows and the verdict (offset/meta.json, what `eym-edit preview` prints) the joints missing."""
    kp, meta = read_keypoints(puppet_256 / KEYPOINTS["reference"])
    broken = [0, 3, 6, 9, 12, 14]  # nose, both elbows, both knees, an eye
    kp[:, broken, :2] = np.nan
    kp[:, broken, 2] = 1.0
    reference = tmp_path / "nan.parquet"
    write_keypoints(reference, kp, meta["width"], meta["height"])
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.mp4", reference)
    params = repo_params(frames={"width": 128, "height": 128})
    for stage in (frames, segment, pose, offset):
        stage.run(case, params)
    warnings = json.loads((case / "offset" / "meta.json").read_text())["warnings"]
    assert any("NaN or infinite coordinates with a positive confidence" in w for w in warnings), warnings
    seen = [w for w in warnings if "never shows 6 of 18 joints" in w]
    assert seen and all(n in seen[0] for n in ("nose", "right_elbow", "left_knee", "right_eye")), warnings


# -- segmentation -----------------------------------------------------------------------------------
def _mask_iou(a, b):
    return ((a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)).mean()


def test_mediapipe_masks_match_ground_truth(preprocessed_case, puppet_256):
    masks = read_masks(preprocessed_case / "masks" / "masks")
    truth = read_masks(puppet_256 / MASKS["source"])[INDICES]
    assert _mask_iou(masks, truth) >= 0.7  # measured 0.85 on average over 28 clips (docs/benchmarks.md)
    masked = read_frames(preprocessed_case / "masks" / "masked")
    assert (masked[~masks] == 0).all() and (masked[masks] > 0).any()


def test_no_person_is_an_error_listing_the_frames(tmp_path, puppet_256):
    wall = np.linspace([200, 180, 150], [120, 110, 90], 128).astype(np.uint8)  # a bare wall, top to bottom
    empty = np.repeat(np.repeat(wall[None, :, None], 128, 2), 24, 0)
    write_video(tmp_path / "empty_room.mp4", empty, fps=12)
    case = make_case_dir(tmp_path / "case", tmp_path / "empty_room.mp4", puppet_256 / "reference.mp4")
    params = repo_params(frames={"width": 128, "height": 128})
    frames.run(case, params)
    with pytest.raises(InputError, match=r"no person found in 8 of 8 frames \(frames \[0, 1, 2, 3, 4, 5, 6, 7\]\)"):
        segment.run(case, params)


def test_several_people_keep_the_largest_and_say_so(tmp_path, puppet_256):
    from puppet_world.cases import Actor, render
    from puppet_world.render import make_background

    rng = np.random.default_rng(2)
    big, small = Actor.sample(rng, "wave"), Actor.sample(rng, "squat")
    big = Actor(big.look, big.body, big.place.__class__(0.3, 0.95, 0.7), big.motion)
    small = Actor(small.look, small.body, small.place.__class__(0.8, 0.9, 0.45), small.motion)
    background = make_background(rng, 256, 256, 0.95)[0]
    first, _ = render(small, small.keypoints(24, 12, 256), background)
    video = np.stack([render(big, big.keypoints(24, 12, 256)[f : f + 1], frame)[0][0] for f, frame in enumerate(first)])
    write_video(tmp_path / "two.mp4", video, fps=12)
    case = make_case_dir(tmp_path / "case", tmp_path / "two.mp4", puppet_256 / "reference.mp4")
    params = repo_params(frames={"width": 256, "height": 256})
    frames.run(case, params)
    meta = segment.run(case, params)
    assert len(meta["frames_with_several_people"]) >= 4
    masks = read_masks(case / "masks" / "masks")
    assert masks[:, :, 180:].sum() < 0.05 * masks.sum()  # the small person on the right is gone


def test_rembg_backend_runs_a_local_onnx_model_and_names_missing_models(tmp_path, preprocessed_case, monkeypatch):
    import torch

    class TinyU2Net(torch.nn.Module):  # rembg's interface: (1, 3, 320, 320) in, mask logits first out
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    model = tmp_path / "tiny_u2net.onnx"
    torch.onnx.export(TinyU2Net(), torch.randn(1, 3, 320, 320), model, dynamo=False, input_names=["input.1"])
    case = tmp_path / "case"
    __import__("shutil").copytree(preprocessed_case, case)
    params = repo_params(
        frames={"width": 256, "height": 256},
        segmentation={"backend": "rembg", "rembg_model_path": str(model), "max_missing_fraction": 1.0},
    )
    meta = segment.run(case, params)
    assert meta["backend"] == "rembg" and len(meta["area_fraction"]) == 8
    assert read_masks(case / "masks" / "masks").shape == (8, 256, 256)

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "no-models-here"))
    params["segmentation"]["rembg_model_path"] = None
    with pytest.raises(MissingWeightsError, match=r"u2net_human_seg.*looked for .*no-models-here.*Download https://"):
        segment.run(case, params)


# -- pose -------------------------------------------------------------------------------------------
def test_mediapipe_pose_matches_ground_truth(preprocessed_case, puppet_256):
    for role in ("source", "reference"):
        got, meta = read_keypoints(preprocessed_case / "pose" / f"{role}.parquet")
        truth, _ = read_keypoints(puppet_256 / KEYPOINTS[role])
        assert pck(got, truth[INDICES], alpha=0.1) >= 0.9, role  # measured 0.999 (docs/benchmarks.md)
        assert meta["backend"] == "mediapipe" and (meta["width"], meta["height"]) == (256, 256)


def test_skeleton_images_follow_controlnet_aux_convention(preprocessed_case):
    from controlnet_aux.open_pose import BodyResult, Keypoint, PoseResult, draw_poses

    kp, _ = read_keypoints(preprocessed_case / "pose" / "source.parquet")
    ours = read_frames(preprocessed_case / "pose" / "source_skeleton")
    for f in (0, 7):
        points = [Keypoint(x / 256, y / 256) if c >= 0.3 else None for x, y, c in kp[f]]
        theirs = draw_poses(
            [PoseResult(BodyResult(points, 0.0, 18), None, None, None)], 256, 256, draw_hand=False, draw_face=False
        )
        np.testing.assert_array_equal(ours[f], theirs)


def test_openpose_backend_loads_a_local_body_network(tmp_path, preprocessed_case):
    import torch
    from controlnet_aux.open_pose.model import bodypose_model

    from eym.detect import openpose_backend

    torch.manual_seed(0)
    network = bodypose_model()
    # controlnet_aux's file layout: parameter names without their first component.
    torch.save({k.split(".", 1)[1]: v for k, v in network.state_dict().items()}, tmp_path / "body_pose_model.pth")
    detector = openpose_backend.open_detector(str(tmp_path))
    people = openpose_backend.detect_people(read_frames(preprocessed_case / "masks" / "masked")[:2], detector)
    assert len(people) == 2 and all(p.shape == (18, 3) for found in people for p in found)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="has no body_pose_model.pth"):
        openpose_backend.open_detector(str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match=r"not in the local Hugging Face cache.*pose.backend: mediapipe"):
        openpose_backend.open_detector("lllyasviel/Annotators")


def test_dwpose_decoding_recovers_known_keypoints(tmp_path):
    """DWPose through onnxruntime with constant-output models: a known box and known SimCC peaks."""
    import torch

    from eym.detect import dwpose_backend as dw

    box = np.array([40.0, 30.0, 140.0, 230.0])  # x0, y0, x1, y1 of the person in a 200x300 image
    raw = np.zeros((8400, 85), np.float32)  # YOLOX's ONNX export outputs probabilities for columns 4+
    # Anchor 0 (stride 8, grid 0,0): centre = (offset + 0) * 8 in letterbox pixels; ratio 640/300.
    ratio = 640 / 300
    cx, cy, w, h = (
        (box[0] + box[2]) / 2 * ratio,
        (box[1] + box[3]) / 2 * ratio,
        (box[2] - box[0]) * ratio,
        (box[3] - box[1]) * ratio,
    )
    raw[0, :4] = [cx / 8, cy / 8, np.log(w / 8), np.log(h / 8)]
    raw[0, 4], raw[0, 5] = 0.95, 0.9

    class Constant(torch.nn.Module):
        def __init__(self, *outputs):
            super().__init__()
            self.outputs = torch.nn.ParameterList(torch.nn.Parameter(torch.as_tensor(o)) for o in outputs)

        def forward(self, x):
            zero = x.mean() * 0
            return tuple(o + zero for o in self.outputs)

    truth = np.random.default_rng(0).uniform([10, 10], [270, 370], (133, 2))  # in the 288x384 crop
    simcc_x, simcc_y = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
    simcc_x[0, np.arange(133), np.round(truth[:, 0] * 2).astype(int)] = 0.8
    simcc_y[0, np.arange(133), np.round(truth[:, 1] * 2).astype(int)] = 0.7
    folder = tmp_path / "dwpose"
    folder.mkdir()
    torch.onnx.export(Constant(raw[None]), torch.zeros(1, 3, 640, 640), folder / dw.DETECTOR_FILE, dynamo=False)
    torch.onnx.export(Constant(simcc_x, simcc_y), torch.zeros(1, 3, 384, 288), folder / dw.POSE_FILE, dynamo=False)

    model = dw.open_detector(str(folder))
    image = np.zeros((300, 200, 3), np.uint8)
    (people,) = dw.detect_people(image[None], model)
    assert len(people) == 1
    centre, size = dw.box_to_crop(box)
    expected = (np.round(truth * 2) / 2) * size / np.array(dw.POSE_SIZE) + centre - size / 2
    kp = people[0]
    from eym.skeleton import J

    for i, name in enumerate(dw.COCO17):
        np.testing.assert_allclose(kp[J[name], :2], expected[i], atol=1e-3)
        assert kp[J[name], 2] == pytest.approx(0.7)
    np.testing.assert_allclose(kp[J["neck"], :2], (expected[5] + expected[6]) / 2, atol=1e-3)
    with pytest.raises(MissingWeightsError, match="lacks"):
        dw.open_detector(str(tmp_path))


# -- skeleton offset --------------------------------------------------------------------------------
def _skeleton(frames=3, shift=(0.0, 0.0), size=1.0):
    from puppet_world.body import Placement, Pose, Proportions, pose_keypoints

    kp = np.stack(
        [
            pose_keypoints(Pose(right_arm=0.3 * f), Proportions(), Placement(0.5, 0.9, 0.6), 200, 200)
            for f in range(frames)
        ]
    ).astype(np.float32)
    kp[..., :2] = (kp[..., :2] - 100) * size + 100 + np.array(shift)
    return kp


@pytest.mark.parametrize("anchor", ["feet", "mid_hip"])
def test_offset_moves_the_reference_onto_the_source_anchor_exactly(anchor):
    source, reference = _skeleton(shift=(-30, 5)), _skeleton(shift=(40, -10), size=0.5)
    aligned, info = offset.align(source, reference, anchor=anchor)
    assert info["scale"] == pytest.approx(2.0, rel=1e-5)
    fn = {"feet": feet_centre, "mid_hip": mid_hip}[anchor]
    np.testing.assert_allclose(fn(aligned[0]), fn(source[0]), atol=1e-4)
    # The reference keeps its own motion: offsets between its frames are scaled, not pinned.
    np.testing.assert_allclose(
        aligned[2, :, :2] - aligned[0, :, :2], 2 * (reference[2, :, :2] - reference[0, :, :2]), atol=1e-3
    )


def test_offset_frame_mode_pins_every_frame_and_drops_joints_outside():
    source = _skeleton(frames=3)
    source[1, :, 0] += 15  # the source walks right on frame 1
    reference = _skeleton(frames=3, shift=(0, 0))
    aligned, info = offset.align(source, reference, retarget="none", mode="frame")
    np.testing.assert_allclose(feet_centre(aligned), feet_centre(source), atol=1e-4)
    far, info = offset.align(_skeleton(shift=(-95, 0)), reference, retarget="none", width=200, height=200)
    assert info["joints_outside_frame"] > 0 and np.isnan(far[..., 0]).any()


def test_offset_stage_reproduces_the_ground_truth_edit(tmp_path, puppet_256):
    """From exact keypoints, bones retargeting gives the ground truth: the source's body doing the
    reference's motion (to a pixel or two: a body's proportions also change its joint angles a little)."""
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.mp4", puppet_256 / "reference.mp4")
    frames.run(case, repo_params(frames={"width": 256, "height": 256, "count": 24, "stride": 1}))
    (case / "pose").mkdir(parents=True)
    for role in ("source", "reference"):
        kp, meta = read_keypoints(puppet_256 / KEYPOINTS[role])
        write_keypoints(case / "pose" / f"{role}.parquet", kp, meta["width"], meta["height"])
    write_frames(case / "masks" / "masks", read_masks(puppet_256 / MASKS["source"]))  # the true masks
    offset.run(case, repo_params())
    aligned, _ = read_keypoints(case / "offset" / "aligned.parquet")
    truth, _ = read_keypoints(puppet_256 / KEYPOINTS["edit"])
    inside = np.isfinite(aligned[..., 0])
    assert inside.mean() > 0.95
    error = np.linalg.norm(aligned[inside][:, :2] - truth[inside][:, :2], axis=-1)
    assert np.median(error) < 1.0 and error.max() < 4.0
    skeleton = read_frames(case / "offset" / "aligned_skeleton")
    np.testing.assert_array_equal(skeleton, draw_skeletons(aligned, 256, 256))
    assert read_image(case / "offset" / "preview.png").shape == (4 * 256 + 3 * 4, 4 * 256, 3)
    region = read_masks(case / "offset" / "region")  # the edit region covers both people's true pixels
    for who in ("source", "edit"):
        assert region[read_masks(puppet_256 / MASKS[who])].mean() >= 0.99, who
    assert region.mean() < 0.5
    # the clean plate shows the true background where the source person stood and the target will not
    meta = json.loads((case / "offset" / "meta.json").read_text())
    assert meta["still_camera"] and meta["background_motion"] < 1.0 and meta["plate_coverage"] > 0.25
    plate, weight = read_plate(case / "offset")
    vacated = read_masks(puppet_256 / MASKS["source"]) & ~read_masks(puppet_256 / MASKS["edit"])
    behind = (weight >= 0.5) & vacated
    truth, source = read_video(puppet_256 / "gt" / "edit.mp4"), read_frames(case / "frames" / "source")
    assert behind.sum() > 0.15 * vacated.sum()  # the rest: never free, or beside the target
    assert np.abs(np.broadcast_to(plate, truth.shape)[behind].astype(int) - truth[behind]).mean() < 4.0
    assert np.abs(source[behind].astype(int) - truth[behind]).mean() > 30.0  # where the source person stood


def test_a_moving_camera_gets_no_clean_plate(tmp_path, puppet_256):
    """The same source panned two pixels a frame: the background moves, so nothing comes from a plate."""
    case = make_case_dir(tmp_path / "case", puppet_256 / "source.mp4", puppet_256 / "reference.mp4")
    frames.run(case, repo_params(frames={"width": 256, "height": 256, "count": 24, "stride": 1}))
    pan = lambda a: np.stack([np.roll(f, 2 * i, axis=1) for i, f in enumerate(a)])  # noqa: E731
    write_frames(case / "frames" / "source", pan(read_frames(case / "frames" / "source")))
    write_frames(case / "masks" / "masks", pan(read_masks(puppet_256 / MASKS["source"])))
    (case / "pose").mkdir(parents=True)
    for role in ("source", "reference"):
        kp, meta = read_keypoints(puppet_256 / KEYPOINTS[role])
        if role == "source":
            kp[..., 0] += 2 * np.arange(len(kp))[:, None]
        write_keypoints(case / "pose" / f"{role}.parquet", kp, meta["width"], meta["height"])
    offset.run(case, repo_params())
    meta = json.loads((case / "offset" / "meta.json").read_text())
    assert not meta["still_camera"] and meta["background_motion"] > 3.0
    assert not read_plate(case / "offset")[1].any()
