#!/usr/bin/env bash
# Regenerate every cpu-scale report of reports/ (about an hour and a half on 2 cores, two runs at a time).
#
#   bash scripts/cpu_reports.sh          # run from the repository root; writes reports/
#
# The runs live in the folders the reports were made from; their results and logs are committed
# (runs/ablations_cpu, runs/lvis_cpu), so finished runs are read back, not trained again. Table 1's
# baseline and hybrid runs are the ablations' rows of the same configs (the supported regime of
# reports/science/cpu_regime.md).
set -euo pipefail
hdetr reproduce ablations --scale cpu --out reports -p RUNS_DIR=runs/ablations_cpu -p 'SWEEP_POINTS=["k1", "lambda0.5"]'
hdetr reproduce coco --scale cpu --out reports -p RUNS_DIR=runs/ablations_cpu
hdetr reproduce lvis --scale cpu --out reports -p RUNS_DIR=runs/lvis_cpu
hdetr demo
