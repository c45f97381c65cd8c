#!/usr/bin/env bash
# Interactive evaluation of the shipped ICH-HPINet `lite` weights next to the random walker
# (issue #4 item 7): the held-out synthetic set and the real case166, 8 scribble rounds each.
#
# Usage: benchmarks/evaluate_shipped.sh SYNTH_TEST CASE166_DIR [OUT_ROOT]
#   SYNTH_TEST   `ichseg synth --out DIR --cases 24 --seed 4242` (seed never used for training)
#   CASE166_DIR  ../shared/data/real/case166 (already windowed to 0..255: HU ~= value/3 + 8,
#                hence --input-window 50.5,85); its pixels must never be committed, so no
#                overlay is kept for it.
set -euo pipefail
TEST=$1 CASE166=$2 OUT=${3:-benchmarks/results}
ICHSEG=${ICHSEG:-ichseg}
THREADS=${THREADS:-2}
$ICHSEG evaluate --data "$TEST" --method hpinet --method random_walker --rounds 8 \
  --threads "$THREADS" --no-progress --out "$OUT/interactive_synthetic"
$ICHSEG evaluate --data "$CASE166" --method hpinet --method random_walker --rounds 8 \
  --input-window 50.5,85 --keep-masks 0 --threads "$THREADS" --no-progress \
  --out "$OUT/interactive_case166"
rm -f "$OUT/interactive_case166/overlay.png"
