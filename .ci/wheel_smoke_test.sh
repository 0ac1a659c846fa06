#!/usr/bin/env bash
# Builds the wheel and tests it as a user gets it: installed with [cpu] into a fresh virtualenv
# outside the checkout, run from a directory outside the checkout, weights downloaded from the
# checkout's zoo/ served on 127.0.0.1 (.ci/wheel_smoke_test.py); and, installed without
# TensorFlow, failing on import with one line naming the extras. A few minutes: pip's cache keeps
# the TensorFlow wheel from being downloaded again.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${METAADV_PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

rm -rf "$ROOT/build"  # setuptools' build/ may hold files of an older tree, which would enter the wheel
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/dist" "$ROOT"
rm -rf "$ROOT/build"
WHEEL="$(ls "$WORK"/dist/metaadv_tf-*.whl)"
echo "Built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

"$PYTHON" -m venv "$WORK/bare"
"$WORK/bare/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$WHEEL"
if message="$(cd "$WORK" && "$WORK/bare/bin/python" -c 'import metaadv_tf' 2>&1)"; then
  echo "FAILED: import metaadv_tf worked without TensorFlow" >&2; exit 1
fi
case "$(tail -n 1 <<< "$message")" in
  *"metaadv_tf[cpu]"*"metaadv_tf[gpu]"*) echo "ok: without TensorFlow, import metaadv_tf names the extras" ;;
  *) echo "FAILED: import without TensorFlow says: $message" >&2; exit 1 ;;
esac

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[cpu]"
cd "$WORK"
"$WORK/venv/bin/python" "$ROOT/.ci/wheel_smoke_test.py" --wheel="$WHEEL" --zoo="$ROOT/zoo"
