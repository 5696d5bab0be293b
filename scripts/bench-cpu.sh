#!/usr/bin/env bash
# Every CPU comparison of Arcane with PyTorch eager / transformers, side by side: each pair
# runs back to back (Arcane, then the reference), `ROUNDS` times, and the medians' ratios are
# printed. Run it on a quiet machine; the load average is printed with the results.
#
#   BENCH_VENV=/work/bench-venv scripts/bench-cpu.sh            # everything (~40 min on 2 cores)
#   ONLY="train decode" ROUNDS=2 scripts/bench-cpu.sh           # a subset, two rounds
#
# BENCH_VENV: a virtualenv with torch and transformers (see ../shared/bench/setup.sh);
# BENCH_DIR: the PyTorch baseline scripts (default /work/shared/bench); BENCH_THREADS: threads
# on both sides (default 2). Raw JSON lines go to RESULTS (default /tmp/bench-cpu-<time>.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BENCH_VENV:-/work/bench-venv}"
PY="$VENV/bin/python"
DIR="${BENCH_DIR:-/work/shared/bench}"
ROUNDS="${ROUNDS:-1}"
ONLY="${ONLY:-train train-small decode context hellaswag}"
export BENCH_THREADS="${BENCH_THREADS:-2}"
export RAYON_NUM_THREADS="$BENCH_THREADS"
OUT="${RESULTS:-/tmp/bench-cpu-$(date +%Y%m%d-%H%M%S).jsonl}"
[[ -x "$PY" ]] || { echo "no python at $PY: set BENCH_VENV (see $DIR/setup.sh)" >&2; exit 1; }
cargo build --release -p arcane-cli >&2
ARCANE=target/release/arcane-cli
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores," \
     "threads $BENCH_THREADS, load $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"

# run TAG COMMAND...: one JSON line from COMMAND, tagged, appended to $OUT.
run() {
    local tag="$1"; shift
    local line
    line="$("$@" 2>/dev/null | grep '^{' | head -1)"
    echo "{\"tag\": \"$tag\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": $line}" >> "$OUT"
}

for _ in $(seq "$ROUNDS"); do
    for what in $ONLY; do
        case "$what" in
        train)
            run arcane-train-124m $ARCANE bench train --config gpt2-124m --batch 1 --seq-len 1024 --repeats 3
            run torch-train-124m "$PY" "$DIR/train_bench.py" --configs gpt2-124m --variants gpt2 ;;
        train-small)
            run arcane-train-tiny $ARCANE bench train --config configs/models/bench-tiny.json --batch 8 --seq-len 256 --repeats 8
            run torch-train-tiny "$PY" "$DIR/train_bench.py" --configs tiny --variants gpt2
            run arcane-train-small $ARCANE bench train --config configs/models/bench-small.json --batch 8 --seq-len 256 --repeats 6
            run torch-train-small "$PY" "$DIR/train_bench.py" --configs small --variants gpt2 ;;
        decode)
            run arcane-decode $ARCANE bench decode --config gpt2-124m --repeats 3
            run arcane-decode-bf16 $ARCANE bench decode --config gpt2-124m --precision bf16 --repeats 3
            run hf-decode "$PY" "$DIR/decode_bench.py" --engines hf-gpt2 --new-tokens 128 --prefill-len 32 ;;
        context)
            run arcane-decode-ctx50 $ARCANE bench decode --config gpt2-124m --prompt-len 34 --new-tokens 32 --repeats 3
            run arcane-decode-ctx1000 $ARCANE bench decode --config gpt2-124m --prompt-len 984 --new-tokens 32 --repeats 3 ;;
        hellaswag)
            run arcane-hellaswag $ARCANE bench hellaswag --config gpt2-124m --repeats 3
            run torch-hellaswag "$PY" scripts/hellaswag_reference.py --repeats 3 ;;
        *) echo "unknown comparison $what" >&2; exit 1 ;;
        esac
    done
done

python3 - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(tag, key):
    vals = [r["result"][key] for r in rows if r["tag"] == tag and r["result"] and key in r["result"]]
    return statistics.median(vals) if vals else None
def line(name, a, b, unit, higher_better=True):
    if a is None or b is None:
        print(f"{name:34s} missing"); return
    ratio = a / b if higher_better else b / a
    print(f"{name:34s} arcane {a:9.2f} {unit:12s} reference {b:9.2f}   ratio {ratio:5.2f}x")
for cfg in ["124m", "tiny", "small"]:
    line(f"train {cfg} (tokens/s)", med(f"arcane-train-{cfg}", "tokens_per_s"), med(f"torch-train-{cfg}", "tokens_per_s"), "tok/s")
    line(f"train {cfg} peak RSS (lower wins)", med(f"arcane-train-{cfg}", "peak_rss_mib"), med(f"torch-train-{cfg}", "max_rss_mib"), "MiB", False)
line("decode gpt2-124m (tokens/s)", med("arcane-decode", "tokens_per_s"), med("hf-decode", "decode_tok_s"), "tok/s")
line("decode, bf16 weights vs hf f32", med("arcane-decode-bf16", "tokens_per_s"), med("hf-decode", "decode_tok_s"), "tok/s")
a50, a1k = med("arcane-decode-ctx50", "median_s"), med("arcane-decode-ctx1000", "median_s")
if a50 and a1k:
    print(f"{'decode per-token time, ctx 1000/50':34s} {1000*a1k/32:.1f} ms / {1000*a50/32:.1f} ms = {a1k/a50:.2f} (goal <= 2)")
line("hellaswag (examples/s)", med("arcane-hellaswag", "examples_per_s"), med("torch-hellaswag", "examples_per_s"), "ex/s")
loads = [float(r["load"]) for r in rows]
print(f"load average during the runs: {min(loads):.2f} .. {max(loads):.2f}")
PYEOF
