#!/usr/bin/env bash
# Protocol v2 for the CNN zoo entries that lack it or hold it under older settings, one after
# another, each written into its card.
# Rerun to resume: each finished attack is cached in runs/v2/NAME.cache.json.
#   bash scripts/experiments/zoo_v2.sh [NAME ...]     (default: every CNN entry, research artifacts too)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${METAADV_PYTHON:-.venv/bin/python}"
mkdir -p runs/v2
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <("$PYTHON" -c \
  "from metaadv_tf import zoo; print('\n'.join(zoo.list_models(architecture='cnn', include_research=True)))" 2>/dev/null)
for name in "${names[@]}"; do
  if "$PYTHON" -c "import sys; from metaadv_tf import zoo; sys.exit(zoo.evaluation_is_current(zoo.get_card('$name')))" 2>/dev/null; then
    echo "== $name $(date)"
    "$PYTHON" scripts/evaluate.py --model="$name" --protocol=v2 --update_card \
      --cache="runs/v2/$name.cache.json" --output="runs/v2/$name.json"
  fi
done
