#!/usr/bin/env bash
# Sets up a fresh machine for metaadv_tf (idempotent): Debian's Fashion-MNIST package where apt
# exists, a virtualenv in .venv with the package (editable) and its extras, and the offline dataset.
# Set METAADV_PYTHON to use an existing interpreter/environment instead of .venv, and
# METAADV_EXTRAS to pick other extras than cpu,test (e.g. gpu,test: the TensorFlow build for GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -e "$FMNIST" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PYTHON="${METAADV_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PYTHON=.venv/bin/python
fi
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[${METAADV_EXTRAS:-cpu,test}]"
TF_CPP_MIN_LOG_LEVEL=2 "$PYTHON" scripts/prepare_data.py --dataset=fashion_mnist
