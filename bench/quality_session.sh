#!/usr/bin/env bash
# Issue 31's measurements (time to quality) on one lent GPU, in as few device calls as possible
# (bench/RESULTS.md §6 carries the stack; §13 has the results). From the repo root on the GPU machine:
#   bash bench/quality_session.sh carry .leanN     # copy a carried folder's assets/ into /tmp/q
#   bash bench/quality_session.sh probe            # join the GGUF parts, convert (runner.models.gguf), then
#                                                  #   bench/recipe_probe.py in the background ($PROBE: settings)
#   bash bench/quality_session.sh bench TAG ENTRY...   # bench/quality_bench.py in the background, from a
#                                                  #   snapshot of the repo (later calls re-send the tree), or
#                                                  #   of the tree in $SRC (e.g. a `git archive` of a commit)
#   bash bench/quality_session.sh profile          # convert the model if needed, one default run, then its
#                                                  #   train stage again under bench/profile_train.py,
#                                                  #   then the quality_bench entries in $EXTRA
#   bash bench/quality_session.sh startup NAME=TREE...  # after bench: each entry's train stage again (TREE: the
#                                                  #   code it ran, e.g. $Q/repo-TAG or $Q/before) under
#                                                  #   bench/startup_sample.py, to its first step (in the background);
#                                                  #   RUNNER_IMPORT_BUNDLE=DIR: with the stages' bytecode file
#                                                  #   (runner.stages.import_bundle; the first sample records it)
#   bash bench/quality_session.sh shm             # copy the installed packages (the machine's and /tmp/site, bytecode
#                                                  #   and times kept) to /dev/shm: `SITE=/dev/shm/site:/dev/shm/sys
#                                                  #   bash … startup …` then samples the same start-up from RAM
#   bash bench/quality_session.sh zero3           # issue 25 goal 5: the tiny model's `deepspeed=zero3_offload` job on
#                                                  #   this GPU with the lock's NVIDIA wheels (carried in $Q/cuda) as the
#                                                  #   only CUDA toolkit, so DeepSpeedCPUAdam is built as in the image
#   bash bench/quality_session.sh wait [SECONDS]   # until the background work ends (or SECONDS pass);
#                                                  #   copies every result so far into $OUT
# Background work goes on between calls while the machine stays warm (a call at least every 30 s).
set -uo pipefail
Q=/tmp/q
OUT=${OUT:-$Q/outbox}
mkdir -p "$Q/results" "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false RUNNER_CACHE=$Q/cache
MODEL=$Q/smollm2

collect() {
  cp $Q/results/*.* "$OUT"/ 2>/dev/null
  [ -d $Q/results/profile ] && cp -r $Q/results/profile "$OUT"/
  [ -d $Q/results/predictions ] && tar czf "$OUT"/predictions.tgz -C $Q/results predictions
  tar czf "$OUT"/logs.tgz -C $Q $(cd $Q && ls -d results-logs-* *.log 2>/dev/null) 2>/dev/null
  for f in $Q/results/*.jsonl; do [ -f "$f" ] && echo "== $f" && cut -c1-400 "$f"; done
  tail -n 5 $Q/*.log 2>/dev/null
}

case "${1:-}" in
  carry)
    cp -r "$2"/assets/. $Q/ && ls -la $Q ;;
  probe)
    cat $Q/smol.gguf.a $Q/smol.gguf.b > $Q/SmolLM2-135M-Instruct.Q4_1.gguf || exit 1
    python3 -m pip install -q --no-index --no-deps --target $Q/probe-site $Q/wheels/*.whl || exit 1
    PYTHONPATH=$Q/probe-site:$PWD python3 -m runner.models.gguf $Q/SmolLM2-135M-Instruct.Q4_1.gguf $MODEL \
      --eos '<|im_end|>' --pad '<|endoftext|>' 2>&1 | tail -n 2 || exit 1
    rm -rf $Q/repo && mkdir -p $Q/repo && cp -r bench runner conf experiments $Q/repo/
    (cd $Q/repo && PYTHONPATH=$Q/probe-site:$Q/repo setsid nohup python3 bench/recipe_probe.py --model $MODEL \
      --data $Q/qdata --out $Q/results/probe.jsonl --deadline ${DEADLINE:-420} $PROBE) > $Q/probe.log 2>&1 < /dev/null &
    sleep 2; tail -n 3 $Q/probe.log ;;
  profile)
    setsid nohup bash "$0" profile-fg > $Q/profile.log 2>&1 < /dev/null &
    sleep 2; tail -n 3 $Q/profile.log ;;
  profile-fg)
    [ -d $MODEL ] || { cat $Q/smol.gguf.a $Q/smol.gguf.b > $Q/SmolLM2-135M-Instruct.Q4_1.gguf &&
      PYTHONPATH=/tmp/site:$PWD python3 -m runner.models.gguf $Q/SmolLM2-135M-Instruct.Q4_1.gguf $MODEL \
        --eos '<|im_end|>' --pad '<|endoftext|>' 2>&1 | tail -n 2; } || exit 1
    rm -rf $Q/repo-profile && mkdir -p $Q/repo-profile && cp -r bench runner conf experiments pyproject.toml $Q/repo-profile/
    cd $Q/repo-profile && export PYTHONPATH=/tmp/site:$Q/repo-profile
    python3 bench/quality_bench.py --model $MODEL --data $Q/qdata --out $Q/results/quality.jsonl \
      --logs $Q/results-logs-profile "now_default=runner:" || exit 1
    run=$(ls -d /tmp/runs-now_default-*/2* | tail -n 1) && mkdir -p $Q/results-logs-profile/run &&
      cp -r $run/logs $run/metrics.json $run/status.json $run/config.yml $Q/results-logs-profile/run/
    python3 bench/profile_train.py $run $Q/results/profile --steps ${STEPS:-60}
    rm -rf $Q/results/profile/train.prof $Q/results/profile/outputs
    [ -z "${EXTRA:-}" ] || python3 bench/quality_bench.py --model $MODEL --data $Q/qdata --out $Q/results/quality.jsonl \
      --logs $Q/results-logs-profile $EXTRA ;;
  bench)
    tag=$2; shift 2
    [ -d $MODEL ] || { cat $Q/smol.gguf.a $Q/smol.gguf.b > $Q/SmolLM2-135M-Instruct.Q4_1.gguf &&
      PYTHONPATH=/tmp/site:$PWD python3 -m runner.models.gguf $Q/SmolLM2-135M-Instruct.Q4_1.gguf $MODEL \
        --eos '<|im_end|>' --pad '<|endoftext|>' 2>&1 | tail -n 2; } || exit 1
    rm -rf $Q/repo-$tag && mkdir -p $Q/repo-$tag && (cd "${SRC:-.}" && cp -r bench runner conf experiments pyproject.toml $Q/repo-$tag/)
    (cd $Q/repo-$tag && PYTHONPATH=/tmp/site:$Q/repo-$tag setsid nohup python3 bench/quality_bench.py --model $MODEL \
      --data $Q/qdata --before $Q/before --out $Q/results/quality.jsonl --logs $Q/results-logs-$tag \
      --plot $Q/results/quality.png "$@") > $Q/bench-$tag.log 2>&1 < /dev/null &
    sleep 2; tail -n 3 $Q/bench-$tag.log ;;
  startup)
    shift
    setsid nohup bash "$0" startup-fg "$@" > $Q/startup.log 2>&1 < /dev/null &
    sleep 2; tail -n 3 $Q/startup.log ;;
  startup-fg)
    shift
    sampler=$(dirname "$(readlink -f "$0")")/startup_sample.py
    for pair in "$@"; do
      name=${pair%%=*} tree=${pair#*=}
      run=$(ls -d /tmp/runs-$name-*/2* | tail -n 1) || continue
      python3 - "$run" $Q/startup-$name <<'PY'
import sys, yaml, pathlib
run, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
config = yaml.safe_load((run / "config.yml").read_text())
config["output_dir"] = str(out / "outputs")
(out / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
PY
      # the stage's own command as the run's train.log names it, with the copied config
      cmd=$(head -n 1 $run/logs/train.log | sed 's/^\$ //' | awk '{for (i=2; i<NF; i++) printf "%s ", $i}')
      module=$(echo "$cmd" | sed 's/^-m //')
      echo "== $name ($tree): $module"
      (cd $run && PYTHONPATH=${SITE:-/tmp/site}:$tree python3 $sampler $Q/results/startup-$name${SUFFIX:-}.txt --exit ${PREFETCH:+--prefetch $PREFETCH} \
        -m $module $Q/startup-$name/config.yml > $Q/startup-$name/train.log 2>&1)
      head -n 3 $Q/results/startup-$name${SUFFIX:-}.txt
    done ;;
  shm)
    sys_site=$(python3 -c "import torch, os; print(os.path.dirname(torch.__path__[0]))")
    start=$(date +%s%N)
    mkdir -p /dev/shm/sys && cp -a $sys_site/. /dev/shm/sys/ && cp -a /tmp/site /dev/shm/site || exit 1
    echo "copied $sys_site and /tmp/site to /dev/shm in $(( ($(date +%s%N) - start) / 1000000 )) ms"; df -h /dev/shm /tmp | tail -n 2 ;;
  zero3)
    setsid nohup bash "$0" zero3-fg > $Q/zero3.log 2>&1 < /dev/null &
    sleep 2; tail -n 3 $Q/zero3.log ;;
  zero3-fg)
    echo "system toolkit: nvcc=$(command -v nvcc || echo none) CUDA_HOME=${CUDA_HOME:-unset}: hidden from the job"
    unset CUDA_HOME CUDA_PATH; export PATH=$(echo "$PATH" | tr : '\n' | grep -v -i cuda | paste -sd:)
    [ -d /usr/local/cuda ] && mv /usr/local/cuda /usr/local/cuda.hidden   # torch's last guess for CUDA_HOME
    python3 -m pip install -q --no-index --no-deps --target $Q/cuda-site $Q/cuda/*.whl || exit 1
    rm -rf $Q/repo-zero3 && mkdir -p $Q/repo-zero3 && cp -r bench runner conf experiments pyproject.toml $Q/repo-zero3/
    cd $Q/repo-zero3 && export PYTHONPATH=/tmp/site:$Q/cuda-site:$Q/repo-zero3
    start=$(date +%s)
    python3 -m runner deepspeed=zero3_offload gpu=h100 runs_root=$Q/runs-zero3 ${ZERO3_ARGS:-}
    echo "rc=$? in $(( $(date +%s) - start )) s"
    [ -d /usr/local/cuda.hidden ] && mv /usr/local/cuda.hidden /usr/local/cuda
    run=$(ls -d $Q/runs-zero3/2* | tail -n 1) && mkdir -p $Q/results/zero3 &&
      cp -r $run/logs $run/metrics.json $run/status.json $run/config.yml $Q/results/zero3/ 2>/dev/null
    grep -h -i -E "cuda_home|cpu_adam|DeepSpeedCPUAdam|zero_force|error|Traceback" $run/logs/*.log | head -n 30 ;;
  wait)
    deadline=$(( $(date +%s) + ${2:-500} ))
    while pgrep -f "recipe_probe.py|quality_bench.py|profile_train.py|profile-fg|startup-fg|zero3-fg" >/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
    collect ;;
  *)
    echo "usage: bash bench/quality_session.sh carry DIR | probe | profile | bench TAG ENTRY... | startup NAME... | wait [SECONDS]" >&2; exit 2 ;;
esac
