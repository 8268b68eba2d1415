"""Video, image and frame-folder I/O: decord to read videos, ffmpeg (imageio-ffmpeg) to write them.

Frames are uint8 arrays (frames, H, W, 3) in RGB; masks are bool (frames, H, W). Frame folders
hold numbered PNGs (00000.png, ...) and are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .errors import InputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def open_video(path: str | os.PathLike):
    """A decord VideoReader, with clear errors for missing, empty and unreadable files."""
    import decord

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: video file is empty")
    if is_image(path):
        raise InputError(f"{path}: this is an image, but a video is required here")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    except Exception as exc:  # decord raises DECORDError with a C++ message
        raise InputError(f"{path}: unreadable video ({str(exc).splitlines()[0][:200]})") from exc
    if len(reader) == 0:
        raise InputError(f"{path}: video has no frames")
    return reader


def video_info(path: str | os.PathLike) -> dict:
    reader = open_video(path)
    height, width = reader[0].shape[:2]
    return {"num_frames": len(reader), "fps": float(reader.get_avg_fps()), "width": width, "height": height}


def read_video(path: str | os.PathLike, indices=None) -> np.ndarray:
    """All frames (or the given frame indices) as uint8 (frames, H, W, 3)."""
    reader = open_video(path)
    indices = list(range(len(reader))) if indices is None else [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < len(reader)]
    if bad:
        raise InputError(f"{path}: frame indices {bad[:5]} are outside the video's {len(reader)} frames")
    return reader.get_batch(indices).asnumpy()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 12) -> None:
    """Write frames as an H.264 mp4 (yuv420p, so every player opens it), or a GIF by suffix."""
    frames = np.asarray(frames, dtype=np.uint8)
    if Path(path).suffix.lower() == ".gif":
        return write_gif(path, frames, fps)
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-crf", str(crf), "-preset", "medium"],
            quality=None,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in np.asarray(frames, dtype=np.uint8)]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0
        )


def read_image(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    if is_video(path):
        raise InputError(f"{path}: this is a video, but an image is required here")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from exc


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")


def write_frames(folder: str | os.PathLike, frames: np.ndarray) -> None:
    """Write frames (RGB uint8) or masks (bool) as numbered PNGs, replacing the folder atomically."""
    frames = np.asarray(frames)
    if frames.dtype == bool:
        frames = frames.astype(np.uint8) * 255
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame.astype(np.uint8)).save(tmp / f"{i:05d}.png", format="PNG", compress_level=3)


def frame_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: frame folder not found (run the stage that writes it first)")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError(f"{folder}: frame folder holds no PNG frames")
    return files


def read_frames(folder: str | os.PathLike) -> np.ndarray:
    """Numbered RGB PNGs of a folder as uint8 (frames, H, W, 3)."""
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frame_files(folder)])


def read_masks(folder: str | os.PathLike) -> np.ndarray:
    """Numbered mask PNGs of a folder as bool (frames, H, W)."""
    return np.stack([np.asarray(Image.open(f).convert("L")) > 127 for f in frame_files(folder)])


def cover_transform(width: int, height: int, out_w: int, out_h: int) -> dict:
    """Scale that makes the image cover out_w x out_h, and the centred crop offset after scaling."""
    scale = max(out_w / width, out_h / height)
    return {"scale": scale, "crop_x": (width * scale - out_w) / 2, "crop_y": (height * scale - out_h) / 2}


def resize_crop(frames: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, dict]:
    """Frames resized to cover out_w x out_h and centre-cropped; and the transform (``cover_transform``
    with the crop offsets in whole pixels) that maps their keypoints the same way."""
    import cv2

    height, width = frames.shape[1:3]
    t = cover_transform(width, height, out_w, out_h)
    new_w, new_h = max(out_w, round(width * t["scale"])), max(out_h, round(height * t["scale"]))
    x0, y0 = (new_w - out_w) // 2, (new_h - out_h) // 2
    t.update(crop_x=float(x0), crop_y=float(y0))
    interp = cv2.INTER_AREA if t["scale"] < 1 else cv2.INTER_CUBIC
    out = np.stack(
        [cv2.resize(f, (new_w, new_h), interpolation=interp)[y0 : y0 + out_h, x0 : x0 + out_w] for f in frames]
    )
    return out, t
