#!/usr/bin/env bash
# The Modal app's stage functions in-process on the lent GPU machine, on the lock's packages
# (bench/RESULTS.md §8 has the whole procedure). From the repo root on that machine:
#   python3 bench/stack_wheels.py install .stackN    # one call per folder (the first also makes the 7B);
#                                                    # the last with --finish
#   bash bench/modal_local.sh start [SECONDS]        # verify the stack, vLLM's CLI, start the job, wait
#   bash bench/modal_local.sh wait [SECONDS]         # wait for the job; results, logs into $OUT
# The job runs from a snapshot of the repo (/tmp/bench/repo) in its own process session, so it goes on
# between device calls and later calls that copy the working tree again do not change its code.
set -uo pipefail
OUT=${OUT:-/tmp/bench/outbox}
mkdir -p "$OUT" /tmp/bench
export PYTHONPATH=/tmp/site:/tmp/bench/repo PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled VLLM_NO_USAGE_STATS=1
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# FlashInfer is not carried (bench/stack_wheels.py SKIP): vLLM 0.23 would import it only to decide on its
# top-p/top-k sampler, which greedy decoding never uses.
export VLLM_USE_FLASHINFER_SAMPLER=0
JOB=${JOB:-model=llama2 gpu=h200 eval.engine=vllm}

wait_for_job() {
  local limit=$1 waited=0 pid
  pid=$(cat /tmp/bench/job.pid)
  while kill -0 "$pid" 2>/dev/null && (( waited < limit )); do sleep 5; waited=$((waited + 5)); done
  grep -E "^=== |FAILED|Traceback|^eval engine" /tmp/bench/modal-local.log | tail -20
  if kill -0 "$pid" 2>/dev/null; then
    echo "still running after ${waited} s:"; tail -3 /tmp/bench/modal-local.log
  else
    tail -25 /tmp/bench/modal-local.log
    cp /tmp/bench/modal-local.json /tmp/bench/modal-local.log "$OUT/" 2>/dev/null
    (cd /tmp/bench/modal/runs && tar czf "$OUT/run-logs.tgz" --exclude='*/outputs' --exclude='_prepared' .)
  fi
}

case "${1:-}" in
start)
  # the repo as committed (carried as .snap: `git archive HEAD`), else this working tree
  rm -rf /tmp/bench/repo && mkdir -p /tmp/bench/repo
  if [ -d .snap ]; then cp -r .snap/. /tmp/bench/repo/
  else tar cf - --exclude='./.stack*' --exclude='./.git' . | tar xf - -C /tmp/bench/repo; fi
  cd /tmp/bench/repo || exit 1
  python3 bench/stack_wheels.py verify --out "$OUT/stack.json" 2>&1 | tail -40
  python3 -m vllm.entrypoints.cli.main serve --help=all >"$OUT/vllm-serve-help.txt" 2>&1
  echo "vllm serve --help=all: exit $?, $(wc -l <"$OUT/vllm-serve-help.txt") lines"
  while pgrep -f make_random_llama >/dev/null; do sleep 2; done
  tail -2 /tmp/bench/make7b.log
  # shellcheck disable=SC2086
  setsid nohup python3 bench/modal_local.py --base-model /tmp/bench/llama7b-random \
    --out /tmp/bench/modal-local.json $JOB >/tmp/bench/modal-local.log 2>&1 </dev/null &
  echo $! >/tmp/bench/job.pid
  echo "job started: $JOB"
  wait_for_job "${2:-420}"
  ;;
wait)
  wait_for_job "${2:-540}"
  ;;
*) echo "usage: $0 start|wait [SECONDS]"; exit 2 ;;
esac
