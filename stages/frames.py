"""Frame extraction: decode source and reference, pick frames, resize to cover and centre-crop.

An image source is repeated to the reference's length (the paper's single-image mode). The reference
is taken at the source's frame rate or stretched over its length (``frames.reference_timing``); one
given as a keypoints file gets the same frame choice and the same geometric transform. Writes
``frames/source/``, ``frames/reference/`` (or ``frames/reference_keypoints.parquet``) and
``frames/meta.json`` (source fps, original sizes, frame indices, crop transform).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from eym.atomic import atomic_path, write_json
from eym.errors import InputError
from eym.keypoints import read_keypoints, write_keypoints
from eym.media import cover_transform, open_video, read_image, read_video, resize_crop, write_frames
from eym.schema import Frames
from eym.skeleton import JOINTS

from .common import FRAMES, log, read_case, section, stage_main


class TooFewFrames(InputError):
    """A video or keypoints file has fewer frames than the parameters ask for."""


MIN_SIDE = 32  # pixels on an input's shorter side below which no detector finds a person
MAX_UPSCALE = 4.0  # beyond this, an input is upscaled into blur: a warning
HUGE_SIDE = 8192  # pixels on a side above which decoding costs much memory and time: a warning


def size_warnings(path, width: int, height: int, out_w: int, out_h: int, what: str) -> list[str]:
    """An input too small to use is an error; one upscaled many times or enormous, a warning."""
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"{what} {path} is {width}x{height} pixels: too small to show a person (at least {MIN_SIDE} pixels "
            f"on its shorter side; the edit works at {out_w}x{out_h})"
        )
    scale = max(out_w / width, out_h / height)
    warnings = []
    if scale > MAX_UPSCALE:
        warnings.append(
            f"{what} {path} is {width}x{height} pixels, upscaled {scale:.1f}x to {out_w}x{out_h}: it will look "
            "blurred and detectors may miss the person; use a larger input or smaller frames.width/height"
        )
    if max(width, height) > HUGE_SIDE:
        warnings.append(f"{what} {path} is {width}x{height} pixels: decoding it takes much memory and time")
    return warnings


def keypoint_file_warnings(kp: np.ndarray, path, width: int, height: int) -> list[str]:
    """What is wrong in a skeleton file as data: coordinates that are not numbers yet claim a
    confidence, and joints outside the image the file's coordinates refer to."""
    warnings = []
    claimed = kp[..., 2] > 0
    broken = claimed & ~(np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1]))
    if broken.any():
        joints = ", ".join(JOINTS[j] for j in np.where(broken.any(0))[0])
        warnings.append(
            f"reference keypoints {path}: {int(broken.sum())} joints ({joints}) have NaN or infinite coordinates "
            "with a positive confidence; they are taken as missing"
        )
    shown = claimed & ~broken
    x, y = kp[..., 0], kp[..., 1]
    with np.errstate(invalid="ignore"):
        outside = shown & ((x < 0) | (x > width) | (y < 0) | (y > height))
    if shown.any() and outside.sum() > 0.1 * shown.sum():
        warnings.append(
            f"reference keypoints {path}: {outside.sum() / shown.sum():.0%} of the joints lie outside the "
            f"{width}x{height} image the file's coordinates refer to (its metadata width and height): are they "
            "in another image's pixels?"
        )
    return warnings


def frame_indices(
    total: int,
    count: int | None,
    stride: int,
    start: int,
    fps: float | None = None,
    video_fps: float | None = None,
    what: str = "video",
) -> list[int]:
    """Indices start, start + step, ... where step is ``stride``, or video_fps / fps when fps is set."""
    step = float(stride)
    if fps:
        if not video_fps:
            raise InputError(f"{what}: frames.fps is set but the frame rate of the input is unknown")
        step = video_fps / fps
    if step <= 0 or start < 0:
        raise InputError(f"{what}: frames.stride/fps must be positive and frames.start non-negative")
    available = int(math.floor((total - 1 - start) / step)) + 1 if total > start else 0
    if count is None:
        count = available
    if count < 1 or available < count:
        need = start + int(round((count - 1) * step)) + 1
        raise TooFewFrames(
            f"{what} has {total} frames, fewer than asked: frames.count={count} at a step of "
            f"{step:g} from frame {start} needs {need}. Lower frames.count or frames.stride."
        )
    return [start + int(round(k * step)) for k in range(count)]


def transform_keypoints(kp: np.ndarray, t: dict) -> np.ndarray:
    out = kp.copy()
    out[..., 0] = kp[..., 0] * t["scale"] - t["crop_x"]
    out[..., 1] = kp[..., 1] * t["scale"] - t["crop_y"]
    return out


def _video(path: Path, p: Frames, what: str, pick=None):
    """Frames of a video and their meta; ``pick(total, fps, what)`` chooses the indices (default: frame_indices)."""
    reader = open_video(path)
    fps = float(reader.get_avg_fps())
    pick = pick or (lambda total, rate, name: frame_indices(total, p.count, p.stride, p.start, p.fps, rate, name))
    indices = pick(len(reader), fps, f"{what} {path}")
    frames = read_video(path, indices)
    info = {
        "path": str(path),
        "fps": fps,
        "frames_in_file": len(reader),
        "indices": indices,
        "original_size": [int(frames.shape[2]), int(frames.shape[1])],
    }
    return frames, info


def reference_indices(total: int, count: int | None, p: Frames, fps, source_rate, what: str) -> list[int]:
    """The reference frames an edit of ``count`` frames takes (``frames.reference_timing``): at the source's
    frame rate ``source_rate`` (frames per second of the edit, when both rates are known; else the same
    stride), or all of it from ``frames.start`` spread over ``count``. No ``count`` (an image source): the
    reference sets the length, sampled by ``frames.stride``/``frames.fps``."""
    if count is not None and p.reference_timing == "stretch":
        if total <= p.start:
            raise TooFewFrames(f"{what} has {total} frames, none from frames.start={p.start}")
        return np.linspace(p.start, total - 1, count).round().astype(int).tolist()
    if count is not None and not p.fps and source_rate and fps and abs(fps / source_rate - p.stride) > 1e-6:
        return frame_indices(total, count, p.stride, p.start, source_rate, fps, what)  # another frame rate
    return frame_indices(total, count, p.stride, p.start, p.fps, fps, what)


def _reference(case, p: Frames, width: int, height: int, count: int | None, source_rate: float | None):
    """The reference's frames (None for a keypoints file), keypoints (None for a video) and meta."""
    if not case.reference_is_keypoints:
        pick = lambda total, fps, what: reference_indices(total, count, p, fps, source_rate, what)  # noqa: E731
        frames, meta = _video(case.reference, p, "reference video", pick)
        meta["warnings"] = size_warnings(case.reference, *meta["original_size"], width, height, "reference video")
        frames, meta["transform"] = resize_crop(frames, width, height)
        return frames, None, {**meta, "kind": "video"}
    kp, ref_meta = read_keypoints(case.reference)
    ref_w, ref_h = ref_meta.get("width"), ref_meta.get("height")
    if not ref_w or not ref_h:  # normalised coordinates
        largest = np.nanmax(np.abs(kp[..., :2]), initial=0.0, where=np.isfinite(kp[..., :2]))
        if largest > 2:
            raise InputError(
                f"reference keypoints {case.reference}: coordinates reach {largest:.0f} but the file gives no "
                "image size, so they are read as fractions of the frame (0 to 1); write the image's width "
                "and height into its metadata (eym.keypoints.write_keypoints does)"
            )
        kp[..., 0] *= width
        kp[..., 1] *= height
        ref_w, ref_h = width, height
    warnings = keypoint_file_warnings(kp, case.reference, ref_w, ref_h)
    what = f"reference keypoints {case.reference}"
    indices = reference_indices(len(kp), count, p, ref_meta.get("fps"), source_rate, what)
    t = cover_transform(ref_w, ref_h, width, height)
    meta = {
        "path": str(case.reference),
        "kind": "keypoints",
        "indices": indices,
        "transform": t,
        "fps": ref_meta.get("fps"),
        "frames_in_file": len(kp),
        "original_size": [ref_w, ref_h],
        "warnings": warnings,
    }
    return None, transform_keypoints(kp[indices], t), meta


def _source(case, p: Frames, width: int, height: int, count: int | None):
    if case.source_is_image:
        if not count:
            raise InputError(f"{case.source}: an image source needs frames.count (how many frames the edit has)")
        image = read_image(case.source)
        warnings = size_warnings(case.source, image.shape[1], image.shape[0], width, height, "source image")
        frames, t = resize_crop(image[None], width, height)
        meta = {
            "path": str(case.source),
            "kind": "image",
            "repeated": count,
            "transform": t,
            "fps": None,
            "original_size": [image.shape[1], image.shape[0]],
            "warnings": warnings,
        }
        return np.repeat(frames, count, axis=0), meta
    frames, meta = _video(case.source, p.model_copy(update={"count": count}), "source video")
    meta["warnings"] = size_warnings(case.source, *meta["original_size"], width, height, "source video")
    frames, meta["transform"] = resize_crop(frames, width, height)
    return frames, {**meta, "kind": "video"}


def run(case_dir: Path, params: dict) -> dict:
    """Frame extraction: the source's and/or the reference's frames at the working resolution."""
    p = section(params, "frames")
    width, height = int(p.width), int(p.height)
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise InputError(
            f"params: frames.width and frames.height must be positive multiples of 8, got {width}x{height}"
        )
    case = read_case(case_dir)
    meta: dict = {"width": width, "height": height}
    count, source, reference, ref_kp = p.count, None, None, None
    if case.source is None:  # an edit of a prepared source: as many frames as the source has
        source_meta = json.loads((case.prepared_dir / FRAMES / "meta.json").read_text())
        count, meta["source"] = source_meta["num_frames"], source_meta["source"]
        meta["source_kind"] = source_meta["source_kind"]
    elif not case.source_is_image:  # a video source sets the length; the reference follows it
        source, meta["source"] = _source(case, p, width, height, count)
        count = len(source)
    source_rate = _output_fps(meta, p) if meta.get("source", {}).get("fps") else None
    if case.reference is not None:
        try:
            reference, ref_kp, meta["reference"] = _reference(case, p, width, height, count, source_rate)
        except TooFewFrames as exc:
            if count is None or case.source_is_image:
                raise
            where = case.source if case.source is not None else case.prepared_dir
            raise InputError(
                f"source {where} gives {count} frames but the reference {case.reference} gives fewer at the "
                f"source's frame rate ({exc}); lower frames.count, or set frames.reference_timing=stretch to "
                "spread the whole reference over the source's length"
            ) from None
        meta["reference"]["timing"] = p.reference_timing if count is not None else "own"
        count = len(meta["reference"]["indices"])
    if case.source is not None and case.source_is_image:  # an image repeated to the edit's length
        source, meta["source"] = _source(case, p, width, height, count)
    if case.source is not None:
        meta["source_kind"] = meta["source"]["kind"]
    meta["num_frames"] = count
    meta["fps"] = _output_fps(meta, p)
    meta["taken"] = taken(meta)
    meta["warnings"] = [w for role in ("source", "reference") for w in meta.get(role, {}).get("warnings", [])]
    for warning in meta["warnings"]:
        log.warning("frames: %s", warning)

    with atomic_path(Path(case_dir) / FRAMES) as out:
        out.mkdir()
        if case.source is not None:
            write_frames(out / "source", source)
        if reference is not None:
            write_frames(out / "reference", reference)
        elif ref_kp is not None:
            write_keypoints(out / "reference_keypoints.parquet", ref_kp, width, height, role="reference")
        write_json(out / "meta.json", meta)
    log.info("frames: %d frames at %dx%d; %s", count, width, height, meta["taken"])
    return meta


def taken(meta: dict) -> str:
    """What the edit takes of each input, in words (frames/meta.json's ``taken``)."""
    parts = []
    for role in ("source", "reference"):
        m = meta.get(role)
        if not m:
            continue
        if m["kind"] == "image":
            parts.append(f"source: one image, repeated {meta['num_frames']} times")
            continue
        idx = m["indices"]
        text = f"{role}: {len(idx)} of its {m.get('frames_in_file', '?')} frames ({idx[0]} to {idx[-1]}"
        text += f", every {(idx[-1] - idx[0]) / (len(idx) - 1):.3g})" if len(idx) > 1 else ")"
        speed = _speed(meta, m) if role == "reference" else None
        if m.get("timing") == "stretch":
            text += " spread over the source's length" + (f": its motion at {speed:.2f}x its speed" if speed else "")
        elif m.get("timing") == "rate" and speed:
            text += " at the source's frame rate"
        parts.append(text)
    return "; ".join(parts)


def _speed(meta: dict, ref: dict) -> float | None:
    """Seconds of reference motion per second of the edit, where both frame rates are known."""
    idx, fps, rate = ref["indices"], ref.get("fps"), meta.get("fps")
    if len(idx) < 2 or not fps or not meta.get("source", {}).get("fps"):
        return None
    return ((idx[-1] - idx[0]) / fps) / ((len(idx) - 1) / rate)


def _output_fps(meta: dict, p: Frames) -> float:
    """Frame rate of the extracted clip: frames.fps, or the input's rate divided by the stride."""
    if p.fps:
        return float(p.fps)
    for role in ("source", "reference"):
        if role in meta and meta[role].get("fps"):
            return float(meta[role]["fps"]) / p.stride
    return 8.0


if __name__ == "__main__":
    sys.exit(stage_main("frames", run))
