#!/usr/bin/env bash
# Set up the environment (if needed) and run the demo: one puppet case end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/offline-env.sh
export PATH="$PWD/.venv/bin:$PATH"
exec python -m eym.puppet.benchmark case --out data/demo/puppet-demo --seed 1 --size 256 --frames 8
