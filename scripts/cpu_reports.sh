#!/usr/bin/env bash
# Regenerate every cpu-scale report of reports/ (about an hour and a half on 2 cores, two runs at a time).
#
#   bash scripts/cpu_reports.sh          # run from the repository root; writes reports/
#
# The Table 1 runs and the ablations' baseline and hybrid-branch rows are the regime study's runs of the
# supported regime (reports/science/cpu_regime.md): with their folder as RUNS_DIR, finished runs are kept,
# so run the study first (python -m hdetr.studies.regime run runs/regime) or let these train them.
set -euo pipefail
REGIME_RUNS="runs/regime/$(python -c 'from hdetr.studies.regime import REGIME; print(REGIME)')"
hdetr reproduce coco --scale cpu --out reports -p RUNS_DIR="$REGIME_RUNS"
hdetr reproduce ablations --scale cpu --out reports -p RUNS_DIR="$REGIME_RUNS" -p SWEEP_POINTS=[]
hdetr reproduce lvis --scale cpu --out reports -p RUNS_DIR=runs/cpu/lvis
hdetr demo
