#!/usr/bin/env bash
# `arcane-cli eval suite` against scripts/eval_reference.py (PyTorch, lm-eval's HFLM scoring)
# on the same random GPT-2 124M weights and the same documents (the first LIMIT of each bundled
# task), alternating ROUNDS times; prints each side's scoring seconds (model loading excluded)
# and the ratio of the medians.
#
#   scripts/bench_evalsuite.sh [LIMIT=10] [ROUNDS=3]
#
# Needs a release build of arcane-cli and a Python with torch + transformers
# (PYTHON, default /work/venv/bin/python). BENCH_THREADS (default 2) threads for PyTorch.
set -euo pipefail
LIMIT=${1:-10}
ROUNDS=${2:-3}
PY=${PYTHON:-/work/venv/bin/python}
BIN=${ARCANE_CLI:-target/release/arcane-cli}
MODEL=${MODEL_DIR:-/tmp/arcane-gpt2-124m-random}
export BENCH_THREADS=${BENCH_THREADS:-2}
[ -f "$MODEL/model.safetensors" ] || "$PY" scripts/eval_reference.py --save-random-gpt2-124m "$MODEL"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; limit $LIMIT per task"
rust=(); torch=()
for i in $(seq "$ROUNDS"); do
  r=$("$BIN" eval suite --model "$MODEL" --limit "$LIMIT" --json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  t=$("$PY" scripts/eval_reference.py --model "$MODEL" --limit "$LIMIT" 2>/dev/null | tail -1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  echo "round $i: arcane ${r} s, pytorch ${t} s (load $(cut -d' ' -f1-3 /proc/loadavg))"
  rust+=("$r"); torch+=("$t")
done
"$PY" - "${rust[*]}" "${torch[*]}" <<'PYEOF'
import statistics, sys
r = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
print(f"median: arcane {statistics.median(r):.2f} s, pytorch {statistics.median(t):.2f} s, "
      f"speed-up {statistics.median(t) / statistics.median(r):.2f}x")
PYEOF
