#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything scripts/gpu-check.sh runs on a GPU machine:
# a stripped `--features cuda` arcane-cli, the CUDA-only `cuda-ddp` one (arcane-cli-ddp) and the library's integration tests compiled for CUDA
# (`--features test-cuda`: the same tests with `TestBackend = Cuda`), xz-compressed into .gpu/
# (ignored by git). The GPU machine then builds nothing.
#
#   bash scripts/gpu-build.sh            # ~20-25 min cold on 2 cores (18.5 partly warm), own target folder
#
# Needs only the Rust toolchain (CUDA's driver is loaded at run time, so no CUDA toolkit).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${GPU_TARGET_DIR:-target-cuda}
out=.gpu
mkdir -p "$out/tests"

echo "building arcane-cli with CUDA into $CARGO_TARGET_DIR"
cargo build --release --locked -p arcane-cli --features cuda
cp "$CARGO_TARGET_DIR/release/arcane-cli" "$out/arcane-cli"

# The CUDA-only NCCL data-parallel build (gpu-check.sh step `ddp`): Burn's `distributed`
# feature cannot share a build with the CPU backend, so it is a second binary in its own
# target folder (GPU_DDP=0 skips it: about as long again as the build above).
if [ "${GPU_DDP:-1}" != 0 ]; then
  echo "building arcane-cli with CUDA NCCL data parallel into ${GPU_DDP_TARGET_DIR:-target-cuda-ddp}"
  CARGO_TARGET_DIR=${GPU_DDP_TARGET_DIR:-target-cuda-ddp} cargo build --release --locked \
    -p arcane-cli --no-default-features --features cuda-ddp
  cp "${GPU_DDP_TARGET_DIR:-target-cuda-ddp}/release/arcane-cli" "$out/arcane-cli-ddp"
fi

echo "building the library's integration tests that gpu-check.sh runs, for CUDA"
# One JSON line per artifact; keep the test executables.
cargo test --release --locked -p arcane --features test-cuda --no-run --message-format=json \
  --test parity --test parity_archs --test model --test precision \
  | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], ".gpu/tests/" + m["target"]["name"])
        print("  test binary", m["target"]["name"])
'
strip "$out"/arcane-cli* "$out"/tests/*
rm -f "$out"/*.xz "$out"/tests/*.xz
xz -T2 -6 "$out"/arcane-cli* "$out"/tests/*
du -sh "$out"
echo "carry .gpu to the GPU machine and run: bash scripts/gpu-check.sh"
