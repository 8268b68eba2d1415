"""The pipeline's stages, each declared once: what it runs, reads and writes, and where it runs.

``flows.cases`` writes each folder's ``dvc.yaml`` from it; ``flows.pipeline`` submits each stage after
those whose outputs it reads (``upstream``), schedules GPU slots and summarises from it; ``flows.cli``
previews from it. A stage's code dependencies are not listed: they are computed from its module's
imports (``code_closure``), so DVC reruns a stage when any project file it runs changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_PACKAGES = ("eym", "puppet_world", "eym_model", "stages")  # what a stage may import of the project


@dataclass(frozen=True)
class StageSpec:
    name: str
    side: str  # "source": of a source folder; "edit": of an edit folder
    sections: tuple[str, ...]  # params.yaml sections it reads
    inputs: tuple[str, ...] = ()  # outputs of its own folder that it reads
    outs: tuple[str, ...] = ()
    source_inputs: tuple[str, ...] = ()  # outputs of the source's folder that an edit stage reads
    prepared_inputs: tuple[str, ...] = ()  # outputs of the prepared source's folder that it reads
    module: str = ""  # the stages.<module> it runs (default: its name)
    uses_prompt: bool = False
    metrics: tuple[str, ...] = ()  # DVC metrics and plots: files of the stage not cached by DVC
    plots: tuple[str, ...] = ()
    loads_model: bool = False  # depends on the local weight folders of model.base and model.controlnet
    gpu: bool = False  # holds a GPU slot (Prefect tag "gpu", Dask resource GPU=1)
    checkpoint: str | None = None  # its resumable checkpoint folder, removed once its output is complete

    @property
    def command_module(self) -> str:
        return f"stages.{self.module or self.name}"


_TUNED = ("stage1/weights.safetensors", "stage2/weights.safetensors")
SOURCE_STAGES = (
    StageSpec("frames", "source", ("frames",), outs=("frames",)),
    StageSpec("segment", "source", ("segmentation",), ("frames",), ("masks",)),
    StageSpec("pose", "source", ("pose",), ("frames", "masks"), ("pose",)),
    StageSpec(
        "stage1",
        "source",
        ("model", "stage1", "window"),
        ("masks", "pose", "frames"),
        ("stage1/weights.safetensors", "stage1/meta.json"),
        uses_prompt=True,
        plots=("stage1/loss.tsv",),
        loads_model=True,
        gpu=True,
        checkpoint="stage1.ckpt",
    ),
    StageSpec(
        "stage2",
        "source",
        ("model", "stage2", "window"),
        ("frames", "pose", "stage1/weights.safetensors"),
        ("stage2/weights.safetensors", "stage2/meta.json"),
        uses_prompt=True,
        plots=("stage2/loss.tsv",),
        loads_model=True,
        gpu=True,
        checkpoint="stage2.ckpt",
    ),
    StageSpec(
        "invert",
        "source",
        ("model", "inversion", "window"),
        ("frames", "pose", *_TUNED),
        ("inversion",),
        uses_prompt=True,
        loads_model=True,
        gpu=True,
    ),
)
EDIT_STAGES = (
    StageSpec(
        "reference", "edit", ("frames",), outs=("frames",), prepared_inputs=("frames/meta.json",), module="frames"
    ),
    StageSpec("reference_pose", "edit", ("pose",), ("frames",), ("pose",), module="pose"),
    StageSpec(
        "offset", "edit", ("offset",), ("frames", "pose"), ("offset",), prepared_inputs=("frames", "masks", "pose")
    ),
    StageSpec(
        "sample",
        "edit",
        ("model", "sampling", "window"),
        ("frames", "offset"),
        ("sample",),
        source_inputs=("frames", *_TUNED, "inversion"),
        uses_prompt=True,
        loads_model=True,
        gpu=True,
    ),
    StageSpec(
        "evaluate",
        "edit",
        ("evaluation", "pose", "segmentation"),
        ("frames", "pose/meta.json", "offset", "sample"),
        ("eval/details.json", "eval/report.html"),
        source_inputs=(
            "frames",
            "masks",
            "stage1/loss.tsv",
            "stage2/loss.tsv",
            "stage1/meta.json",
            "stage2/meta.json",
            "inversion",
        ),
        uses_prompt=True,
        metrics=("eval/metrics.json",),
    ),
)
PREPARATION_STAGES = SOURCE_STAGES[:3]  # a prepared source: frames, segment, pose
RETARGETING_STAGES = EDIT_STAGES[:3]  # an edit's reference, reference_pose, offset: the preview
SOURCE_STAGE_NAMES = tuple(s.name for s in SOURCE_STAGES)
EDIT_STAGE_NAMES = tuple(s.name for s in EDIT_STAGES)
STAGE_NAMES = SOURCE_STAGE_NAMES + EDIT_STAGE_NAMES
# The order a case's stages run in: the source prepared, the edit retargeted (which may stop the case
# before any GPU time), the source tuned and inverted, the edit sampled and evaluated.
RUN_ORDER = (*PREPARATION_STAGES, *RETARGETING_STAGES, *SOURCE_STAGES[3:], *EDIT_STAGES[3:])
GPU_STAGES = frozenset(s.name for s in SOURCE_STAGES + EDIT_STAGES if s.gpu)
CHECKPOINTS = {s.name: s.checkpoint for s in SOURCE_STAGES + EDIT_STAGES if s.checkpoint}


def upstream(spec: StageSpec) -> tuple[tuple[str, str], ...]:
    """The stages whose outputs ``spec`` reads, as (folder, stage name); folder is "own" (its own
    folder's), "source" (an edit's source folder) or "prepared" (the prepared source). The flow
    submits a stage after these."""
    own = SOURCE_STAGES if spec.side == "source" else EDIT_STAGES
    found = []
    for folder, stages, reads in (
        ("own", own, spec.inputs),
        ("source", SOURCE_STAGES, spec.source_inputs),
        ("prepared", PREPARATION_STAGES, spec.prepared_inputs),
    ):
        for stage in stages:
            written = stage.outs + stage.metrics + stage.plots
            if stage is not spec and any(r == w or r.startswith(w + "/") for r in reads for w in written):
                found.append((folder, stage.name))
    return tuple(found)


def code_closure(root: Path, module: str) -> list[Path]:
    """Every project file that running ``module`` may execute, sorted: its own and those of every
    project module it imports, at the top or inside functions, transitively (the standard library's
    ``modulefinder``, searching the project only: third-party packages are not followed)."""
    from modulefinder import ModuleFinder

    root = Path(root).resolve()
    finder = ModuleFinder(path=[str(root)])
    finder.import_hook(module)
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return sorted(f for f in files if f.is_relative_to(root) and f.parts[len(root.parts)] in PROJECT_PACKAGES)
