#!/usr/bin/env bash
# Set up the environment (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The report tests drive Debian's chromium (playwright's own browser download cannot work offline).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run-tests: installing Debian's chromium for the report tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "run-tests: chromium is missing (apt-get install chromium): the report tests will fail" >&2
  fi
fi
source scripts/offline-env.sh
.venv/bin/ruff check --quiet eym puppet_world eym_model eym_mini stages flows sandbox tests benchmarks
.venv/bin/ruff format --check --quiet eym puppet_world eym_model eym_mini stages flows sandbox tests benchmarks
exec .venv/bin/python -m pytest "$@"
