"""Does a border around each frame help MediaPipe find the person? eym-mini's ControlNet check, frame by frame.

    .venv/bin/python benchmarks/detector_margin.py --params params.yaml --margins 0,0.1,0.25,0.5
    .venv/bin/python benchmarks/detector_margin.py --margins 0,0.25 --skip 64 --seed 1000

Draws frames with the shipped eym-mini from the held-out skeletons (``data/eym-mini/heldout``, made by
``dvc repro eym_mini_data``) at the check's settings (``eym_mini.export``), re-detects them and the
true held-out frames as single images with each margin, and prints PCK@0.1 against the conditioning
skeleton, the share of frames with a person found, and the chance level (the same detections against
other frames' skeletons). ``--skip K --seed S`` takes the skeletons after the first K with other noise
(a check of a margin chosen on the first frames). Video mode, as the pose and evaluation stages run
MediaPipe, on true clips: ``benchmarks/puppet_detectability.py --size 128 --margin M``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def single_frames(params: dict, margins: list[float], device: str, skip: int, seed: int | None) -> None:
    from dataclasses import replace

    from eym_mini import DATA_DIR, MODEL_DIR
    from eym_mini.data import load_set
    from eym_mini.export import generate_from_skeletons, pose_check_scores, redetect

    p = dict(params["eym_mini"]["export"])
    if seed is not None:
        p["eval_seed"] = seed
    heldout = load_set(DATA_DIR / "heldout")
    heldout = replace(
        heldout, **{k: getattr(heldout, k)[skip:] for k in ("frames", "masks", "keypoints", "prompts", "seeds")}
    )
    _, generated = generate_from_skeletons(MODEL_DIR / "base", MODEL_DIR / "controlnet", heldout, p, device)
    count = len(generated)
    truth = np.asarray(heldout.frames[:count])
    print(f"{count} held-out skeletons from #{skip}, noise seed {p['eval_seed']}, at {p['detect_size']} px\n")
    print("| margin | PCK@0.1 generated | person found | PCK on found | chance | PCK@0.1 true frames | found (true) |")
    print("|---|---|---|---|---|---|---|")
    for margin in margins:
        q = {**p, "detect_margin": margin}
        found_truth = redetect(truth, q)
        s = pose_check_scores(redetect(generated, q), found_truth, heldout.keypoints[:count])
        true_found = float(np.isfinite(found_truth[:, :, 0]).any(1).mean())
        print(
            f"| {margin:g} | {s['pck']:.3f} | {s['person_found']:.3f} | {s['pck_person_found'] or 0:.3f} "
            f"| {s['pck_other_skeletons']:.3f} | {s['pck_true_frames']:.3f} | {true_found:.3f} |",
            flush=True,
        )


def main() -> None:
    from eym_mini.training import resolve_device
    from stages.common import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, action="append", help="parameter files (default: params.yaml)")
    parser.add_argument("--margins", default="0,0.1,0.25,0.5", help="comma-separated shares of the frame's side")
    parser.add_argument("--skip", type=int, default=0, help="held-out skeletons to leave out first")
    parser.add_argument("--seed", type=int, help="noise seed (default: eym_mini.export.eval_seed)")
    args = parser.parse_args()
    params = load_params(args.params or [Path("params.yaml")])
    margins = [float(m) for m in args.margins.split(",")]
    device = resolve_device(str(params["eym_mini"].get("device", "auto")))
    single_frames(params, margins, device, args.skip, args.seed)


if __name__ == "__main__":
    main()
