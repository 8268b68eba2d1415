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
# Two workers, a test file each at a time (module fixtures stay shared within a file): most of the suite
# is single-threaded process start-up, DVC and Prefect, so two cores finish it in two thirds of the
# time. One thread per torch process, or the two workers' torch threads fight over the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -n "${EYM_TEST_WORKERS:-2}" --dist loadfile "$@"
