#!/usr/bin/env bash
# The CUDA device check, run on a GPU machine (H100/H200) from the repository root with the
# binaries that scripts/gpu-build.sh made in .gpu/. It builds nothing; every step runs under its
# own `timeout`, and every log line is written as it comes (a step killed by its timeout keeps
# what it printed) to $OUT (default gpu-out/), one file per step plus summary.txt.
#
#   bash scripts/gpu-check.sh                  # all groups (about 15 minutes)
#   bash scripts/gpu-check.sh correctness      # parity tests, greedy ids vs the CPU (~5 min)
#   bash scripts/gpu-check.sh speed            # decode, eval, train cold/warm, batch sweep (~10 min)
#   bash scripts/gpu-check.sh decode train_cold  # single steps by name
#
# Steps: env, tests, greedy, decode, hellaswag, train_cold, train_warm, sweep.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
G=$PWD/.gpu
CLI=$G/arcane-cli
export ARCANE_FIXTURES=$PWD/arcane/tests/fixtures
# Kernel caches live beside the binaries, so a second call in the same session is warm.
export ARCANE_KERNEL_CACHE=$G/kernels
export RUST_BACKTRACE=1
summary=$OUT/summary.txt

log() { echo "$*" | tee -a "$summary"; }

# step NAME SECONDS COMMAND...: runs COMMAND under a timeout, output line by line into
# $OUT/NAME.log and the terminal, and records the exit code and seconds in the summary.
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/$name.log"
  timeout --kill-after=10 "$limit" stdbuf -oL -eL "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  log "$name: exit $rc in $((SECONDS - start))s"
  return $rc
}

unpack() {
  for f in "$G"/*.xz "$G"/tests/*.xz; do
    [ -e "$f" ] && xz -dkf "$f"
  done
  chmod +x "$CLI" "$G"/tests/* 2>/dev/null
  [ -x "$CLI" ] || { log "no $CLI: run scripts/gpu-build.sh on a build machine and carry .gpu"; exit 2; }
}

env_info() {
  step env 30 bash -c 'nvidia-smi; uname -a; '"$CLI"' --version'
}

tests() {
  # The library's integration tests with TestBackend = Cuda (TF32 matmuls: see tests/common).
  for t in parity parity_archs model precision; do
    [ -x "$G/tests/$t" ] && step "test_$t" 240 "$G/tests/$t" --test-threads 1
  done
}

greedy() {
  # Greedy ids on both fixtures: CUDA (bucketed prompt shapes) must equal the CPU.
  for model in gpt2 llama; do
    # The Llama fixture has a 512-token vocabulary: a prompt of single letters fits it.
    local prompt="The whale"
    [ "$model" = llama ] && prompt="a b c"
    for backend in cpu cuda; do
      step "greedy_${model}_$backend" 120 "$CLI" --backend "$backend" generate \
        --model "$ARCANE_FIXTURES/$model" --prompt "$prompt" --temperature 0 \
        --max-new-tokens 24 --json
    done
    if diff <(grep -o '"ids":\[[^]]*\]' "$OUT/greedy_${model}_cpu.log") \
            <(grep -o '"ids":\[[^]]*\]' "$OUT/greedy_${model}_cuda.log") >/dev/null; then
      log "greedy_$model: CUDA ids equal the CPU's"
    else
      log "greedy_$model: CUDA ids DIFFER from the CPU's"
    fi
  done
}

decode() {
  # Batch-1 decoding of gpt2-124m; the second run starts with warm kernel caches.
  step decode_cold 240 "$CLI" --backend cuda bench decode --config gpt2-124m --repeats 3
  step decode_warm 120 "$CLI" --backend cuda bench decode --config gpt2-124m --repeats 3
  step decode_long 120 "$CLI" --backend cuda bench decode --config gpt2-124m --prompt-len 900 --new-tokens 100 --repeats 2
}

hellaswag() {
  # Speed on 1,000 real examples (random weights: accuracy is chance).
  step hellaswag 240 "$CLI" --backend cuda bench hellaswag --config gpt2-124m --batch 16 \
    --data datasets/hellaswag/hellaswag_val.jsonl.gz --limit 1000 --repeats 1
}

train_run() {
  local name=$1 limit=$2
  rm -rf "$OUT/run_$name"
  step "$name" "$limit" "$CLI" --backend cuda train --config gpt2-124m --max-steps 4 \
    --eval-every 1000 --checkpoint-every 1000 --no-dashboard --out "$OUT/run_$name"
  grep '"kind":"train"' "$OUT/run_$name/metrics.jsonl" 2>/dev/null | tee -a "$summary"
}

train_cold() { train_run train_cold 420; }
train_warm() { train_run train_warm 240; }

sweep() {
  # Tokens/s against micro-batch in bf16 (and with activation checkpointing at 64).
  for b in 16 32 64; do
    step "sweep_b$b" 180 "$CLI" --backend cuda bench train --config gpt2-124m --batch "$b" \
      --seq-len 1024 --precision bf16 --repeats 5
  done
  step sweep_b64_ckpt 180 "$CLI" --backend cuda bench train --config gpt2-124m --batch 64 \
    --seq-len 1024 --precision bf16 --activation-checkpointing --repeats 5
  step sweep_b16_f32 180 "$CLI" --backend cuda bench train --config gpt2-124m --batch 16 \
    --seq-len 1024 --precision f32 --repeats 5
}

unpack
[ $# -eq 0 ] && set -- correctness speed
for what in "$@"; do
  case $what in
    correctness) env_info; tests; greedy ;;
    speed) decode; hellaswag; train_cold; train_warm; sweep ;;
    env) env_info ;;
    tests | greedy | decode | hellaswag | train_cold | train_warm | sweep) $what ;;
    *) log "unknown step $what"; exit 2 ;;
  esac
done
log "logs in $OUT"
