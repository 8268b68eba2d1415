"""The files of a puppet case folder, relative to it, and how to tell a source the puppet world drew."""

from __future__ import annotations

from pathlib import Path

SOURCE_VIDEO, SOURCE_IMAGE, REFERENCE_VIDEO = "source.mp4", "source.png", "reference.mp4"
GT_EDIT_VIDEO = "gt/edit.mp4"
KEYPOINTS = {
    "source": "gt/source_keypoints.parquet",
    "reference": "gt/reference_keypoints.parquet",
    "edit": "gt/edit_keypoints.parquet",
}
MASKS = {"source": "gt/source_masks", "reference": "gt/reference_masks", "edit": "gt/edit_masks"}
CASE_INFO = "case.json"


def is_puppet_source(path: str | Path) -> bool:
    """Whether a source video or image was drawn by the puppet world (its exact keypoints lie beside it)."""
    return (Path(path).parent / KEYPOINTS["source"]).is_file()
