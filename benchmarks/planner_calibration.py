"""The planner's calibration: measure the model stages' peak memory and seconds per step on real runs,
fit the cost model's coefficients to them, and check the predictions on configurations kept apart.

    .venv/bin/python benchmarks/planner_calibration.py --out reports/planner          # measure + fit (~45 min)
    .venv/bin/python benchmarks/planner_calibration.py --out reports/planner --fit-only
    python3 benchmarks/planner_calibration.py --device cuda --out $OUT/planner      # on a GPU: its own section

Each configuration is one ``benchmarks/real_scale.py`` run (``eym-edit run`` of a puppet case, tiny step
counts) in ``--out/<name>/stages.json``; a configuration already measured there is not run again. The
fit uses the ``calibrate`` rows only and writes the device's section of eym_model/planner_calibration.json
(the peak is the RSS on a CPU, CUDA's reserved bytes on a GPU); ``table.md`` lists predicted against
measured for every row, the ``check`` rows being the planner's error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SD15 = REPO / "build" / "sd15-random"
# name: (model, size, frames, extra --set, role)
CONFIGURATIONS = {
    "mini-192x8": ("eym-mini", 192, 8, [], "calibrate"),
    "mini-128x16": ("eym-mini", 128, 16, [], "calibrate"),
    "mini-320x8": ("eym-mini", 320, 8, [], "calibrate"),
    "sd15-256x4": ("sd15", 256, 4, [], "calibrate"),
    "sd15-256x4-no-checkpointing": ("sd15", 256, 4, ["model.gradient_checkpointing=false"], "calibrate"),
    "sd15-384x4": ("sd15", 384, 4, [], "calibrate"),
    "mini-128x8": ("eym-mini", 128, 8, [], "check"),
    "mini-256x16": ("eym-mini", 256, 16, [], "check"),
    "sd15-512x8": ("sd15", 512, 8, [], "check"),
}
# on a GPU (--device cuda): SD 1.5-sized at 512 px, the frame counts users run
CUDA_CONFIGURATIONS = {
    "sd15-512x8": ("sd15", 512, 8, [], "calibrate"),
    "sd15-512x24": ("sd15", 512, 24, [], "calibrate"),
    "sd15-512x8-no-checkpointing": ("sd15", 512, 8, ["model.gradient_checkpointing=false"], "calibrate"),
    "sd15-512x16": ("sd15", 512, 16, [], "check"),
}


def measure(out: Path, configurations: dict, names: list[str], models: Path) -> None:
    import real_scale

    for name in names:
        model, size, frames, sets, _ = configurations[name]
        if (out / name / "stages.json").is_file():
            continue
        print(f"measuring {name}", flush=True)
        argv = ["--models", "eym-mini" if model == "eym-mini" else str(models), "--size", str(size)]
        argv += ["--frames", str(frames), "--out", str(out / name), *(x for s in sets for x in ("--set", s))]
        if real_scale.main(argv):
            raise SystemExit(f"{name}: the run failed (see above)")


def run_params(models: Path | None, sets: list[str]) -> dict:
    """The parameters of a measured run, merged as eym-edit merges them: params.yaml, configs/sd15.yaml
    and the model (SD 1.5-sized; None: eym-mini's, params.yaml's), and the run's --set values."""
    from types import SimpleNamespace

    from eym.parameters import merge_checked, read_layer
    from flows.overrides import override_layers

    options = SimpleNamespace(params=[], set=sets, base_model=None, controlnet=None)
    if models is not None:
        options = SimpleNamespace(
            params=[REPO / "configs" / "sd15.yaml"],
            set=sets,
            base_model=str(models / "base"),
            controlnet=str(models / "controlnet"),
        )
    return merge_checked([("params.yaml", read_layer(REPO / "params.yaml")), *override_layers(options)])


def rows(out: Path, configurations: dict, models: Path, device: str) -> list[dict]:
    """Measured and traced figures of every model stage of every measured configuration; the peak is
    the RSS on a CPU, CUDA's reserved bytes on a GPU."""
    from eym_model.planner import trace

    found = []
    for name, (model, size, frames, _, role) in configurations.items():
        measured = out / name / "stages.json"
        if not measured.is_file():
            continue
        run = json.loads(measured.read_text())
        figures = run["stages"]
        params = run_params(None if model == "eym-mini" else models, run["sets"])
        for stage, work in trace(params, frames, size, size, device).items():
            if stage in figures:
                peak = figures[stage]["peak_cuda_reserved_gib" if device == "cuda" else "peak_rss_gib"]
                found.append({"name": name, "role": role, "stage": stage, "peak_gib": peak, **figures[stage], **work})
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="configurations to measure (default: all of the device's)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="calibrate the planner for it")
    parser.add_argument("--fit-only", action="store_true", help="fit and check what --out already holds")
    parser.add_argument("--models", type=Path, default=SD15, help="the SD 1.5-sized model (its configs suffice to fit)")
    parser.add_argument("--calibration", type=Path, help="where the fit goes (default: the planner's own file)")
    args = parser.parse_args(argv)
    configurations = CUDA_CONFIGURATIONS if args.device == "cuda" else CONFIGURATIONS
    if not args.fit_only:
        measure(args.out, configurations, args.only or list(configurations), args.models)
    import full_size_model

    from eym_model.planner import CALIBRATION, fit, predicted_table

    if not (args.models / "controlnet").is_dir():
        full_size_model.main(["--out", str(args.models), "--configs-only"])
    data = rows(args.out, configurations, args.models, args.device)
    (args.out / "rows.json").write_text(json.dumps(data, indent=2) + "\n")
    target = args.calibration or CALIBRATION
    calibration = json.loads(target.read_text()) if target.is_file() else {}
    calibrate = [r for r in data if r["role"] == "calibrate"]
    if calibrate:
        calibration[args.device] = fit(calibrate)  # the other device's section stays
        target.write_text(json.dumps(calibration, indent=2) + "\n")
    elif args.device not in calibration:
        raise SystemExit(f"{args.out}: no calibrate configuration measured, and {target} has no {args.device} fit")
    table = predicted_table(data, calibration[args.device])
    (args.out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
