#!/usr/bin/env bash
# GPU checks, for a machine with a CUDA device (not part of CI, which has none):
#   1. tests/test_cuda.py — every accelerator path against its CPU result;
#   2. benchmarks/kkt_digits.py on cuda — KKT speed against the FLOP floor and the reference row;
#   3. benchmarks/kkt_victims.py on cuda — the 'long' victim (reference + LONG_EPOCHS more GD epochs), unless LONG_EPOCHS=0;
#   4. the whole fast suite under that machine's torch and Python (pytest -n 12 when pytest-xdist is there).
# Works from a source checkout without installing (PYTHONPATH=src). Cached victims under runs/ are reused.
# Packages the machine lacks (optuna, python-sat, pyapproxmc, pyunigen and their needs) can come as wheels in WHEELS.
# Usage: OUT=runs/gpu-check LONG_EPOCHS=300000 WHEELS=.whl bash benchmarks/gpu_check.sh
set -o pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NETINV_PROGRESS=0
PY=${PYTHON:-python3}
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || exit 3
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$LOG"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  2>&1 | tee -a "$LOG"
status=0
$PY -m pytest tests/test_cuda.py -q -rA -p no:cacheprovider 2>&1 | tee -a "$LOG" || status=1
$PY benchmarks/kkt_digits.py --device cuda --rows ref 2>&1 | tee -a "$LOG" || status=1
if [ "${LONG_EPOCHS:-300000}" != 0 ]; then
  $PY benchmarks/kkt_victims.py --device cuda --rows long --seeds 0,1,2 --long-epochs "${LONG_EPOCHS:-300000}" \
    2>&1 | tee -a "$LOG" || status=1
fi
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 12")
$PY -m pytest -q -p no:cacheprovider $XDIST --ignore tests/test_cuda.py -rfE 2>&1 | tee -a "$LOG" || status=1
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
exit $status
