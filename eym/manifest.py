"""Case manifests: the YAML list of cases that the pipeline runs, one case or a whole batch.

cases:
  - id: benchmark-000              # letters, digits, '-', '_', '.'; unique
    source: puppet-000/source.mp4  # video or image; paths are relative to the manifest
    reference: puppet-000/reference.mp4   # video, or an OpenPose-18 keypoints .parquet
    prompt: a person in a red t-shirt waving        # describes the edit: sampling uses it
    source_prompt: a person in a red t-shirt walking  # optional, describes the source: tuning uses it
    ground_truth: puppet-000/gt/edit.mp4  # optional: the expected edit, for metrics
    params: {stage2: {steps: 200}}         # optional: overrides of params.yaml for this case
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .atomic import write_text
from .errors import InputError
from .media import is_image, is_video

FIELDS = {"id", "source", "reference", "prompt", "source_prompt", "ground_truth", "params", "variant"}
# Parameters that name local files or folders. A value starting with ./ or ../ is relative to the
# file it is written in (params.yaml, a case's params.yaml, or the manifest); other values are
# absolute paths or hub ids.
PATH_PARAMS = (
    "model.base",
    "model.controlnet",
    "pose.annotator",
    "pose.dwpose",
    "segmentation.rembg_model_path",
    "evaluation.lpips_backbone",
    "evaluation.clip",
    "evaluation.fvd_model",
    "evaluation.fid_vid_model",
)
REQUIRED = ("id", "source", "reference")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Case:
    id: str
    source: Path
    reference: Path
    prompt: str = ""
    ground_truth: Path | None = None
    params: dict = field(default_factory=dict)
    variant: str = "full"
    source_prompt: str = ""  # tunes the source; empty: the prompt

    @property
    def source_is_image(self) -> bool:
        return is_image(self.source)

    @property
    def reference_is_keypoints(self) -> bool:
        return self.reference.suffix.lower() == ".parquet"

    def to_row(self, relative_to: Path | None = None) -> dict:
        def rel(p: Path) -> str:
            return os.path.relpath(p, relative_to) if relative_to else str(p)

        row = {"id": self.id, "source": rel(self.source), "reference": rel(self.reference), "prompt": self.prompt}
        if self.source_prompt:
            row["source_prompt"] = self.source_prompt
        if self.ground_truth:
            row["ground_truth"] = rel(self.ground_truth)
        if self.params:
            row["params"] = self.params
        if self.variant != "full":
            row["variant"] = self.variant
        return row


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """Read and check a manifest; every problem names the manifest, the row and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    rows = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: expected a non-empty list of cases under 'cases:'")
    cases, seen = [], {}
    for number, row in enumerate(rows, start=1):
        case = parse_row(row, path.parent, f"{path}: row {number}")
        if case.id in seen:
            raise InputError(f"{path}: row {number}: duplicate id {case.id!r} (first used in row {seen[case.id]})")
        seen[case.id] = number
        cases.append(case)
    return cases


def parse_row(row, base_dir: Path, where: str) -> Case:
    """Check one manifest row (paths relative to ``base_dir``); errors start with ``where``."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a mapping of fields, got {type(row).__name__}")
    if isinstance(row.get("id"), str):
        where += f" (id {row['id']!r})"
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
    missing = [f for f in REQUIRED if not row.get(f)]
    if missing:
        raise InputError(f"{where}: missing required field(s) {missing}")
    case_id = str(row["id"])
    if not _ID.match(case_id):
        raise InputError(f"{where}: id {case_id!r} must be letters, digits, '-', '_' or '.' (at most 100)")
    files = {}
    for name in ("source", "reference", "ground_truth"):
        if row.get(name) is None:
            continue
        file = (Path(base_dir) / str(row[name])).resolve()
        if not file.is_file():
            raise InputError(f"{where}: {name} file not found: {file}")
        files[name] = file
    if not (is_video(files["source"]) or is_image(files["source"])):
        raise InputError(f"{where}: source {files['source'].name} is neither a video nor an image")
    if not (is_video(files["reference"]) or files["reference"].suffix.lower() == ".parquet"):
        raise InputError(f"{where}: reference {files['reference'].name} must be a video or a keypoints .parquet")
    params = row.get("params") or {}
    if not isinstance(params, dict):
        raise InputError(f"{where}: params must be a mapping of parameter overrides")
    params = resolve_path_params(params, base_dir)
    variant = str(row.get("variant") or "full")
    if not _ID.match(variant):
        raise InputError(f"{where}: variant {variant!r} must be letters, digits, '-', '_' or '.'")
    return Case(
        id=case_id,
        source=files["source"],
        reference=files["reference"],
        prompt=str(row.get("prompt") or ""),
        ground_truth=files.get("ground_truth"),
        params=params,
        variant=variant,
        source_prompt=str(row.get("source_prompt") or ""),
    )


def map_path_params(params: dict, fn, relative_only: bool = True) -> dict:
    """A copy of ``params`` with ``fn`` applied to every relative (./ or ../) path parameter (to every
    path parameter given as text, with ``relative_only=False``)."""
    import copy

    out = copy.deepcopy(params)
    for dotted in PATH_PARAMS:
        section, key = dotted.split(".")
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str) and (value.startswith(("./", "../")) or not relative_only):
            out[section][key] = fn(value)
    return out


def resolve_path_params(params: dict, base_dir: Path) -> dict:
    return map_path_params(params, lambda v: str((Path(base_dir) / v).resolve()))


def write_manifest(path: str | os.PathLike, cases: list[Case]) -> None:
    path = Path(path)
    rows = [case.to_row(relative_to=path.parent.resolve()) for case in cases]
    write_text(path, yaml.safe_dump({"cases": rows}, sort_keys=False, width=120))
