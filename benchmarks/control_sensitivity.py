"""How strongly the skeleton steers a (tuned) model: the diagnostic behind the quality table's findings.

    .venv/bin/python benchmarks/control_sensitivity.py data/quality/cases/puppet-000-r0--{full,wo_ma,no_tuning}

For each edit folder (its stages run), replays the edit's DDIM sampling from its inverted noise
with the aligned reference skeletons and, every ``--every`` steps, also predicts the noise with the
source's own skeletons and with no ControlNet. Prints, per edit, averaged over those steps:
``steer`` = |eps(reference) - eps(source skeleton)| / |eps(reference)|, how much changing the
skeleton from the source's pose to the reference's changes the prediction (0: the skeleton is
ignored), and ``control`` = |eps(reference) - eps(no ControlNet)| / |eps(reference)|.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def sensitivity(case_dir: Path, every: int) -> dict:
    from diffusers import DDIMScheduler

    from eym.media import read_frames
    from eym_model.components import load_components
    from eym_model.diffusion import encode_prompts
    from eym_model.pipeline import EditYourMotionPipeline, skeleton_tensor
    from stages.common import OFFSET, POSE, default_params_files, load_params, load_stage_weights, section, source_dir
    from stages.sample import starting_noise

    params = load_params(default_params_files(case_dir))
    p = section(params, "sampling")
    pipe = EditYourMotionPipeline(load_components(section(params, "model")))
    components, source_folder = pipe.components, source_dir(case_dir)
    for stage in ("stage1", "stage2"):
        if (source_folder / stage / "weights.safetensors").is_file():
            load_stage_weights(pipe, source_folder, (stage,))
    model, base = components.model.eval(), components.base
    reference = read_frames(case_dir / OFFSET / "aligned_skeleton")
    own = read_frames(source_folder / POSE / "source_skeleton")[: len(reference)]
    ref_skel = skeleton_tensor(reference).to(components.device, components.dtype)
    own_skel = skeleton_tensor(own).to(components.device, components.dtype)
    text = encode_prompts(base.tokenizer, base.text_encoder, [str(params["prompt"] or "")])
    x = starting_noise(source_folder, p, len(reference)).to(components.device)
    scheduler = DDIMScheduler.from_config(base.scheduler_config)
    scheduler.set_timesteps(int(p.steps), device=x.device)
    scale = float(p.conditioning_scale)
    steer, control = [], []
    with torch.no_grad(), components.autocast():
        for i, t in enumerate(scheduler.timesteps):
            eps = model(x, t, text, ref_skel, scale).float()
            if i % every == 0:
                size = eps.norm()
                steer.append(float((eps - model(x, t, text, own_skel, scale).float()).norm() / size))
                control.append(float((eps - model(x, t, text, None, scale).float()).norm() / size))
            x = scheduler.step(eps.to(x.dtype), t, x).prev_sample
    return {"steer": sum(steer) / len(steer), "control": sum(control) / len(control)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", type=Path, help="edit folders whose stages have run")
    parser.add_argument("--every", type=int, default=5, help="measure every n-th sampling step")
    args = parser.parse_args()
    for case in args.cases:
        print(json.dumps({"case": case.name, **sensitivity(case.resolve(), args.every)}), flush=True)


if __name__ == "__main__":
    main()
