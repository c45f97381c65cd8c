#!/usr/bin/env bash
# The HemSeg-200 comparison table (issue #12): the automatic baselines, the interactive methods
# and "automatic + corrected" (an automatic mask as round 0, then the simulated clinician).
#
# Usage: benchmarks/hemseg_baselines.sh SYNTH_TEST CASE166_DIR RUNS [OUT]
#   SYNTH_TEST   the held-out synthetic set (`ichseg synth --cases 24 --seed 4242`)
#   CASE166_DIR  ../shared/data/real/case166 (read with --input-window 50.5,85; its pixels and
#                masks stay in $WORK, outside the repository; no image of it is written)
#   RUNS         folder with RUNS/hemseg/NAME/best.pt per MONAI baseline and the nnU-Net model
#                folder in $NNUNET (missing models are skipped with a note)
# WORK (default /work/runs/hemseg_baselines) holds the predicted masks; START (default unet) is
# the automatic model whose masks start the corrected sessions; THREADS (default 1); MAX_CASES
# (default: all) evaluates only the first N scans with hemorrhage of each set (CPU budget);
# REUSE=1 keeps masks and timings already in $WORK from an earlier run; W_NAME=checkpoint
# (e.g. W_unet=runs/hemseg/unet_dice_ce/best.pt) replaces RUNS/hemseg/NAME/best.pt.
set -euo pipefail
TEST=$1 CASE166=$2 RUNS=$3 OUT=${4:-benchmarks/results/hemseg_baselines}
WORK=${WORK:-/work/runs/hemseg_baselines} START=${START:-unet} THREADS=${THREADS:-1}
NNUNET=${NNUNET:-$RUNS/nnunet/model}
PY=${PY:-python}
LIMIT=()
if [ -n "${MAX_CASES:-}" ]; then LIMIT=(--max-cases "$MAX_CASES"); fi
REUSE_FLAG=()
if [ -n "${REUSE:-}" ]; then REUSE_FLAG=(--reuse); fi
ICHSEG=${ICHSEG:-ichseg}
MODELS=()
for m in unet vnet segresnet attention_unet unetr swin_unetr; do
  w="W_$m"  # W_unet=path etc. replaces that model's checkpoint
  MODELS+=(--model "$m=${!w:-$RUNS/hemseg/$m/best.pt}")
done
MODELS+=(--model "nnunet=$NNUNET")
INTER=(--interactive "synth=benchmarks/results/interactive_synthetic/results.csv"
       --interactive "case166=benchmarks/results/interactive_case166/results.csv")
# 1) predict every scan with every automatic model (masks + CPU seconds into $WORK)
$PY benchmarks/hemseg_baselines.py --synth "$TEST" --case166 "$CASE166" "${MODELS[@]}" \
  "${INTER[@]}" "${LIMIT[@]}" "${REUSE_FLAG[@]}" --threads "$THREADS" --work "$WORK" --out "$OUT"
# 2) automatic + corrected: $START's masks as round 0, 3 scribble rounds of correction
CORR=()
EVAL_LIMIT=()
if [ -n "${MAX_CASES:-}" ]; then  # the same scans as step 1: the first N with hemorrhage
  IDS=$($PY -c "import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x['dataset']=='synth' and x['has_hemorrhage']=='True']; print(','.join(dict.fromkeys(x['case_id'] for x in r)))" "$OUT/per_case.csv")
  EVAL_LIMIT=(--cases "$IDS")
fi
if [ -d "$WORK/pred/synth/$START" ]; then
  $ICHSEG evaluate --data "$TEST" --initial-masks "$WORK/pred/synth/$START" \
    --initial-label "$START" --method hpinet_refined --method random_walker --rounds 3 \
    "${EVAL_LIMIT[@]}" --threads "$THREADS" --no-progress --overwrite --out "$WORK/corrected_synth"
  CORR+=(--corrected "synth=$WORK/corrected_synth")
fi
if [ -d "$WORK/pred/case166/$START" ]; then
  $ICHSEG evaluate --data "$CASE166" --input-window 50.5,85 --keep-masks 0 \
    --initial-masks "$WORK/pred/case166/$START" --initial-label "$START" \
    --method hpinet_refined --method random_walker --rounds 3 \
    --threads "$THREADS" --no-progress --overwrite --out "$WORK/corrected_case166"
  CORR+=(--corrected "case166=$WORK/corrected_case166")
fi
# 3) the tables and the report (predictions reused from step 1)
$PY benchmarks/hemseg_baselines.py --synth "$TEST" --case166 "$CASE166" "${MODELS[@]}" \
  "${INTER[@]}" "${CORR[@]}" "${LIMIT[@]}" --reuse --threads "$THREADS" --work "$WORK" --out "$OUT"
