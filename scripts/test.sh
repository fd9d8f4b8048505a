#!/usr/bin/env bash
# The test suite: installs what it needs, then ruff and pytest (real Redis + PostgreSQL).
# Two pytest processes (pytest-xdist), a test file's tests in one of them: most of the suite
# waits on real servers and worker processes, so two halves finish in about half the time.
# COLLECTOR_TEST_PROCESSES=0 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --postgres
.venv/bin/ruff check .
processes=${COLLECTOR_TEST_PROCESSES:-2}
parallel=()
if [ "$processes" != 0 ]; then
  parallel=(-n "$processes" --dist loadfile)
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${parallel[@]}" --durations=15 "$@"
