"""The edit folders that ``eym-edit run`` and ``preview`` make from their options: a manifest row per
reference (added to the user's manifest under a lock), checked, then created in the workspace.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from .overrides import absolute_paths, override_layers, overrides_from


def add_to_manifest(manifest: Path, row: dict) -> None:
    """Append (or replace, by id) a row of the user's manifest, under a file lock: several eym-edit
    processes may add rows at the same moment."""
    import fcntl

    from eym.atomic import write_text

    with open(manifest.with_name(f".{manifest.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = yaml.safe_load(manifest.read_text()) if manifest.is_file() else None
        rows = [r for r in (data or {}).get("cases", []) if r.get("id") != row["id"]]
        write_text(manifest, yaml.safe_dump({"cases": rows + [row]}, sort_keys=False, width=120))


def default_id(source: Path, reference: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{source.stem}-to-{reference.stem}")[:100]


def create_cases_from(args) -> tuple[list[Path], str | None, str]:
    """The edit folders (and manifest rows) for --source, each --reference and the parameter options,
    a note when the base model does not know the source's world (eym-mini on real footage), and the
    memory verdict (run refuses an edit whose model stages will not fit before creating anything)."""
    from eym.errors import InputError
    from eym.manifest import parse_row
    from eym.parameters import read_layer
    from eym_model.loading import domain_warning
    from flows.cases import create_case
    from flows.preflight import preflight
    from flows.stage_task import repo_root

    workspace = repo_root(args.workspace)
    source = Path(args.source).resolve()
    references = [Path(r).resolve() for r in args.reference]
    truths = [Path(t).resolve() for t in getattr(args, "ground_truth", None) or []]
    if truths and len(truths) != len(references):
        raise InputError(f"eym-edit: {len(truths)} --ground-truth for {len(references)} --reference: give one each")
    manifest = (args.manifest or workspace / "data" / "manifest.yaml").resolve()
    layers = [(name, absolute_paths(values)) for name, values in override_layers(args)]
    params = absolute_paths(overrides_from(args))
    rows, cases = [], []
    for k, reference in enumerate(references):
        case_id = args.id if args.id and len(references) == 1 else None
        case_id = case_id or (f"{args.id}-{k + 1}" if args.id else default_id(source, reference))
        row = {
            "id": case_id,
            "source": os.path.relpath(source, manifest.parent),
            "reference": os.path.relpath(reference, manifest.parent),
            "prompt": args.prompt,
        }
        if getattr(args, "source_prompt", None):
            row["source_prompt"] = args.source_prompt
        if truths:
            row["ground_truth"] = os.path.relpath(truths[k], manifest.parent)
        if params:
            row["params"] = params
        cases.append(parse_row(row, manifest.parent, "eym-edit"))  # a bad row never reaches the manifest
        rows.append(row)
    repo_params = workspace / "params.yaml"
    merged = preflight([(str(repo_params), read_layer(repo_params)), *layers], models=args.command != "preview")
    memory = check_memory(merged, source, args)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    folders = []
    for row, case in zip(rows, cases):
        folders.append(create_case(case, workspace / args.cases_root, workspace))  # refuses an id taken
        add_to_manifest(manifest, row)
        print(f"case {case.id}: {folders[-1]} (manifest row in {manifest})")
    return folders, domain_warning(str(merged["model"]["base"]), source), memory


def check_memory(params: dict, source: Path, args) -> str:
    """The memory verdict's line; raises InputError when run would not fit (preview only reports it)."""
    from eym.errors import EYMError, InputError
    from flows.plan import clip_frames, memory_verdict, parse_budget

    try:
        fits, verdict = memory_verdict(params, clip_frames(params, source), parse_budget(args.memory_budget))
    except EYMError as exc:
        if args.command == "run":
            raise
        return f"memory: not predicted ({exc})"
    if not fits and args.command == "run":
        raise InputError(f"eym-edit: {verdict}")
    return verdict if fits else f"memory: {verdict}"
