"""Keypoint tables: OpenPose-18 keypoints stored as Parquet (one row per frame, person and joint).

Columns: frame, person, joint, joint_name, x, y, confidence. The file's metadata records the
layout, the image size the pixel coordinates refer to, and any extra fields the writer adds.
Only person 0 (the edited person) is read back as an array.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .errors import InputError
from .skeleton import JOINTS, NUM_JOINTS

LAYOUT = "openpose18"
_SCHEMA = pa.schema(
    [
        ("frame", pa.int32()),
        ("person", pa.int16()),
        ("joint", pa.int16()),
        ("joint_name", pa.string()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("confidence", pa.float32()),
    ]
)


def write_keypoints(path: str | os.PathLike, kp: np.ndarray, width: int, height: int, **meta) -> None:
    """Write (frames, 18, 3) keypoints of one person, in pixels of a width x height image."""
    kp = np.asarray(kp, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must be (frames, {NUM_JOINTS}, 3), got {kp.shape}")
    frames, joints = np.meshgrid(np.arange(len(kp)), np.arange(NUM_JOINTS), indexing="ij")
    table = pa.table(
        {
            "frame": frames.ravel().astype(np.int32),
            "person": np.zeros(frames.size, np.int16),
            "joint": joints.ravel().astype(np.int16),
            "joint_name": [JOINTS[j] for j in joints.ravel()],
            "x": kp[..., 0].ravel(),
            "y": kp[..., 1].ravel(),
            "confidence": kp[..., 2].ravel(),
        },
        schema=_SCHEMA,
    )
    info = {"layout": LAYOUT, "width": int(width), "height": int(height), "num_frames": int(len(kp)), **meta}
    table = table.replace_schema_metadata({"eym": json.dumps(info, default=str)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_keypoints(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read person 0's keypoints as (frames, 18, 3) and the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: keypoints file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"{path}: not a readable Parquet keypoints file ({exc})") from exc
    missing = {"frame", "joint", "x", "y", "confidence"} - set(table.column_names)
    if missing:
        raise InputError(f"{path}: keypoints table lacks columns {sorted(missing)}")
    raw = (table.schema.metadata or {}).get(b"eym")
    meta = json.loads(raw) if raw else {}
    if meta.get("layout", LAYOUT) != LAYOUT:
        raise InputError(f"{path}: keypoint layout {meta['layout']!r} is not {LAYOUT}")
    cols = {name: table.column(name).to_numpy() for name in ("frame", "joint", "x", "y", "confidence")}
    person = table.column("person").to_numpy() if "person" in table.column_names else np.zeros(len(table))
    keep = person == 0
    frame, joint = cols["frame"][keep].astype(int), cols["joint"][keep].astype(int)
    if len(frame) == 0:
        raise InputError(f"{path}: keypoints table has no rows for person 0")
    if joint.min() < 0 or joint.max() >= NUM_JOINTS:
        raise InputError(f"{path}: joint indices must be 0..{NUM_JOINTS - 1} (OpenPose-18)")
    num_frames = int(meta.get("num_frames", frame.max() + 1))
    kp = np.full((num_frames, NUM_JOINTS, 3), np.nan, np.float32)
    kp[..., 2] = 0
    kp[frame, joint, 0] = cols["x"][keep]
    kp[frame, joint, 1] = cols["y"][keep]
    kp[frame, joint, 2] = cols["confidence"][keep]
    return kp, meta
