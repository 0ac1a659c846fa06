#!/usr/bin/env bash
# Runs a queue of long experiments one after another, in the background, from a snapshot of main:
#
#     nohup bash scripts/experiments/run_queue.sh > /dev/null 2>&1 &
#
# The queue is runs/queue.txt, one command per line. A line starting with "--" holds the flags of
# scripts/experiments/threat_models.py; any other line is a shell command, in which $PY is the
# checkout's Python. Before each line the snapshot (a git worktree in runs/src, whose runs/ is the
# checkout's) moves to main's latest commit, so commits made while a line runs do not change the
# code under it; what a line writes outside runs/ stays in the snapshot and is discarded at the
# next line (threat_models.py's default --output among it: tabulate with --measured_only in the
# checkout). A line that succeeds leaves the queue; one that fails stays at its head, is
# copied to runs/queue_failed.txt, and the runner stops until that file is cleared. Output is appended to
# runs/queue.log. The experiments resume from their checkpoints, so after a kill the runner can
# simply be started again. Edit any line but the first while it runs (write the file atomically).
set -uo pipefail
cd "$(dirname "$0")/../.."
CHECKOUT="$PWD"
QUEUE="$CHECKOUT/runs/queue.txt"
FAILED="$CHECKOUT/runs/queue_failed.txt"
LOG="$CHECKOUT/runs/queue.log"
SNAPSHOT="$CHECKOUT/runs/src"
export PY="$CHECKOUT/.venv/bin/python" TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=1
export METAADV_PYTHON="$PY"  # for the scripts that default to .venv/bin/python, absent from the snapshot

if [ -s "$FAILED" ]; then
  echo "$FAILED is not empty: fix or clear it before starting the queue." >&2
  exit 1
fi
if [ ! -d "$SNAPSHOT" ]; then
  git worktree add --detach "$SNAPSHOT" main >> "$LOG" 2>&1 || exit 1
  ln -s "$CHECKOUT/runs" "$SNAPSHOT/runs"
fi

while [ -s "$QUEUE" ]; do
  line=$(head -n 1 "$QUEUE")
  git -C "$SNAPSHOT" checkout --quiet --force --detach main >> "$LOG" 2>&1 || exit 1
  case "$line" in
    --*) command="\"\$PY\" scripts/experiments/threat_models.py $line" ;;
    *) command="$line" ;;
  esac
  echo "$(date -u +%FT%TZ) start $(git -C "$SNAPSHOT" rev-parse --short HEAD): $line" >> "$LOG"
  (cd "$SNAPSHOT" && PYTHONPATH="$SNAPSHOT" bash -c "$command") >> "$LOG" 2>&1
  status=$?
  echo "$(date -u +%FT%TZ) exit $status: $line" >> "$LOG"
  if [ "$status" -ne 0 ]; then
    echo "$line" >> "$FAILED"
    exit "$status"
  fi
  tail -n +2 "$QUEUE" > "$QUEUE.tmp" && mv "$QUEUE.tmp" "$QUEUE"
done
