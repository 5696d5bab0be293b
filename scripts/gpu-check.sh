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
#   bash scripts/gpu-check.sh ddp              # NCCL data parallel on all GPUs vs one (~5 min)
#
# Steps: env, tests, greedy, decode, hellaswag, train_cold, train_warm, sweep, ddp.
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
  chmod +x "$CLI" "$G"/arcane-cli-ddp "$G"/tests/* 2>/dev/null
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

# figures RUN FIELD: the FIELD of each training step in RUN's metrics, one per line.
figures() {
  grep '"kind":"train"' "$OUT/run_$1/metrics.jsonl" 2>/dev/null | grep -o "\"$2\":[-0-9.eE+]*" | cut -d: -f2
}

# compare FIELD N A B TOL1 TOL: the FIELD of runs A and B step by step, relative difference at
# most TOL1 at step 1 and TOL after; fails when a run has fewer than 5 steps.
compare() {
  paste <(figures "$3" "$1") <(figures "$4" "$1") | awk -v f="$1" -v n="$2" -v t1="$5" -v t="$6" '
    NF == 2 {
      r = ($1 - $2) / $1; if (r < 0) r = -r; tol = (NR == 1) ? t1 : t
      printf "step %d %s: 1 device %s, %d GPU(s) %s, relative difference %.2e (limit %.0e)\n", NR, f, $1, n, $2, r, tol
      if (r > tol) bad = 1; rows++
    }
    END { exit (bad || rows < 5) }' | tee -a "$summary"
  return "${PIPESTATUS[1]}"
}

ddp() {
  # NCCL data parallel (the cuda-ddp build, .gpu/arcane-cli-ddp) on every GPU of this machine
  # (one is a valid, degenerate run) against the same binary's single-device path: same
  # global batch (2 micro-batches of 8 x 1024 tokens per GPU per step), seed and f32
  # precision. Step 1 runs identical weights on identical micro-batches, so its loss and its
  # gradient norm (of the all-reduced gradient: a wrong scaling shows as a factor N) must
  # agree to float summation order (1e-4 relative); steps 2-5 within 1e-2, since the
  # gradients agree only up to summation order, which Adam's first steps amplify.
  local cli=$G/arcane-cli-ddp
  [ -x "$cli" ] || { log "ddp: no $cli; scripts/gpu-build.sh builds it"; return 2; }
  local n
  n=$(nvidia-smi -L | grep -c '^GPU ')
  [ "$n" -ge 1 ] || { log "ddp: nvidia-smi lists no GPU"; return 2; }
  local args=(--backend cuda train --config gpt2-124m --max-steps 5 --micro-batch 8
    --tokens-per-step $((n * 2 * 8 * 1024)) --precision f32 --eval-every 1000
    --checkpoint-every 1000 --log-every 1 --no-dashboard)
  rm -rf "$OUT/run_ddp_single" "$OUT/run_ddp_all"
  step ddp_single 420 "$cli" "${args[@]}" --out "$OUT/run_ddp_single"
  step ddp_all 420 "$cli" "${args[@]}" --devices "$(seq -s, 0 $((n - 1)))" --out "$OUT/run_ddp_all"
  if compare loss "$n" ddp_single ddp_all 1e-4 1e-2 && compare grad_norm "$n" ddp_single ddp_all 1e-4 5e-2; then
    log "ddp: $n GPU(s) match the single-device path"
  else
    log "ddp: $n GPU(s) DIFFER from the single-device path (or a run failed: see ddp_*.log)"
  fi
}

unpack
[ $# -eq 0 ] && set -- correctness speed
for what in "$@"; do
  case $what in
    correctness) env_info; tests; greedy ;;
    speed) decode; hellaswag; train_cold; train_warm; sweep; ddp ;;
    env) env_info ;;
    tests | greedy | decode | hellaswag | train_cold | train_warm | sweep | ddp) $what ;;
    *) log "unknown step $what"; exit 2 ;;
  esac
done
log "logs in $OUT"
