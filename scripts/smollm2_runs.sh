#!/usr/bin/env bash
# The real-model runs of issue 8 (SmolLM2-135M-Instruct, bf16 base, chat addition task), one after another.
# Resumable: a finished run (eval.json present) is skipped, an interrupted one continues with --resume.
# Usage: scripts/smollm2_runs.sh [OUT_ROOT] [STEPS]     (defaults: runs/smollm2, 60)
set -euo pipefail
root=${1:-runs/smollm2}
steps=${2:-60}
tg=${THREEGATE:-.venv/bin/threegate}
common=(--model smollm2 --task addition --steps "$steps" --prompts 8 --minibatches 4 --checkpoints 3 --gates 3 --no-progress)
run() {  # name algo args...
  local name=$1; shift
  local out="$root/$name"
  if [[ -f "$out/eval.json" ]]; then echo "$name: done"; return; fi
  local resume=()
  [[ -s "$out/log.jsonl" ]] && resume=(--resume)
  echo "$name: $tg train $* ${common[*]} --out $out ${resume[*]}"
  "$tg" train "$@" "${common[@]}" --out "$out" "${resume[@]}"
}
run grpo-s0 grpo --group-size 8 --lr 2e-5 --seed 0
run sft-s0 sft --group-size 8 --lr 1e-5 --seed 0
run grpo-s1 grpo --group-size 8 --lr 2e-5 --seed 1
run dapo-s0 dapo --group-size 8 --lr 2e-5 --seed 0
