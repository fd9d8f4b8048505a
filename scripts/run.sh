#!/usr/bin/env bash
# The main job: the whole Collector on its embedded defaults, and a demo that drives it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/collector demo "$@"
