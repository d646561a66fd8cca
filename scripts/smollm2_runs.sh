#!/usr/bin/env bash
# The real-model runs of issue 8 and the study of issue 9 on them (SmolLM2-135M-Instruct, bf16 base, chat
# addition task): SFT, GRPO seed 0 and 1, DAPO seed 0, 60 steps each, then the analysis.
# Resumable: finished runs are reused, an interrupted one continues with --resume (see threegate/study/smollm2.py).
# Usage: scripts/smollm2_runs.sh [RUNS_ROOT] [STUDY_OUT]     (defaults: runs/smollm2, runs/smollm2-study)
set -euo pipefail
exec "${THREEGATE:-.venv/bin/threegate}" study smollm2 --preset full --runs "${1:-runs/smollm2}" \
  --out "${2:-runs/smollm2-study}" --resume
