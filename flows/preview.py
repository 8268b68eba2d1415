"""eym-edit preview: frames, segmentation, pose and retargeting of an edit, then its preview image, the
retargeting verdict and whether the model stages will fit the memory there is, in seconds."""

from __future__ import annotations

import sys
from pathlib import Path

from .new_cases import create_cases_from


def plate_line(meta: dict) -> str:
    """What the clean plate (offset/plate.png) will show, or why there is none."""
    if not meta["still_camera"]:
        return (
            f"clean plate: none, the camera moves (background changes {meta['background_motion']:.1f} grey "
            "levels per frame, above offset.region.max_motion): the edit repaints where the person was"
        )
    return (
        f"clean plate: shows the background in {meta['plate_coverage']:.0%} of where the source person "
        "stands and the target will not (offset/plate.png)"
    )


def cmd_preview(args) -> int:
    """Frames, segmentation, pose and retargeting only: the preview image and the verdict, in seconds."""
    from eym.errors import EYMError
    from flows.cli import fail, interrupted_exit
    from flows.locks import case_locks
    from flows.registry import PREPARATION_STAGES, RETARGETING_STAGES
    from flows.runtime import run_supervised
    from flows.stage_task import dvc_repro, stage_error
    from stages.common import read_case

    try:
        case_dirs, note, memory = create_cases_from(args)
    except EYMError as exc:
        return fail(exc)
    steps = [(read_case(case_dirs[0]).prepared_dir, spec.name) for spec in PREPARATION_STAGES]
    steps += [(case, spec.name) for case in case_dirs for spec in RETARGETING_STAGES]
    failed_offsets = {}
    for folder, stage in steps:
        try:
            with case_locks(case_dirs):
                code, status, lines = run_supervised(dvc_repro, folder, stage)
        except EYMError as exc:
            return fail(exc)
        if interrupted_exit():
            print(f"eym-edit: preview interrupted during {stage}", file=sys.stderr)
            return interrupted_exit()
        print(
            f"  {folder.name}/{stage}: " + ("up to date" if status == "cached" else "done" if code == 0 else "failed")
        )
        if code != 0 and stage != "offset":
            print(f"eym-edit: {stage_error(stage, lines)}", file=sys.stderr)
            return 1
        if code != 0:
            failed_offsets[folder] = stage_error(stage, lines)
    good = [preview_verdict(case, failed_offsets.get(case), note) for case in case_dirs]
    print(memory)
    return 0 if all(good) else 1


def preview_verdict(case_dir: Path, failure: str | None, note: str | None = None) -> bool:
    """Print an edit's preview image, folder and retargeting verdict (with its warnings, and a note on
    the model); True when it is good."""
    import json

    meta_file = case_dir / "offset" / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"verdict": "bad", "problems": [failure]}
    print(f"\npreview: {case_dir / 'offset' / 'preview.png'}\ncase folder: {case_dir}")
    frames_file = case_dir / "frames" / "meta.json"
    taken = json.loads(frames_file.read_text()).get("taken") if frames_file.is_file() else None
    if taken:  # what each input gives, so a cut or stretched reference is seen before tuning
        print(f"frames: {taken}")
    good = meta["verdict"] == "good" and not failure
    if good:
        print(
            f"verdict: good ({meta['retarget']} retargeting, scale {meta['scale']:.3f} from "
            f"{', '.join(meta['segments'])}; anchor {meta['anchor']}; {meta['inside_fraction']:.0%} of the joints "
            f"inside the frame)"
        )
        if "region_area" in meta:
            print(f"edit region: {meta['region_area']:.0%} of the frame may change; the rest is kept (offset/region/)")
        if "still_camera" in meta:
            print(plate_line(meta))
    else:
        print("verdict: bad")
    for problem in meta.get("problems") or ([] if good else [failure]):
        print(f"  - {problem}")
    for warning in [*meta.get("warnings", []), *([note] if note else [])]:
        print(f"  warning: {warning}")
    return good
