#!/usr/bin/env bash
# Per-kernel CPU profile of any arcane-cli command with `perf` (sampling, no rebuild needed):
#
#   scripts/profile-cpu.sh target/release/arcane-cli bench train --config gpt2-124m --repeats 2
#   scripts/profile-cpu.sh target/release/arcane-cli bench decode --config gpt2-124m
#
# Prints the sampled CPU time grouped into kernel families (matmul vs the rest, see
# scripts/perf_buckets.py), then the 25 hottest symbols. The samples cover the whole process
# (model init and warm-up included) and both cores; `bench ... --profile` gives the wall-time
# split into forward / backward / clipping / optimizer (train) or blocks / head (decode).
# Needs `perf` (linux-tools) with access to the CPU clock (perf_event_paranoid <= 2 for your
# own processes); `PERF_FREQ` sets the sampling rate (default 499 Hz).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$(mktemp /tmp/arcane-perf.XXXXXX)"
trap 'rm -f "$data"' EXIT
perf record -q -F "${PERF_FREQ:-499}" -o "$data" -- "$@" >&2
report() { perf report -i "$data" --no-children --sort symbol --stdio -F overhead,sym 2>/dev/null; }
echo "== kernel families (share of sampled CPU time) =="
report | python3 "$here/perf_buckets.py"
echo "== hottest symbols =="
report | grep -E '^\s+[0-9.]+%' | sort -rn | head -25
