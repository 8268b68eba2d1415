#!/usr/bin/env bash
# eym-mini's diffusion phase on a CUDA GPU (configs/eym-mini-gpu.yaml), sized to a time budget:
#   scripts/train-eym-mini-gpu.sh ROOT MINUTES [OUT]
# The same phases as `dvc repro eym_mini`, run in ROOT with the shipped VAE (models/eym-mini/base/vae),
# going on from the shipped weights (eym_mini.diffusion.start_from): data, a 60-step probe that times a
# step, then as many steps as fit in what is left of MINUTES (all of it counted: data, latents, probe,
# packing).
# Writes ROOT/build/eym-mini/diffusion (fp32 EMA weights) and, with OUT, OUT/diffusion.tar.* (fp16, in
# 15 MB parts: `cat diffusion.tar.* | tar x` restores build/eym-mini/diffusion) and the loss log.
set -euo pipefail
root=$1 minutes=$2 out=${3:-}
SECONDS=0
layers=(--params params.yaml --params configs/eym-mini-gpu.yaml ${EYM_MINI_EXTRA:+--params "$EYM_MINI_EXTRA"})  # extra: a test layer
mkdir -p "$root/build/eym-mini"
rm -rf "$root/build/eym-mini/vae" && cp -r models/eym-mini/base/vae "$root/build/eym-mini/vae"
mkdir -p "$root/build/eym-mini/logs" && cp models/eym-mini/logs/vae_loss.tsv "$root/build/eym-mini/logs/"  # export's card
python -m eym_mini data "${layers[@]}" --root "$root"
echo "eym-mini gpu: data ready after $SECONDS s" >&2
shipped=$(($(wc -l < models/eym-mini/logs/diffusion_loss.tsv) - 1))  # steps the shipped weights had
echo "eym_mini: {diffusion: {steps: $((shipped + 60)), start_from: $PWD/models/eym-mini}}" > "$root/probe.yaml"
python -m eym_mini diffusion "${layers[@]}" --params "$root/probe.yaml" --root "$root"  # the run goes on from it
left=$((${minutes%.*} * 60 - SECONDS - 60))  # a minute for start-up and packing
steps=$(python - "$root/build/eym-mini/logs/diffusion_loss.tsv" "$left" "$shipped" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
col, first = rows[0].index("seconds"), int(sys.argv[3]) + 30  # after start-up and prefetch
per_step = (float(rows[-1][col]) - float(rows[first][col])) / (len(rows) - 1 - first)
print(int(sys.argv[3]) + 60 + max(10, int(0.9 * float(sys.argv[2]) / per_step) // 10 * 10))
PY
)
echo "eym-mini gpu: probe done after $SECONDS s; training to step $steps in the $left s left" >&2
echo "eym_mini: {diffusion: {steps: $steps}}" > "$root/steps.yaml"
python -m eym_mini diffusion "${layers[@]}" --params "$root/steps.yaml" --root "$root"
if [ -n "$out" ]; then
  python - "$root/build/eym-mini/diffusion" <<'PY'
import sys, torch
from pathlib import Path
from diffusers import ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextModel
folder = Path(sys.argv[1])
for name, cls in (("unet", UNet2DConditionModel), ("controlnet", ControlNetModel), ("text_encoder", CLIPTextModel)):
    cls.from_pretrained(folder / name).to(torch.float16).save_pretrained(folder / name)
PY
  tar c -C "$root" build/eym-mini/diffusion build/eym-mini/logs/diffusion_loss.tsv | split -b 15M - "$out/diffusion.tar."
fi
