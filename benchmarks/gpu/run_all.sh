#!/usr/bin/env bash
# Every GPU check and measurement of edgeprune, for one lent H100/H200, in two device calls of at
# most 10 minutes each (the session has about 15 minutes of device time in all):
#
#   call 1:  bash benchmarks/gpu/run_all.sh kernels     build (CUDA C++ included), compiled-kernel
#                                                       tests, large-shape checks, kernel bandwidth
#   call 2:  bash benchmarks/gpu/run_all.sh training    training step (a)/(b)/(c), the 3,000-step
#                                                       IOI-shaped runs, 13B and GPT-2 XL scale
#
# Logs, tables and JSON go to $OUT (the device tool brings them back); copy the tables, with the
# card, into benchmarks/RESULTS.md. Each stage has its own time limit, so a slow one cannot eat the
# next one's budget, and a failure does not stop the later stages.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/gpu/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 PYTHONPATH="$PWD/python:$PWD${PYTHONPATH:+:$PYTHONPATH}"
stage() {  # stage NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, report PASS/FAIL with the time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "[$([ $rc -eq 0 ] && echo PASS || echo "FAIL rc=$rc")] $name ($((SECONDS - t0)) s)" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no GPU") | tee "$OUT/gpu.txt"
case "${1:-kernels}" in
  kernels)
    stage kernels_check 480 python benchmarks/gpu/kernels_check.py --out "$OUT"
    ;;
  training)
    stage build 120 python setup.py build_ext --inplace
    stage step 200 python benchmarks/step.py --shapes gpt2-small-b32,gpt2-small-b128,gpt2-medium-b32,host-gpt2-small \
      --jsonl "$OUT/step.jsonl"
    stage ioi_run 150 python benchmarks/step.py --ioi-only --jsonl "$OUT/step.jsonl"
    stage scale 200 python benchmarks/gpu/scale.py
    cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
    ;;
  *)
    echo "usage: run_all.sh kernels|training" >&2; exit 2 ;;
esac
cat "$OUT/summary.txt"
