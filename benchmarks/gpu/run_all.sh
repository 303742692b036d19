#!/usr/bin/env bash
# Every GPU check and measurement of edgeprune, in ONE device call of at most 9 minutes (a lent
# H100/H200 gives a session about 15 minutes in all, machine start included):
#
#   bash benchmarks/gpu/run_all.sh        # then copy $OUT/summary.txt's figures into benchmarks/RESULTS.md
#   bash benchmarks/gpu/run_all.sh --dry-run   # on a CPU first: every stage, tiny (about 10 minutes)
#
# Stages, in order of what matters most; each is time-boxed (`timeout`), writes its log and figures
# to $OUT as it goes, and a failure or timeout does not stop the next one:
#   build      edgeprune._C in place with its CUDA kernels for this card's architecture     140 s
#   ops_tests  tests/ops compiled (Triton on CUDA tensors, CUDA C++), then the layer-sized
#              float64 checks (kernels_check.py's tests and large stages)                  90 s
#   kernels    kernel bandwidth at GPT-2 small's and CodeLlama-13B's last layer (quick)    45 s
#   step       gpt2-small-b32: (a) edgeprune, (a'') compiled with CUDA graphs (what
#              compile="on" does on a GPU; its compile time and repayment step), (b) plain
#              HF, (c) the naive reference                                                110 s
#   ioi_run    a 1,500-step IOI-shaped run at real lengths with TrainConfig's defaults
#              (validation, checkpoints, logging; compile="auto", so compiled and graph-
#              captured), end to end: x 2 against the goal of under 60 s for 3,000 steps   110 s
#   scale      the CodeLlama-13B shape (1 x 512, bf16) against the planner                 60 s
# The caps add up to 555 s; machine start and the copy back come on top.
#
# --dry-run, on a CPU (no GPU needed): every stage runs the same command with the same arguments,
# and after them the few that make it fit a CPU (tiny shapes, a step or two; kernels_check's
# --dry-run), with Triton interpreted and each cap x6; the GPU shapes it replaces are checked to
# exist. The build compiles the CUDA kernels where nvcc and a CUDA build of torch exist; what only
# a GPU runs (CUDA graphs: step's a'', the IOI run's compiled steps) is left out on a CPU. It
# checks imports, arguments and code paths, not figures.
# .ci/run runs it on the GPU machines' stack. Both modes exit 1 when a stage fails or times out.
set -uo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  "") DRY_RUN=0 ;;
  --dry-run) DRY_RUN=1 ;;
  *) echo "usage: bash benchmarks/gpu/run_all.sh [--dry-run]" >&2; exit 2 ;;
esac
if [ $DRY_RUN = 1 ]; then
  OUT=${OUT:-$(mktemp -d)}
  export TRITON_INTERPRET=1
  CAP=6
  CHECK_DRY=(--dry-run)
  STEP_DRY=(--shapes cpu-small-b4 --warmup 1 --iters 1 --no-cpu-memory)
  IOI_DRY=(--cpu-small --ioi-steps 2 --ioi-examples 16 --iters 1)
  SCALE_DRY=(--tiny)
else
  OUT=${OUT:-benchmarks/gpu/out}
  export TRITON_INTERPRET=0
  CAP=1
  CHECK_DRY=() STEP_DRY=() IOI_DRY=() SCALE_DRY=()
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/python:$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS
FAILED=0
stage() {  # stage NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, report PASS/FAIL with the time
  local name=$1 limit=$(($2 * CAP)); shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local verdict="PASS"
  [ $rc -eq 124 ] && verdict="TIMEOUT after $limit s" || { [ $rc -ne 0 ] && verdict="FAIL rc=$rc"; }
  [ "$verdict" = PASS ] || FAILED=1
  echo "[$verdict] $name ($((SECONDS - t0)) s; $((SECONDS - START)) s in all)" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

[ $DRY_RUN = 1 ] && echo "dry run on the CPU: outputs in $OUT" | tee "$OUT/summary.txt"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no GPU") | tee "$OUT/gpu.txt"
stage build 140 python benchmarks/gpu/kernels_check.py --stages build --out "$OUT/kernels" "${CHECK_DRY[@]}"
stage ops_tests 90 python benchmarks/gpu/kernels_check.py --stages tests,large --out "$OUT/kernels" "${CHECK_DRY[@]}"
stage kernels 45 python benchmarks/bench_kernels.py --quick --markdown --json "$OUT/kernels.json"
STEP_SHAPES=gpt2-small-b32
if [ $DRY_RUN = 1 ]; then  # the dry run replaces the shape: check that the GPU run's exists
  stage step_shapes 10 python -c "import sys; sys.path.insert(0, 'benchmarks'); import step; \
[step.ALL_SHAPES[name] for name in '$STEP_SHAPES'.split(',')]"
fi
stage step 110 python benchmarks/step.py --shapes $STEP_SHAPES --variants "a,a'',b,c" --jsonl "$OUT/step.jsonl" \
  "${STEP_DRY[@]}"
stage ioi_run 110 python benchmarks/step.py --ioi-only --ioi-pads real --ioi-steps 1500 --ioi-compile auto \
  --jsonl "$OUT/step.jsonl" "${IOI_DRY[@]}"
stage scale 60 python benchmarks/gpu/scale.py --shapes llama13b --jsonl "$OUT/scale.jsonl" --results "$OUT/scale.md" \
  "${SCALE_DRY[@]}"
for log in kernels step ioi_run; do  # the tables, for RESULTS.md
  { echo; echo "== $log"; grep -E '^\|' "$OUT/$log.log"; } >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
exit $FAILED
