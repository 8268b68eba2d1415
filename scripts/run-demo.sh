#!/usr/bin/env bash
# The demo: set up (first time), then edit one synthetic puppet clip end to end on the CPU, offline,
# through the Prefect flow and DVC: frames, masks, pose, retargeting, stage-1 and stage-2 tuning,
# inversion, sampling and evaluation, with eym-mini (models/eym-mini: the puppet-world base model that
# ships with the repository) and params.yaml's defaults, which are chosen for it. Prints where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
./scripts/setup.sh
source scripts/offline-env.sh
export PATH="$PWD/.venv/bin:$PATH"

case=data/demo/puppet-demo
[ -f "$case/case.json" ] || eym-puppet case --out "$case" --seed 1 --size 256 --frames 24 \
  --source-motion walk_in_place --reference-motion arms_raise
field() { python -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$case/case.json" "$1"; }

eym-edit run --id puppet-demo --source "$case/source.mp4" --reference "$case/reference.mp4" \
  --ground-truth "$case/gt/edit.mp4" --source-prompt "$(field source_prompt)" --prompt "$(field prompt)"
echo "demo finished in $((SECONDS - start)) s"
