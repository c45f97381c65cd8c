#!/usr/bin/env bash
# Interactive evaluation of the shipped ICH-HPINet `lite` weights, three methods side by side
# (issue #10): `hpinet` = the network alone as the paper describes it (previous round fed back,
# no classical part), `hpinet_refined` = the same network plus the 2D random-walker refinement
# near each stroke (10 mm), `random_walker` = the training-free baseline. The held-out synthetic
# set and the real case166, 8 scribble rounds each, and the synthetic set under the CVPR 2025
# challenge protocol (box + 5 clicks).
#
# Usage: benchmarks/evaluate_shipped.sh SYNTH_TEST CASE166_DIR [OUT_ROOT]
#   SYNTH_TEST   `ichseg synth --out DIR --cases 24 --seed 4242` (seed never used for training)
#   CASE166_DIR  ../shared/data/real/case166 (already windowed to 0..255; its README documents
#                HU ~= value/3 + 8, i.e. the window 50.5,85); its pixels must never be
#                committed, so no overlay is kept for it.
# WEIGHTS=path overrides the shipped weights (e.g. a candidate checkpoint).
set -euo pipefail
TEST=$1 CASE166=$2 OUT=${3:-benchmarks/results}
ICHSEG=${ICHSEG:-ichseg}
THREADS=${THREADS:-2}
W=${WEIGHTS:+:$WEIGHTS}
METHODS=(--method "hpinet$W" --method "hpinet_refined$W" --method random_walker)
$ICHSEG evaluate --data "$TEST" "${METHODS[@]}" --rounds 8 \
  --threads "$THREADS" --no-progress --overwrite --out "$OUT/interactive_synthetic"
$ICHSEG evaluate --data "$CASE166" "${METHODS[@]}" --rounds 8 \
  --input-window 50.5,85 --keep-masks 0 --threads "$THREADS" --no-progress --overwrite \
  --out "$OUT/interactive_case166"
rm -f "$OUT/interactive_case166/overlay.png"
# the CVPR 2025 interactive 3D challenge protocol: 2D box + 5 clicks at the largest error
# (the first 10 test scans with hemorrhage, for the CPU budget)
$ICHSEG evaluate --data "$TEST" "${METHODS[@]}" --protocol cvpr25 \
  --cases 001,004,005,006,008,009,010,011,012,013 \
  --threads "$THREADS" --no-progress --overwrite --out "$OUT/interactive_cvpr25"
