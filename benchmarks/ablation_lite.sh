#!/usr/bin/env bash
# Ablation of the lite preset (issue #4, paper Table 2): every variant is warm-started from the
# same full-model checkpoint and fine-tuned for the same number of steps on the same fold, then
# evaluated interactively with the same simulated clinician.
#
# Usage: benchmarks/ablation_lite.sh BASE_CKPT TRAIN_DATA SPLITS TEST_DATA RUNS_DIR [STEPS]
#   BASE_CKPT   full-model trainer checkpoint (e.g. runs/hpinet-lite-f0/best.pt at step 750)
#   TRAIN_DATA  `ichseg synth --out DIR --cases 300 --seed 1`
#   SPLITS      the base run's splits.json (fold 0)
#   TEST_DATA   `ichseg synth --out DIR --cases 24 --seed 4242` (never used for training)
# Environment: ICHSEG (command), THREADS, CACHE (prepared-case cache), CONFIG (training YAML),
#   ROUNDS (evaluation rounds, default 4), LR (fine-tuning learning rate, default 3e-4),
#   ONLY (space-separated subset of the variants below, default all).
set -euo pipefail
BASE=$1 DATA=$2 SPLITS=$3 TEST=$4 RUNS=$5 STEPS=${6:-150}
ICHSEG=${ICHSEG:-ichseg}
THREADS=${THREADS:-1}
EXTRA=()
if [[ -n "${CONFIG:-}" ]]; then EXTRA=(--config "$CONFIG"); fi  # e.g. the shipped recipe
declare -A VARIANTS=(
  [full]=""
  [volume_pro]="--set propagation=volume"
  [slice_pro]="--set propagation=slice"
  [no_memory]="--set use_memory=false"
  [no_affinity]="--set use_affinity=false"
  [no_fusion]="--set use_fusion=false"
)
ORDER=(full volume_pro slice_pro no_memory no_affinity no_fusion)
if [[ -n "${ONLY:-}" ]]; then
  read -r -a ORDER <<< "$ONLY"
  for name in "${ORDER[@]}"; do
    [[ -v "VARIANTS[$name]" ]] || { echo "ONLY: unknown variant '$name'" >&2; exit 2; }
  done
fi
methods=()
for name in "${ORDER[@]}"; do
  # shellcheck disable=SC2086
  $ICHSEG train "${EXTRA[@]}" --data "$DATA" --out "$RUNS/$name" --preset lite --fold 0 \
    --splits-file "$SPLITS" --init "$BASE" --steps "$STEPS" --lr "${LR:-3e-4}" --val-every "$STEPS" \
    --cache-dir "${CACHE:-$RUNS/cache}" --threads "$THREADS" --seed 0 --no-progress \
    ${VARIANTS[$name]}
  methods+=(--method "$name=hpinet:$RUNS/$name/last.pt")
done
$ICHSEG evaluate --data "$TEST" --out "$RUNS/eval" "${methods[@]}" \
  --method "random_walker" --rounds "${ROUNDS:-4}" --threads "$THREADS" --no-progress
