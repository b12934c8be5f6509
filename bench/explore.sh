#!/usr/bin/env bash
# Throughput exploration on the GPU machine (see bench/NOTES.md). Run from the repo root:
#   bash bench/explore.sh install .whlN      # pip-install one carried wheel folder into /tmp/site
#   bash bench/explore.sh setup              # env report, random-init Llama-2-7B + tokenizer + data under /tmp/bench
#   bash bench/explore.sh run NAME...        # run bench/recipes/NAME.yml in order; JSON lines to $OUT/results.jsonl
# Assets (tokenizer dir + sqlqa.jsonl) travel in .whl1/assets (git-ignored, carried with the wheels).
# BENCH_DEADLINE (s since start, default 540) stops launching recipes that could not finish in time.
set -uo pipefail
OUT=${OUT:-/tmp/bench/outbox}
mkdir -p "$OUT" /tmp/bench
export PYTHONPATH=/tmp/site:$PWD PYTHONDONTWRITEBYTECODE=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false DS_BUILD_OPS=0
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
start=$SECONDS

case "${1:-}" in
install)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$2"/*.whl 2>&1 | grep -v "WARNING: Target directory" | tail -5
  echo "installed $2 in $((SECONDS - start)) s"
  if [ -d "$2/assets" ]; then cp -r "$2/assets/." /tmp/bench/; ls /tmp/bench; fi
  ;;
setup)
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv
  python3 - <<'PY'
import importlib, torch, transformers, peft, accelerate
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "peft", peft.__version__, "accelerate", accelerate.__version__)
for mod in ("flash_attn", "flash_attn_interface", "torch.nn.attention.varlen", "torch.nn.attention.flex_attention"):
    try:
        importlib.import_module(mod); print("import ok:", mod)
    except Exception as e:
        print("import FAILED:", mod, type(e).__name__, str(e)[:80])
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
print("attention backends:", sorted(ALL_ATTENTION_FUNCTIONS.keys()))
import triton.testing
a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
ms = triton.testing.do_bench(lambda: a @ b, warmup=200, rep=1000, return_mode="median")
print(f"dense bf16 8192^3 matmul: {2 * 8192**3 / ms / 1e9:.0f} TFLOP/s")
PY
  python3 bench/make_random_llama.py /tmp/bench/llama7b-random /tmp/bench/tokenizer
  ls -la /tmp/bench/llama7b-random | head -20
  ;;
run)
  shift
  first=1
  for name in "$@"; do
    used=$((SECONDS - start))
    if (( used > ${BENCH_DEADLINE:-540} )); then echo "SKIP $name (deadline, ${used}s used)"; continue; fi
    cap=$(( ${BENCH_DEADLINE:-540} + 50 - used ))
    echo "=== $name (t=${used}s, cap ${cap}s)"
    t0=$SECONDS
    BENCH_RECIPE=$name BENCH_OUT=$OUT/results.jsonl BENCH_WARMUP=$([[ $name == *compile* ]] && echo 10 || echo 6) \
      timeout -k 10 "$cap" python3 -m axolotl.cli.train "bench/recipes/$name.yml" >"/tmp/bench/$name.log" 2>&1
    rc=$?
    echo "rc=$rc in $((SECONDS - t0))s"
    grep -E "^BENCH " "/tmp/bench/$name.log" | cut -c1-600
    if ! grep -q "^BENCH " "/tmp/bench/$name.log"; then
      grep -iE "error|exception|Traceback|out of memory" "/tmp/bench/$name.log" | grep -v "^\s*$" | tail -8
      tail -5 "/tmp/bench/$name.log"
      if (( first )); then echo "first recipe failed: stopping"; break; fi
    fi
    first=0
  done
  mkdir -p "$OUT"; (cd /tmp/bench && tar czf "$OUT/logs-$(date +%s).tgz" ./*.log 2>/dev/null)
  ;;
*) echo "usage: $0 install DIR | setup | run NAME..."; exit 2 ;;
esac
