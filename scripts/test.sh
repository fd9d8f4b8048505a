#!/usr/bin/env bash
# The test suite: installs what it needs, then ruff and pytest (real Redis + PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --postgres
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
