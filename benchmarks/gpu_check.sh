#!/usr/bin/env bash
# GPU checks, for a machine with a CUDA device (not part of CI, which has none):
#   1. tests/test_cuda.py — every accelerator path against its CPU result;
#   2. benchmarks/kkt_digits.py on cuda — KKT speed against the FLOP floor and the reference row;
#   3. benchmarks/kkt_victims.py on cuda — the 'long' victim (reference + LONG_EPOCHS more GD epochs).
# Works from a source checkout without installing (PYTHONPATH=src). Cached victims under runs/ are reused.
# Usage: OUT=runs/gpu-check LONG_EPOCHS=300000 bash benchmarks/gpu_check.sh
set -o pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NETINV_PROGRESS=0
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$LOG"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  2>&1 | tee -a "$LOG"
status=0
$PY -m pytest tests/test_cuda.py -q -rA -p no:cacheprovider 2>&1 | tee -a "$LOG" || status=1
$PY benchmarks/kkt_digits.py --device cuda --rows ref 2>&1 | tee -a "$LOG" || status=1
$PY benchmarks/kkt_victims.py --device cuda --rows long --seeds 0,1,2 --long-epochs "${LONG_EPOCHS:-300000}" \
  2>&1 | tee -a "$LOG" || status=1
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
exit $status
