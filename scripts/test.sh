#!/usr/bin/env bash
# Sets everything up, then runs the test suite (slow tests too with: bash scripts/test.sh --runslow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${METAADV_PYTHON:-.venv/bin/python}"
TF_CPP_MIN_LOG_LEVEL=2 exec "$PYTHON" -m pytest tests -q "$@"
