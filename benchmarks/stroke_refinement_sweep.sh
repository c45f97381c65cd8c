#!/usr/bin/env bash
# Choose SessionConfig.stroke_radius_mm on synthetic VALIDATION scans (never the test set):
# 8 scribble rounds per scan, ICH-HPINet with several radii, weights and the random walker.
#
# Usage: benchmarks/stroke_refinement_sweep.sh VAL_DIR OLD_WEIGHTS [OUT_ROOT]
#   VAL_DIR      `ichseg synth --out DIR --cases 24 --seed 777` (seed used for nothing else)
#   OLD_WEIGHTS  the previously shipped weights (stage 2, step 2850), for the before/after rows
# Each run goes to OUT_ROOT/<label>/ (default /tmp/stroke_sweep); the summary table is written
# to benchmarks/results/stroke_refinement_sweep.md by benchmarks/summarize_rounds.py.
set -euo pipefail
VAL=$1 OLD=$2 OUT=${3:-/tmp/stroke_sweep}
ICHSEG=${ICHSEG:-ichseg}
THREADS=${THREADS:-1}
run() {  # label spec
  $ICHSEG evaluate --data "$VAL" --method "$2" --rounds 8 --threads "$THREADS" --no-progress \
    --keep-masks 0 --out "$OUT/$1"
}
run "step2850_off" "hpinet:$OLD,stroke_radius_mm=0"
run "step2850_3mm_prevsim" "hpinet:$OLD,stroke_radius_mm=3,feed_previous_sim=true"
run "step2850_6mm_prevsim" "hpinet:$OLD,stroke_radius_mm=6,feed_previous_sim=true"
run "step2850_6mm" "hpinet:$OLD,stroke_radius_mm=6"
run "step2850_10mm" "hpinet:$OLD,stroke_radius_mm=10"
run "step3450_6mm" "hpinet:stroke_radius_mm=6"
run "step3450_10mm" "hpinet:stroke_radius_mm=10"
run "step3450_15mm" "hpinet:stroke_radius_mm=15"
run "random_walker" "random_walker"
python benchmarks/summarize_rounds.py "$OUT"/*/ --out benchmarks/results/stroke_refinement_sweep.md \
  --title "Stroke refinement radius, chosen on validation scans ($VAL)"
