#!/usr/bin/env bash
# The regime study's GPU variant: its most informative rows (hdetr.studies.regime.GPU_KEYS: the
# starved-positives regime, its equal-queries control, K = 3) at 10x the CPU study's steps, many runs at
# once on one GPU (separate processes), each stopped by a wall-time limit so that the whole script,
# set-up included, ends within 8 minutes. It writes the same run folders the CPU study reads, and the
# report beside them.
#
# Run from the repository root:   bash scripts/gpu_science.sh OUTPUT_DIR [--tiny]
#   OUTPUT_DIR/runs/       one folder per run (result.json, metrics.jsonl, run.log)
#   OUTPUT_DIR/report/     cpu_regime.md, its JSON and figures, from those runs
#   OUTPUT_DIR/summary.txt exit codes and seconds of each step
# --tiny: the smoke version the test suite runs on a CPU (one seed, a few steps, small sets).
# Uses the Python that runs it (PYTHON, default python3) with hdetr importable from this checkout.
set -uo pipefail

if [ "$#" -lt 1 ] || [ -z "$1" ]; then
  echo "usage: bash scripts/gpu_science.sh OUTPUT_DIR [--tiny]" >&2
  exit 2
fi
mkdir -p "$1"
OUTPUT_DIR="$(cd "$1" && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUTPUT_DIR/summary.txt"
: > "$SUMMARY"

if [ "${2:-}" = "--tiny" ]; then
  RUN_ARGS=(--only starved --seeds 0 --jobs 2 --tiny)
  RUN_LIMIT=300
else
  # 9 runs at once; each trains for at most 330 s and then evaluates (300 images), so the step ends
  # within about 6 minutes, leaving the report and the start-up inside 8.
  RUN_ARGS=(--only starved equal_queries starved_k3 --jobs 9 --steps-factor 10
            --set train.device=cuda train.num_threads=1 train.max_wall_seconds=330)
  RUN_LIMIT=420
fi

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"; shift 2
  local started=$SECONDS
  echo "=== $name: $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUTPUT_DIR/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUTPUT_DIR/$name.log"
  echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$SUMMARY"
  return "$rc"
}

step environment 60 "$PYTHON" -c "import torch, hdetr; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
step runs "$RUN_LIMIT" "$PYTHON" -m hdetr.studies.regime run "$OUTPUT_DIR/runs" "${RUN_ARGS[@]}"
runs_rc=$?
step report 90 "$PYTHON" -m hdetr.reports.regime "$OUTPUT_DIR/runs" "$OUTPUT_DIR/report"
report_rc=$?
[ "$runs_rc" -eq 0 ] && [ "$report_rc" -eq 0 ]
