#!/usr/bin/env bash
# GPU check of the multi-scale deformable attention CUDA op, for a lent GPU machine.
#
# Run from the repository root:   OUT=/some/empty/dir bash scripts/gpu_check.sh
# (the device tool sets $OUT; results are copied there). Budget: ~8 minutes.
#
# Steps (each logged to $OUT/<step>.log, exit codes in $OUT/summary.txt):
#   1. venv + install exactly as README says (pip install torch==2.14.1 torchvision==0.29.1,
#      then pip install -e ".[test]"); the venv sees system packages, so a machine with torch
#      preinstalled and no network still works (falls back to an offline editable install)
#   2. build the CUDA op (hdetr build-ops when that command exists, else the loader)
#   3. pytest -m cuda (every cuda-marked test of the suite)
#   4. benchmarks/msda_cuda.py -> $OUT/msda_cuda.json
#   5. the nvcc compile test and the CPU emulation of the kernels (tests/test_ops_cuda_compile.py)
#
# Read-only towards the GPU: it queries nvidia-smi and never resets the device or changes
# its settings (no -r, -pm, -lgc, MIG ...).
set -uo pipefail

OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
VENV="${HDETR_GPU_VENV:-.venv-gpu}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-20}"
export PIP_RETRIES="${PIP_RETRIES:-1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status=0

# run_step NAME SECONDS 'COMMAND': runs the command line (exported functions allowed) in bash
# under a time limit, logs it, and records its exit code.
run_step() {
  local name="$1" limit="$2" command="$3"
  local started=$SECONDS
  echo "=== $name: $command" | tee -a "$OUT/gpu_check.log"
  timeout --kill-after=10 "$limit" bash -c "$command" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log" | tee -a "$OUT/gpu_check.log"
  echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$SUMMARY" "$OUT/gpu_check.log"
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
} > "$OUT/nvidia-smi.txt" 2>&1

export OUT PYTHON VENV
export -f install_package
run_step install 240 install_package
# shellcheck disable=SC1091
[ -x "$VENV/bin/python" ] && . "$VENV/bin/activate"

python - > "$OUT/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability())
EOF
cat "$OUT/env.txt"

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
run_step pytest_cuda 240 'python -m pytest -m cuda tests -q -rs --junitxml="$OUT/pytest_cuda.xml"'
run_step benchmark 180 'python benchmarks/msda_cuda.py --out "$OUT"'
run_step compile_test 300 'python -m pytest tests/test_ops_cuda_compile.py -q -rs --junitxml="$OUT/pytest_compile.xml"'

echo "overall status=$status" | tee -a "$SUMMARY"
exit "$status"
