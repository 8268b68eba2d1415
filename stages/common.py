"""What every stage shares: the case folder, merged parameters, logging and the command line.

A pipeline folder holds ``case.yaml`` (its id and input files, paths relative to the folder), an
optional ``params.yaml`` with its prompt and parameter overrides, and one sub-folder per stage
output. A source folder (``data/sources/<id>/``) prepares, tunes and inverts one source; an edit
folder (``data/cases/<id>/``) retargets one reference onto it, samples and evaluates; a
self-contained folder holds both. Every stage is ``run(case_dir, params)`` in Python
and ``python -m stages.<name> CASE_DIR [--params FILE ...]`` on the command line; DVC and Prefect
both call the command line, so they run the same code.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from eym import interrupt
from eym.errors import EYMError, InputError
from eym.logs import quiet_libraries, setup_logging  # noqa: F401 (part of this module's API)
from eym.media import is_image, read_video, resize_crop
from eym.parameters import Section, deep_merge, load_checked, typed_section  # noqa: F401 (deep_merge: part of this API)

log = logging.getLogger("eym")
CASE_FILE = "case.yaml"
CASE_PARAMS = "params.yaml"

# Stage output folders inside a case folder.
FRAMES, MASKS, POSE, OFFSET = "frames", "masks", "pose", "offset"
STAGE1, STAGE2, INVERSION, SAMPLE, EVALUATION = "stage1", "stage2", "inversion", "sample", "eval"
WEIGHTS = "weights.safetensors"  # a tuning stage's trained tensors, in its folder
LATENTS = "latents.safetensors"  # the inverted noise, in inversion/
TRAJECTORY = "trajectory.safetensors"  # the inversion's latents at every timestep, in inversion/


@dataclass(frozen=True)
class Folder:
    """What a pipeline folder holds, from its ``case.yaml``: a source to prepare, tune and invert
    (``source``), an edit of a source prepared elsewhere (``source_dir`` and ``reference``), or both
    at once (``source`` and ``reference``: a self-contained case)."""

    path: Path
    id: str
    source: Path | None
    reference: Path | None
    ground_truth: Path | None
    variant: str
    source_dir: Path  # the folder whose frames/, masks/, pose/, stage1/, stage2/ and inversion/ belong to the source
    # the folder whose frames/ and pose/ of the source the retargeting reads: one per source file and
    # preparation parameters, so that the variants of an edit retarget identically (DVC's run cache)
    prepared_dir: Path

    @property
    def source_is_image(self) -> bool:
        return self.source is not None and is_image(self.source)

    @property
    def reference_is_keypoints(self) -> bool:
        return self.reference is not None and self.reference.suffix.lower() == ".parquet"


def read_case(case_dir: str | Path) -> Folder:
    """The folder's id, input files, variant and source folder from its ``case.yaml`` (its prompt and
    parameter overrides live in its ``params.yaml``)."""
    case_dir = Path(case_dir).resolve()
    path = case_dir / CASE_FILE
    if not path.is_file():
        raise InputError(f"{path}: case file not found (create the case with `eym-edit` or flows.cases)")
    data = yaml.safe_load(path.read_text()) or {}
    if not data.get("id") or not (data.get("source") or data.get("source_dir")):
        raise InputError(f"{path}: needs an id and a source (or the source_dir of a prepared source)")

    def resolve(value):
        return (case_dir / value).resolve() if value else None

    source_dir = resolve(data.get("source_dir")) if not data.get("source") else case_dir
    if source_dir is None or not (source_dir / CASE_FILE).is_file():
        raise InputError(f"{path}: its source folder {source_dir} does not exist (create it with flows.cases)")
    prepared_dir = resolve(data.get("prepared_dir")) or source_dir
    if not (prepared_dir / CASE_FILE).is_file():
        raise InputError(f"{path}: its prepared source {prepared_dir} does not exist (create it with flows.cases)")
    return Folder(
        path=case_dir,
        id=str(data["id"]),
        source=resolve(data.get("source")),
        reference=resolve(data.get("reference")),
        ground_truth=resolve(data.get("ground_truth")),
        variant=str(data.get("variant") or "full"),
        source_dir=source_dir,
        prepared_dir=prepared_dir,
    )


def source_dir(case_dir: str | Path) -> Path:
    """Where the source outputs of a folder's edit are (the folder itself for a source or a self-contained case)."""
    return read_case(case_dir).source_dir


def default_params_files(case_dir: Path) -> list[Path]:
    """The nearest params.yaml above the case folder, then the case's own overrides if present."""
    case_dir = Path(case_dir).resolve()
    files = []
    for parent in case_dir.parents:
        if (parent / "params.yaml").is_file():
            files.append(parent / "params.yaml")
            break
    if (case_dir / CASE_PARAMS).is_file():
        files.append(case_dir / CASE_PARAMS)
    return files


def load_params(files: list[str | Path]) -> dict:
    """The parameter files merged in order, checked against the schema (eym.parameters)."""
    return load_checked(files)


def section(params: dict, name: str) -> Section:
    """A section of the parameters as its schema object (``Frames``, ``Stage1``, ...) with every default
    filled in (a Python caller may pass a partial one); a bad value raises InputError naming the key."""
    return typed_section(name, params.get(name))


def stage_main(name: str, run: Callable[[Path, dict], object], argv=None) -> int:
    """The command line of a stage: clean one-line errors for bad input, tracebacks only for bugs."""
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{name}", description=(run.__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("case_dir", type=Path, help="the case folder (holds case.yaml)")
    parser.add_argument(
        "--params",
        type=Path,
        action="append",
        help="parameter file, repeatable, later ones override (default: the nearest params.yaml "
        "above the case folder, then the case's params.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    interrupt.install()
    start = time.perf_counter()
    try:
        params = load_params(args.params or default_params_files(args.case_dir))
        run(args.case_dir, params)
    except interrupt.Interrupted as exc:
        log.error("%s interrupted: %s", name, exc)
        return exc.exit_code
    except EYMError as exc:
        log.error("%s failed: %s", name, exc)
        return 2
    except Exception as exc:  # the cause in the stage's last line, which eym-edit shows; a bug's traceback above it
        if not _machine_failure(exc):
            log.exception("%s: unexpected error", name)
        log.error("%s failed: %s", name, failure_cause(exc))
        return 1
    log.info("%s done in %.1f s, %s", name, time.perf_counter() - start, peak_memory())
    return 0


# What libraries that write files (torch, safetensors) say when the operating system refused a write.
IO_FAILURES = ("No space left on device", "File too large", "Disk quota exceeded", "Read-only file system")
IO_FAILURES += ("file write failed",)  # torch.save, which drops the errno


def _machine_failure(exc: BaseException) -> bool:
    """An out-of-memory error, or a read or write the operating system refused (also when a library
    wraps it): the machine's state, not a bug."""
    if isinstance(exc, (OSError, MemoryError)) or "OutOfMemoryError" in type(exc).__name__:
        return True
    return any(words in str(exc) for words in IO_FAILURES)


def failure_cause(exc: BaseException) -> str:
    """One line on why a stage failed, for what is not bad input: the machine (no space, a file size
    limit, memory) or a bug (its exception's type and message; the traceback is in the log)."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where} ({type(exc).__name__}, errno {exc.errno})"
    if isinstance(exc, MemoryError) or "OutOfMemoryError" in type(exc).__name__:
        return (
            f"out of memory ({type(exc).__name__}{': ' + first if first else ''}); {peak_memory()}: lower "
            "frames.count or frames.width/height, or turn on model.gradient_checkpointing"
        )
    if _machine_failure(exc):
        return f"{type(exc).__name__}: {first} (a write failed: is the disk full, or a file size limit reached?)"
    return f"{type(exc).__name__}: {first} (a bug? the traceback is in this stage's log)"


# stage_main's last line (the command ran to its end): stage, seconds, peak RSS and, on a GPU, CUDA's peaks
FINISHED = re.compile(
    r"\b(\w+) done in ([\d.]+) s, peak RSS ([\d.]+) GiB(?:, peak CUDA allocated ([\d.]+) GiB, reserved ([\d.]+) GiB)?"
)


def ran(output: list[str]) -> bool:
    """Whether a stage's command ran to its end in this output (DVC prints nothing of the kind for a
    stage that was up to date or that it restored from its run cache)."""
    return any(FINISHED.search(line) for line in output)


# eym.progress's line at the end of a loop (tuning, DDIM inversion, DDIM sampling): its speed
STEP_TIMES = re.compile(r"([\w ]+): (\d+) steps in ([\d.]+) s \(([\d.]+) s/step\)")


def peak_memory() -> str:
    """This process's peak memory: resident set on the CPU and, when it used one, the GPU's allocated and
    reserved peaks (what a run on a smaller machine would need; benchmarks/real_scale.py reads it)."""
    import resource

    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        allocated, reserved = torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30
        text += f", peak CUDA allocated {allocated:.2f} GiB, reserved {reserved:.2f} GiB"
    return text


def ground_truth_frames(case_dir: Path, gt_path: Path) -> np.ndarray:
    """A ground-truth video of an edit with the frame choice and crop its reference got."""
    meta = json.loads((Path(case_dir) / FRAMES / "meta.json").read_text())
    frames, _ = resize_crop(read_video(gt_path, meta["reference"]["indices"]), meta["width"], meta["height"])
    return frames


def load_stage_weights(pipe, folder: Path, stages: tuple[str, ...]) -> None:
    """Load a source folder's tuned weights, stage after stage (later files override shared tensors)."""
    for stage in stages:
        names = pipe.load_tuned(Path(folder) / stage / WEIGHTS)
        log.info("loaded %d trained tensors from %s", len(names), stage)
