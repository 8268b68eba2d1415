"""A throwaway DVC workspace for tests, benchmarks and trying the pipeline: the project's code and
params.yaml, tiny random models and puppet input clips, outside the repository.

Case parameters for it: ``TINY_CASE_PARAMS`` (tiny models, 128x128 frames, 2-step tuning), with
model paths relative to a manifest in the workspace's ``inputs/`` folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from flows.cases import REPO

TINY_CASE_PARAMS = {
    "frames": {"width": 128, "height": 128},
    "model": {
        "base": "../models/base",
        "controlnet": "../models/controlnet",
        "gradient_checkpointing": False,
        "motion_attention_dim": 16,
        "motion_attention_heads": 2,
        "temporal_head_dim": 8,
    },
    "stage1": {"steps": 2},
    "stage2": {"steps": 2},
    "inversion": {"steps": 2},
    "sampling": {"steps": 2, "eta": 0.0},
}


def make_workspace(
    root: Path, motions: list[tuple[str, str]], seed: int = 20, models: tuple[Path, Path] | None = None, size: int = 128
) -> Path:
    """``root`` as a DVC workspace (no git) with inputs ``inputs/p<i>`` for each (source, reference)
    motion pair. ``models``: existing tiny model folders to copy, else new ones are written."""
    from puppet_world.cases import make_case
    from sandbox.models import save_tiny_models

    root = Path(root)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    for name in ("stages", "eym", "puppet_world", "eym_model", "flows", "configs"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    if models:
        shutil.copytree(models[0], root / "models" / "base")
        shutil.copytree(models[1], root / "models" / "controlnet")
    else:
        save_tiny_models(root / "models")
    for i, (m1, m2) in enumerate(motions):
        make_case(
            root / "inputs" / f"p{i}",
            seed=seed + i,
            size=size,
            num_frames=24,
            fps=12,
            source_motion=m1,
            reference_motion=m2,
        )
    return root


def write_manifest(root: Path, name: str, cases: dict, params: dict = TINY_CASE_PARAMS) -> Path:
    """``inputs/manifest-<name>.yaml`` with ``cases`` mapping an id to an input folder (p0, p1, ...),
    to a (source folder, reference folder) pair (no ground truth then: it belongs to neither), or to
    the name of a file in ``inputs/`` used as the (broken) source."""
    rows = []
    for case_id, where in cases.items():
        source_folder, reference_folder = where if isinstance(where, tuple) else (where, where)
        pair = isinstance(where, tuple)
        input_dir = root / "inputs" / source_folder
        base = reference_folder if (root / "inputs" / reference_folder).is_dir() else "p0"
        row = {
            "id": case_id,
            "source": f"{source_folder}/source.mp4" if input_dir.is_dir() else source_folder,
            "reference": f"{base}/reference.mp4",
            "prompt": "a person moving",
            "source_prompt": "a person",
            "params": params,
        }
        if not pair:
            row["ground_truth"] = f"{base}/gt/edit.mp4"
        rows.append(row)
    path = root / "inputs" / f"manifest-{name}.yaml"  # never dvc.yaml: DVC reads every file of that name
    path.write_text(yaml.safe_dump({"cases": rows}))
    return path


def copy_edits(source: Path, edits: list[Path], tag: str, count: int) -> list[Path]:
    """``count`` copies of an up-to-date source folder with its edit folders, renamed and pointing at
    each other (DVC's bookkeeping depends on the pipelines, not on what they computed: benchmarks
    measure it on copies). Returns the new edit folders."""
    made = []
    for k in range(count):
        new_source = source.with_name(f"{source.name}-{tag}{k}")
        shutil.copytree(source, new_source, symlinks=True)
        for edit in edits:
            new_edit = edit.with_name(f"{edit.name}-{tag}{k}")
            shutil.copytree(edit, new_edit, symlinks=True)
            for name in ("case.yaml", "dvc.yaml", "dvc.lock"):
                path = new_edit / name
                if path.is_file():
                    path.write_text(path.read_text().replace(f"sources/{source.name}", f"sources/{new_source.name}"))
            made.append(new_edit)
    return made


def timed_dvc(root: Path, *args) -> float:
    """Seconds of one ``dvc`` command in the workspace (which must succeed)."""
    import time

    from flows.stage_task import stage_environment

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, env=stage_environment(), capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return time.perf_counter() - start


def start_eym_edit(root: Path, *args: str) -> subprocess.Popen:
    """``eym-edit *args`` in the workspace as a terminal job: its own process group, its own Prefect
    server (no $PREFECT_API_URL), stdout and stderr captured as text."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
