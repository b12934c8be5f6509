#!/usr/bin/env bash
# Issue 14's measurements on one lent H200 in as few device calls as possible (bench/RESULTS.md §6, §11).
# From the repo root on the GPU machine, once the stack is carried (`stack_wheels.py install .stackN`,
# the last with --finish; the first call also copies the assets and makes the random 7B):
#   bash bench/h200_session.sh start [SECONDS]   # verify the stack, time imports, start the chain, wait
#   bash bench/h200_session.sh wait [SECONDS]    # wait again; every call copies what is done into $OUT
# `install --finish` writes bytecode as pip does at install; `start` times the train stage's imports
# (bench/RESULTS.md §11: the machine imports slowly either way).
# The chain runs from a snapshot of the repo (/tmp/bench/repo) in its own process session, so it goes on
# between device calls, one piece of GPU work at a time (the timings must not share the card):
#   1. bench/pipeline_bench.py: the shipped default cold (a fresh runs root), then the seed's recipe
#      through the same pipeline in the same root, then the default again there (`rerun=true`: its data
#      key and base figures are known, as for the second job of a sweep)
#   2. bench/gpu_bench.py: throughput rows default, qlora, full (20 optimizer steps each)
#   3. the default cold once more, in a second fresh runs root (is the first cold figure typical?)
# `ROWS="full full_mb4"` runs only those throughput rows instead. `AGREEMENT=1` adds
# bench/engine_agreement.py on the default's run (transformers and vLLM, the same
# weights and prompts; ≈ 250 s of device time, mostly vLLM's start).
set -uo pipefail
OUT=${OUT:-/tmp/bench/outbox}
RESULTS=/tmp/bench/results
mkdir -p "$OUT" "$RESULTS"
export PYTHONPATH=/tmp/site:/tmp/bench/repo PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled VLLM_NO_USAGE_STATS=1
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
# FlashInfer is not carried (bench/stack_wheels.py SKIP); greedy decoding never uses its sampler.
export VLLM_USE_FLASHINFER_SAMPLER=0
MODEL=/tmp/bench/llama7b-random
BASE="model=llama2 base_model=$MODEL gpu=h200"

throughput() {   # ROW...: bench/gpu_bench.py's rows, 20 optimizer steps each
  echo "=== throughput $(date +%T)"
  python3 bench/gpu_bench.py --model $MODEL --data /tmp/bench/sqlqa.jsonl --out $RESULTS/throughput.jsonl \
    --steps 20 "$@"
}

chain() {
  cd /tmp/bench/repo || exit 1
  if [ -n "${ROWS:-}" ]; then   # ROWS="full full_mb4": only these throughput rows
    throughput $ROWS
    echo "=== done $(date +%T)"
    return
  fi
  local root=/tmp/bench/pipe
  echo "=== pipeline $(date +%T)"
  python3 bench/pipeline_bench.py --out $RESULTS/pipeline.jsonl --runs-root $root \
    "default=$BASE" "seed=$BASE recipe=seed" "default_warm=$BASE rerun=true"
  throughput default qlora full
  echo "=== pipeline again $(date +%T)"
  python3 bench/pipeline_bench.py --out $RESULTS/pipeline.jsonl --runs-root /tmp/bench/pipe2 "default_cold2=$BASE"
  if [ "${AGREEMENT:-0}" = 1 ]; then
    echo "=== agreement $(date +%T)"
    local run
    run=$(ls -d $root/2* | head -1)   # run ids start with the time: the first is the default's
    python3 bench/engine_agreement.py "$run" --engines transformers,vllm --out $RESULTS/agreement.jsonl
  fi
  echo "=== done $(date +%T)"
}

collect() {
  local limit=$1 waited=0 pid
  pid=$(cat /tmp/bench/chain.pid)
  while kill -0 "$pid" 2>/dev/null && (( waited < limit )); do
    sleep 5; waited=$((waited + 5))
    (( waited % 30 )) || cp -r $RESULTS/. /tmp/bench/chain.log "$OUT/" 2>/dev/null   # if the call is cut short
  done
  grep -E "^=== |FAILED|Traceback|Error|^\{" /tmp/bench/chain.log | tail -30
  kill -0 "$pid" 2>/dev/null && { echo "still running after ${waited} s:"; tail -3 /tmp/bench/chain.log; }
  cp -r $RESULTS/. "$OUT/" 2>/dev/null
  cp /tmp/bench/chain.log "$OUT/"
  for root in /tmp/bench/pipe /tmp/bench/pipe2 /tmp/bench/runs; do
    [ -d $root ] && (cd $root && tar czf "$OUT/$(basename $root)-logs.tgz" --exclude='*/outputs' --exclude='_prepared' \
      --exclude='*/checkpoint-*' --exclude='_eval_cache' . 2>/dev/null)
  done
}

case "${1:-}" in
start)
  rm -rf /tmp/bench/repo && mkdir -p /tmp/bench/repo
  tar cf - --exclude='./.stack*' --exclude='./.lean*' --exclude='./.git' . | tar xf - -C /tmp/bench/repo
  (cd /tmp/bench/repo && python3 bench/stack_wheels.py verify --out "$OUT/stack.json" 2>&1 | tail -15)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
  timed() {   # LABEL COMMAND...: the command's wall time in seconds
    local t0; t0=$(date +%s%N); "${@:2}" >/dev/null 2>&1
    echo "$1: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  }
  { timed "train stage's imports" python3 -c "import axolotl.cli.train, peft"
    timed "eval stage's imports" python3 -c "import peft, transformers; from transformers import AutoModelForCausalLM"
  } | tee "$OUT/imports.txt"
  while pgrep -f make_random_llama >/dev/null; do sleep 2; done
  tail -2 /tmp/bench/make7b.log
  export -f chain throughput
  export RESULTS MODEL BASE AGREEMENT ROWS
  setsid nohup bash -c chain >/tmp/bench/chain.log 2>&1 </dev/null &
  echo $! >/tmp/bench/chain.pid
  collect "${2:-400}"
  ;;
wait)
  collect "${2:-540}"
  ;;
*) echo "usage: $0 start|wait [SECONDS]"; exit 2 ;;
esac
