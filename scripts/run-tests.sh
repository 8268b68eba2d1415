#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/offline-env.sh
.venv/bin/ruff check --quiet eym eym_model stages flows tests benchmarks
exec .venv/bin/python -m pytest "$@"
