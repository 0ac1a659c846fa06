#!/usr/bin/env bash
# The recipes of the zoo: `bash scripts/experiments/zoo_recipes.sh NAME...` trains each named entry with
# scripts/train.py in runs/zoo/NAME (rerun to resume), then publishes it to zoo/ with
# scripts/publish_model.py (evaluation, golden outputs, sha256, model card). The threat-model
# study's entries (STUDY_RUNS) are its seed-0 runs on all four threat models, trained and measured
# by scripts/experiments/threat_models.py (in runs/threat_models/all/, or the entry's --workdir),
# published from their best validation checkpoint, with protocol v2 in the card. An entry a study
# run replaces (RETIRES) is first kept under a new name as a research artifact.
# `bash scripts/experiments/zoo_recipes.sh --list` lists the names.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${METAADV_PYTHON:-.venv/bin/python}"
export TF_CPP_MIN_LOG_LEVEL=2

TASKS="fgsm,pgd_linf(steps=3)"   # the Linf training tasks of avg, max and the meta methods
CNN="--model=cnn --epochs=2 --checkpoint_every=100"
RESNET="--model=resnet18 --epochs=1 --checkpoint_every=20 --log_every=5 --eval_every=200 --eval_examples=200 --eval_attacks=fgsm,pgd_linf(steps=10)"
META="--num_tasks=2 --support_size=32 --query_size=32 --inner_steps=1 --inner_learning_rate=0.05"
declare -A RECIPES=(
  [cnn_standard]="$CNN --method=standard"
  [cnn_pgd_at]="$CNN --method=pgd_at --pgd_steps=7"
  [cnn_fgsm_rs]="$CNN --method=fgsm_rs"
  [cnn_avg]="$CNN --method=avg --train_attacks=$TASKS"
  [cnn_max]="$CNN --method=max --train_attacks=$TASKS"
  [cnn_mat]="$CNN --method=mat --train_attacks=$TASKS $META"
  [cnn_mat_inner3]="$CNN --method=mat --train_attacks=$TASKS $META --inner_steps=3"
  [cnn_mat_anchored]="$CNN --method=mat --train_attacks=$TASKS $META --inner_steps=3 --pre_adaptation_weight=1.0"
  [cnn_fomaml]="$CNN --method=fomaml --train_attacks=$TASKS $META"
  [cnn_reptile]="$CNN --method=reptile --train_attacks=$TASKS $META --inner_steps=3"
  [resnet18_mat_v1]="$RESNET --method=mat --train_attacks=$TASKS $META --inner_steps=3 --pre_adaptation_weight=1.0"
  [resnet18_mat_inner1]="$RESNET --method=mat --train_attacks=$TASKS $META"
  [resnet18_pgd_at]="$RESNET --method=pgd_at --pgd_steps=7"
  # issue 16, point 5: multi-attack baselines on resnet18_mat's tasks and budget
  [resnet18_sat]="$RESNET --method=sat --train_attacks=$TASKS"
  [resnet18_max]="$RESNET --method=max --train_attacks=$TASKS"
)
# issues 16 and 19: the study's best MAT method and its best baseline, "METHOD [threat_models.py run flags]"
# (results/threat_models.md; the ResNet-18 pair: runs/resnet18_threat_models.md)
STUDY_RESNET="--model=resnet18 --epochs=5.2 --checkpoint_every=20 --eval_examples=500"
# training attacks in bfloat16; 100 steps of warm-up, without which MAT's loss climbs on a fresh ResNet-18
STUDY_RESNET+=" --attack_precision=mixed_bfloat16 --warmup_steps=100 --workdir=runs/threat_models_resnet18"
declare -A STUDY_RUNS=(
  [cnn_mat_mt]="mat_worst_maxanchor_tasks4"
  [cnn_baseline_mt]="max"
  [resnet18_mat]="mat_worst_maxanchor_tasks4 $STUDY_RESNET"
  [resnet18_baseline_mt]="max $STUDY_RESNET"
)
# the 1-epoch, Linf-only resnet18_mat stays loadable under its new name
declare -A RETIRES=(
  [resnet18_mat]="resnet18_mat_v1"
)
# float32 weights: the study's own, so the card's v2 numbers are the study's (its attack cache is reused)
STUDY_CARD="--checkpoint=best --nofloat16"
# extra publish flags: at seed 0, mat_worst_maxanchor_tasks4 on all four trails MAX on every threat model
declare -A STUDY_FLAGS=(
  [cnn_mat_mt]="--status=research"
)
STUDY_REASON="trails MAX on every threat model and on the union of protocol v2 (seed 0, results/threat_models.md); load cnn_baseline_mt"
STUDY_NOTES="Trained on all four threat models of protocol v2 at its radii (Linf 0.1, L2 1.5, L1 10, spatial grid)."

publish_study_run() {  # NAME: train (or resume) the study run, publish it, store protocol v2 in the card (rerun to resume)
  local name=$1 method flags root=runs/threat_models examples="" flag
  read -r method flags <<< "${STUDY_RUNS[$1]}"
  for flag in $flags; do
    case $flag in --workdir=*) root=${flag#*=} ;; --eval_examples=*) examples=${flag#*=} ;; esac
  done
  local workdir="$root/all/${method}_seed0"
  # shellcheck disable=SC2086
  "$PYTHON" scripts/experiments/threat_models.py --task_sets=all --methods="$method" --seeds=0 $flags \
    --output="$root/partial.md"
  [ "${PUBLISH:-1}" = "1" ] || return 0
  local notes="Study method $method, seed 0. $STUDY_NOTES"
  # exit 0: published from this run; 1: not yet; 2: another model holds the name
  local state=0
  "$PYTHON" -c 'import sys; from metaadv_tf import zoo; name, notes = sys.argv[1:]
sys.exit(1 if name not in zoo.list_models(include_research=True) else 0 if notes in zoo.get_card(name).notes else 2)' \
    "$name" "$notes" || state=$?
  if [ "$state" = 2 ] && [ -n "${RETIRES[$name]:-}" ]; then
    "$PYTHON" -c "import sys; from metaadv_tf import publish; publish.retire(*sys.argv[1:])" \
      "$name" "${RETIRES[$name]}" "superseded by $name, study method $method trained on all four threat models"
  fi
  if [ "$state" != 0 ]; then  # publish it; else resume the card's evaluation below
    # shellcheck disable=SC2086
    "$PYTHON" scripts/publish_model.py --workdir="$workdir" --name="$name" --overwrite $STUDY_CARD ${STUDY_FLAGS[$name]:-} \
      ${STUDY_FLAGS[$name]:+--status_reason="$STUDY_REASON"} --notes="$notes"
  fi
  [ -f "$workdir/card_v2_cache.json" ] || cp "$workdir/v2_cache.json" "$workdir/card_v2_cache.json"
  "$PYTHON" scripts/evaluate.py --model="$name" --protocol=v2 --update_card --cache="$workdir/card_v2_cache.json" \
    ${examples:+--num_examples=$examples}
}

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${!RECIPES[@]}" "${!STUDY_RUNS[@]}" | sort; exit 0; fi
for name in "$@"; do
  if [ -n "${STUDY_RUNS[$name]:-}" ]; then publish_study_run "$name"; continue; fi
  [ -n "${RECIPES[$name]:-}" ] || { echo "Unknown zoo entry '$name'. Known: $(printf '%s ' "${!RECIPES[@]}" "${!STUDY_RUNS[@]}")" >&2; exit 2; }
  workdir="runs/zoo/$name"
  # shellcheck disable=SC2086
  "$PYTHON" scripts/train.py ${RECIPES[$name]} --workdir="$workdir"
  if [ "${PUBLISH:-1}" = "1" ]; then
    "$PYTHON" scripts/publish_model.py --workdir="$workdir" --name="$name"
  fi
done
