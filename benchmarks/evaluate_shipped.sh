#!/usr/bin/env bash
# Interactive evaluation of the shipped ICH-HPINet `lite` weights, the methods side by side
# (issue #10): `hpinet` = the network alone (previous round fed back, no classical part; its
# output mixes the VIM into the slice propagation with the weight chosen on validation
# sessions), `hpinet_paper` = the same network with the paper's output (propagation only),
# `hpinet_refined` = the paper output plus the 2D random-walker refinement near each stroke
# (10 mm), `random_walker` = the training-free baseline. The held-out synthetic
# set and the real case166, 8 scribble rounds each, and the synthetic set under the CVPR 2025
# challenge protocol (box + 5 clicks).
#
# Usage: benchmarks/evaluate_shipped.sh SYNTH_TEST CASE166_DIR [OUT_ROOT]
#   SYNTH_TEST   `ichseg synth --out DIR --cases 24 --seed 4242` (seed never used for training)
#   CASE166_DIR  ../shared/data/real/case166 (already windowed to 0..255; its README documents
#                HU ~= value/3 + 8, i.e. the window 50.5,85); its pixels must never be
#                committed, so no overlay is kept for it.
# WEIGHTS=path overrides the shipped weights (e.g. a candidate checkpoint); PARTS (default
# "synthetic case166 cvpr25") runs a subset (e.g. on two cores at once).
set -euo pipefail
TEST=$1 CASE166=$2 OUT=${3:-benchmarks/results}
ICHSEG=${ICHSEG:-ichseg}
THREADS=${THREADS:-2}
W=${WEIGHTS:+:$WEIGHTS}
PARTS=${PARTS:-synthetic case166 cvpr25}
METHODS=(--method "hpinet$W" --method "hpinet_paper$W" --method "hpinet_refined$W"
         --method random_walker)
if [[ " $PARTS " == *" synthetic "* ]]; then
$ICHSEG evaluate --data "$TEST" "${METHODS[@]}" --rounds 8 \
  --threads "$THREADS" --no-progress --overwrite --out "$OUT/interactive_synthetic"
fi
if [[ " $PARTS " == *" case166 "* ]]; then
$ICHSEG evaluate --data "$CASE166" "${METHODS[@]}" --rounds 8 \
  --input-window 50.5,85 --keep-masks 0 --threads "$THREADS" --no-progress --overwrite \
  --out "$OUT/interactive_case166"
rm -f "$OUT/interactive_case166/overlay.png"
fi
if [[ " $PARTS " == *" cvpr25 "* ]]; then
# the CVPR 2025 interactive 3D challenge protocol: 2D box + 5 clicks at the largest error
# (the first 10 test scans with hemorrhage, for the CPU budget)
$ICHSEG evaluate --data "$TEST" "${METHODS[@]}" --protocol cvpr25 \
  --cases 001,004,005,006,008,009,010,011,012,013 \
  --threads "$THREADS" --no-progress --overwrite --out "$OUT/interactive_cvpr25"
fi
