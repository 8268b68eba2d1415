"""Predicted peak memory and time of the model stages (tuning, inversion, sampling) before they run:
the counts of eym_model/cost_model.py scaled by coefficients measured on real runs.

A stage's peak is ``baseline + static + scale × dynamic`` (static: weights, fp32 master copies and
AdamW's state; dynamic: the traced peak of its computations) and a step takes ``overhead + FLOPs /
rate``. The coefficients are in planner_calibration.json, fitted by benchmarks/planner_calibration.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from eym.errors import InputError
from eym.parameters import typed_section

CALIBRATION = Path(__file__).with_name("planner_calibration.json")
STAGES = ("stage1", "stage2", "invert", "sample")
GIB = 2**30
# Dense fp16 tensor throughput (FLOP/s) of common GPUs at the efficiency diffusers training reaches,
# for a CUDA device the calibration has not measured yet.
NOMINAL_FP16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12, "L4": 121e12,
                "4090": 165e12, "3090": 71e12, "V100": 125e12, "T4": 65e12}  # fmt: skip
GPU_EFFICIENCY = 0.3
CUDA_CONTEXT = 0.5 * GIB  # the CUDA context and kernels: outside the allocator's reserved bytes


@dataclass
class StagePlan:
    peak_bytes: int
    seconds_per_step: float
    steps: int
    static_bytes: int
    dynamic_bytes: int
    flops_per_step: float

    @property
    def seconds(self) -> float:
        return self.seconds_per_step * self.steps


def kind(stage: str, checkpointing: bool) -> str:
    """The coefficient set of a stage: training with or without gradient checkpointing, or inference."""
    if stage in ("stage1", "stage2"):
        return "tune_checkpointed" if checkpointing else "tune"
    return "infer"


def planned_stages(params: dict) -> list[str]:
    """The model stages a run of ``params`` executes."""
    stages = [s for s in ("stage1", "stage2") if typed_section(s, params.get(s, {})).enabled]
    if typed_section("inversion", params.get("inversion", {})).enabled:
        stages.append("invert")
    if typed_section("sampling", params.get("sampling", {})).start != "source":
        stages.append("sample")
    return stages


def steps_of(stage: str, params: dict) -> int:
    section = {"invert": "inversion", "sample": "sampling"}.get(stage, stage)
    return int(typed_section(section, params.get(section, {})).steps)


def trace(params: dict, frames: int, height: int, width: int, device: str, stages=None) -> dict[str, dict]:
    """The traced counts of each planned stage (of ``stages`` only, when given): what calibration fits
    and plan scales. Read from the trace cache when this stage was traced before (trace_cache.py)."""
    from . import trace_cache

    model = typed_section("model", params.get("model", {}))
    found = {}
    for stage in planned_stages(params):
        if stages is not None and stage not in stages:
            continue
        key = trace_cache.trace_key(params, stage, frames, height, width, device)
        found[stage] = trace_cache.read(key)
        if found[stage] is None:
            from .cost_model import stage_work

            nets = _networks(json.dumps(model.model_dump(), sort_keys=True, default=str))
            try:
                work = stage_work(nets, stage, params, frames, height, width, device)
            except RuntimeError as exc:  # shapes that do not meet: a ControlNet made for another base model
                raise InputError(
                    f"model.base {model.base} and model.controlnet {model.controlnet} do not fit together: "
                    f"{str(exc).splitlines()[-1]}"
                ) from exc
            found[stage] = {**asdict(work), "kind": kind(stage, model.gradient_checkpointing)}
            trace_cache.write(key, found[stage])
    return found


@lru_cache(maxsize=4)
def _networks(model_json: str) -> dict:
    """The meta networks of a ``model`` section, built once per process (a plan tries several settings)."""
    from .cost_model import meta_networks

    return meta_networks(json.loads(model_json))


def coefficients(device: str) -> tuple[dict, bool]:
    """The calibrated coefficients for a device ("cpu" or "cuda…"), and whether they were measured on
    this kind of device (False: CUDA before a GPU calibration, from nominal throughput)."""
    calibration = json.loads(CALIBRATION.read_text())
    if device.startswith("cuda"):
        if "cuda" in calibration:
            return calibration["cuda"], True
        rate = _nominal_rate(device)
        uncalibrated = {"baseline_bytes": 0.0, "scale": {}, "overhead": {}, "rate": {}}
        uncalibrated["rate"] = {k: rate for k in ("tune", "tune_checkpointed", "infer")}
        uncalibrated["rate"]["tune_checkpointed"] = rate / 1.33  # the recomputed forward
        return uncalibrated, False
    return calibration["cpu"], True


def _nominal_rate(device: str) -> float:
    import torch

    name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else ""
    peak = next((v for k, v in NOMINAL_FP16.items() if k in name), 100e12)
    return peak * GPU_EFFICIENCY


def plan(params: dict, frames: int, height: int, width: int, device: str, stages=None) -> dict[str, StagePlan]:
    """Each planned model stage's predicted peak memory (RSS on CPU; on CUDA the allocator's reserved
    bytes and the context) and time per step, for ``frames`` frames of height×width on ``device``."""
    c, _ = coefficients(device)
    context = CUDA_CONTEXT if device.startswith("cuda") else 0
    plans = {}
    for stage, work in trace(params, frames, height, width, device, stages).items():
        peak, seconds = predict_row(work, c)
        plans[stage] = StagePlan(
            int(peak + context), float(seconds), steps_of(stage, params), work["static_bytes"],
            work["dynamic_bytes"], work["flops_per_step"],
        )  # fmt: skip
    return plans


def fit(rows: list[dict]) -> dict:
    """Coefficients that minimise the relative error of measured rows (each with ``kind``,
    ``static_bytes``, ``dynamic_bytes``, ``flops_per_step`` and the measured ``peak_gib`` and
    ``seconds_per_step``): one baseline, a dynamic scale per kind; per kind an overhead and a rate."""
    kinds = sorted({r["kind"] for r in rows})
    measured = np.array([r["peak_gib"] * GIB for r in rows])
    design = np.array([[1.0] + [r["dynamic_bytes"] * (r["kind"] == k) for k in kinds] for r in rows])
    target = measured - np.array([r["static_bytes"] for r in rows])
    solution = np.linalg.lstsq(design / measured[:, None], target / measured, rcond=None)[0]
    result = {"baseline_bytes": float(solution[0]), "scale": dict(zip(kinds, map(float, solution[1:])))}
    result["overhead"], result["rate"] = {}, {}
    for k in kinds:
        timed = [r for r in rows if r["kind"] == k and r.get("seconds_per_step")]
        seconds = np.array([r["seconds_per_step"] for r in timed])
        flops = np.array([r["flops_per_step"] for r in timed])
        a = np.stack([np.ones_like(flops), flops], axis=1) / seconds[:, None]
        overhead, per_flop = np.linalg.lstsq(a, np.ones_like(seconds), rcond=None)[0]
        result["overhead"][k], result["rate"][k] = max(float(overhead), 0.0), 1.0 / max(float(per_flop), 1e-15)
    result["rows"] = len(rows)
    return result


def predict_row(row: dict, c: dict) -> tuple[float, float]:
    """Predicted peak bytes and seconds per step of a traced row under coefficients ``c``."""
    peak = c["baseline_bytes"] + row["static_bytes"] + c["scale"].get(row["kind"], 1.0) * row["dynamic_bytes"]
    return peak, c["overhead"].get(row["kind"], 0.0) + row["flops_per_step"] / _rate(c, row["kind"])


def _rate(c: dict, kind: str) -> float:
    """FLOP/s of a kind; checkpointed tuning not measured yet: plain tuning's, less the recomputed forward."""
    return c["rate"][kind] if kind in c["rate"] else c["rate"]["tune"] / 1.33


def predicted_table(rows: list[dict], c: dict) -> str:
    """Markdown: predicted against measured peak memory and time per step, per configuration and stage."""
    lines = [
        "| configuration | role | stage | predicted peak (GiB) | measured peak (GiB) | error | "
        "predicted s/step | measured s/step | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak, seconds = predict_row(r, c)
        measured_peak, measured_seconds = r["peak_gib"], r.get("seconds_per_step")
        time_cells = "– | – | –"
        if measured_seconds:
            time_cells = f"{seconds:.2f} | {measured_seconds:.2f} | {seconds / measured_seconds - 1:+.0%}"
        lines.append(
            f"| {r['name']} | {r['role']} | {r['stage']} | {peak / GIB:.2f} | {measured_peak:.2f} | "
            f"{peak / GIB / measured_peak - 1:+.0%} | {time_cells} |"
        )
    return "\n".join(lines) + "\n"
