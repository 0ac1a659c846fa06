#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded default: the zoo model
# cnn_mat_anchored (small CNN, meta-adversarially trained on Fashion-MNIST with the best MAT recipe
# so far) evaluated under its model card's attack protocol on 200 test images. Extra flags go
# to scripts/evaluate.py (e.g. --num_examples=1000 reproduces the card's numbers exactly;
# --model=cnn_pgd_at picks another zoo model; --verbosity=0 shows the libraries' log lines).
# The set-up's own output (pip, apt) goes to runs/demo/setup.log, shown if the set-up fails.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/demo
echo "Setting up (log: runs/demo/setup.log) ..."
if ! bash scripts/setup.sh > runs/demo/setup.log 2>&1; then
  cat runs/demo/setup.log >&2
  echo "Set-up failed: its log is above and in runs/demo/setup.log." >&2
  exit 1
fi
PYTHON="${METAADV_PYTHON:-.venv/bin/python}"
exec "$PYTHON" scripts/evaluate.py --model=cnn_mat_anchored --num_examples=200 \
  --output=runs/demo/cnn_mat_anchored.json "$@"
