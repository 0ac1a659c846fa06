#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded default: the zoo model
# cnn_mat_anchored (small CNN, meta-adversarially trained on Fashion-MNIST with the best MAT recipe
# so far) evaluated under its model card's attack protocol on 200 test images. Extra flags go
# to scripts/evaluate.py (e.g. --num_examples=1000 reproduces the card's numbers exactly;
# --model=cnn_pgd_at picks another zoo model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${METAADV_PYTHON:-.venv/bin/python}"
TF_CPP_MIN_LOG_LEVEL=2 exec "$PYTHON" scripts/evaluate.py --model=cnn_mat_anchored --num_examples=200 \
  --output=runs/demo/cnn_mat_anchored.json "$@"
