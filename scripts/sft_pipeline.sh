#!/usr/bin/env bash
# SFT -> reward model -> PPO / RLOO / DPO on the bundled sentiment data, on the CPU: the
# alignment pipeline of scripts/sentiment_pipeline.sh with stage 2 done by `arcane-cli sft`
# (TRL "text" rows, one review each, EOS appended, LoRA rank 16, merged into $RUNS/sft, which
# the reward model, PPO, RLOO and DPO start from and use as their reference policy).
#
# RUNS (default runs/sft-pipeline) and SAMPLES pass through. A pre-trained base from an
# earlier sentiment run can be reused: mkdir -p $RUNS && cp -r runs/sentiment/base $RUNS/.
set -euo pipefail
cd "$(dirname "$0")/.."
SFT=sft RUNS=${RUNS:-runs/sft-pipeline} exec scripts/sentiment_pipeline.sh "$@"
