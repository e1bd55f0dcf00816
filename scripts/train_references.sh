#!/usr/bin/env bash
# Train the reference checkpoints that hdetr ships (hdetr.load_reference), with a snapshot of each every
# 250 steps for the NMS-gap-over-training curve (reports/analysis/), then package them:
#
#   bash scripts/train_references.sh [RUNS_DIR]        # default runs/references; ~50 min on 2 cores
#
# Each model trains in segments of 250 steps; a segment resumes the previous one exactly (the trainer's
# exact resume), so the result is the same as one uninterrupted run, and an interrupted script continues
# where it stopped. The two models train at the same time, one thread each.
set -euo pipefail
RUNS="${1:-runs/references}"
STEPS=(250 500 750 1000 1250 1500)

train_one() {  # preset, run name
  local preset="$1" out="$RUNS/$2"
  mkdir -p "$out/snapshots"
  for n in "${STEPS[@]}"; do
    if [ -f "$out/snapshots/step$n.pth" ]; then continue; fi
    local resume=()
    if [ -f "$out/checkpoint_last.pth" ]; then resume=(--resume); else resume=(--overwrite); fi
    hdetr train --preset "$preset" --set train.max_iters="$n" --output-dir "$out" "${resume[@]}" >> "$out/train.log" 2>&1
    cp "$out/checkpoint_last.pth" "$out/snapshots/step$n.pth"
  done
}

train_one synthetic_reference_baseline synthetic_baseline &
train_one synthetic_reference_hybrid_branch synthetic_hybrid_branch &
wait
train_one synthetic_reference_hybrid_epoch synthetic_hybrid_epoch &
train_one synthetic_reference_hybrid_layer synthetic_hybrid_layer &
wait
python -m hdetr.checkpoints.make_references "$RUNS"
