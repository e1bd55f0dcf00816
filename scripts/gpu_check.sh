#!/usr/bin/env bash
# The project's GPU check: the multi-scale deformable attention CUDA op and the schemes' costs on a GPU.
#
# Run from the repository root:   bash scripts/gpu_check.sh OUTPUT_DIR
# Every result and log goes to OUTPUT_DIR (created if missing), the virtual environment too
# (OUTPUT_DIR/venv), so the checkout is left as it was. Budget: about 8 minutes.
#
# Steps (each logged to OUTPUT_DIR/<step>.log, exit codes and seconds in OUTPUT_DIR/summary.txt):
#   1. venv + install exactly as README says (pip install torch==2.14.1 torchvision==0.29.1,
#      then pip install -e ".[test]"); the venv sees system packages, so a machine with torch
#      preinstalled and no network still works (falls back to an offline editable install)
#   2. build the CUDA op (hdetr build-ops when that command exists, else the loader)
#   3. pytest -m cuda (every cuda-marked test of the suite)
#   4. benchmarks/msda_cuda.py -> OUTPUT_DIR/msda_cuda.json
#   5. benchmarks/scheme_costs.py at the paper's shapes (R50, Table 6 presets, batch 2 of 800 x 800),
#      fp32 and bf16: training s/iter and its ratio to the baseline, inference images/s, CUDA max
#      allocated memory, parameters -> OUTPUT_DIR/scheme_costs_cuda.json (the GPU cost columns)
#   6. the nvcc compile test and the CPU emulation of the kernels (tests/ops/test_cuda_compile.py)
#
# Read-only towards the GPU: it queries nvidia-smi and never resets the device or changes
# its settings (no -r, -pm, -lgc, MIG ...).
set -uo pipefail

if [ "$#" -lt 1 ] || [ -z "$1" ]; then
  echo "usage: bash scripts/gpu_check.sh OUTPUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUTPUT_DIR="$(cd "$1" && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${HDETR_GPU_VENV:-$OUTPUT_DIR/venv}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-20}"
export PIP_RETRIES="${PIP_RETRIES:-1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
SUMMARY="$OUTPUT_DIR/summary.txt"
: > "$SUMMARY"
status=0

# run_step NAME SECONDS 'COMMAND': runs the command line (exported functions allowed) in bash
# under a time limit, logs it, and records its exit code.
run_step() {
  local name="$1" limit="$2" command="$3"
  local started=$SECONDS
  echo "=== $name: $command" | tee -a "$OUTPUT_DIR/gpu_check.log"
  timeout --kill-after=10 "$limit" bash -c "$command" > "$OUTPUT_DIR/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUTPUT_DIR/$name.log" | tee -a "$OUTPUT_DIR/gpu_check.log"
  echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$SUMMARY" "$OUTPUT_DIR/gpu_check.log"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

install_package() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV" || return 1
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  if pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ".[test]"; then
    return 0
  fi
  echo "README install failed (offline?); falling back to an editable install over the system packages"
  pip install --no-deps --no-build-isolation -e .
}

{
  date -u
  nvidia-smi || echo "nvidia-smi not available"
} > "$OUTPUT_DIR/nvidia-smi.txt" 2>&1

export OUTPUT_DIR PYTHON VENV
export -f install_package
run_step install 240 install_package
# shellcheck disable=SC1091
[ -x "$VENV/bin/python" ] && . "$VENV/bin/activate"

python - > "$OUTPUT_DIR/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
EOF
cat "$OUTPUT_DIR/env.txt"

build_ops() {
  if hdetr --help 2>/dev/null | grep -q "build-ops"; then
    hdetr build-ops || return 1
  fi
  # Whatever build-ops did, confirm the CUDA module itself loads (and say why not).
  python -c "
import sys
from hdetr.ops import cuda_backend
module = cuda_backend.load_cuda_extension()
print('cuda op:', module if module is not None else 'UNAVAILABLE: ' + cuda_backend.cuda_unavailable_reason())
sys.exit(0 if module is not None else 1)
"
}

export -f build_ops
run_step build_ops 300 build_ops
run_step pytest_cuda 240 'python -m pytest -m cuda tests -q -rs --junitxml="$OUTPUT_DIR/pytest_cuda.xml"'
run_step benchmark 180 'python benchmarks/msda_cuda.py --out "$OUTPUT_DIR"'
run_step scheme_costs 150 'python benchmarks/scheme_costs.py --scale paper --device cuda --dtype both --iterations 3 --output "$OUTPUT_DIR/scheme_costs_cuda.json"'
run_step compile_test 240 'python -m pytest tests/ops/test_cuda_compile.py -q -rs --junitxml="$OUTPUT_DIR/pytest_compile.xml"'

echo "overall status=$status" | tee -a "$SUMMARY"
exit "$status"
