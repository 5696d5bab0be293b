#!/usr/bin/env bash
# The GPU (CubeCL/JIT) code path without a GPU: Burn's wgpu backend, with the fusion and
# autotune the CLI ships, on Mesa's software Vulkan driver (lavapipe), against the CPU backend
# in the same process (arcane/tests/lavapipe.rs). Run it before any GPU run, and whenever the
# model, the KV cache or the attention code changes: it catches shape, mask, fusion and dtype
# bugs that the CPU suite cannot see, in minutes of CPU time instead of the GPU's.
#
#   bash scripts/lavapipe-check.sh            # everything (cold: build ~30-60 min on 2 cores)
#   bash scripts/lavapipe-check.sh cache eval # only some steps (the build step always runs)
#
# Steps: driver, build, adapter, no_adapter, attention, matmul, parity, cache, training, eval,
# dtypes.
# Installs the driver with apt when it is missing (needs root). Builds in its own target folder
# ($LAVAPIPE_TARGET_DIR, default target-lavapipe/), so the CPU build is never rebuilt. Each step
# runs under its own `timeout`, its output written line by line to $OUT/<step>.log (default
# lavapipe-out/), one line per step in $OUT/summary.txt. Exits non-zero, loudly, when the
# driver or the software adapter is missing (it never skips) and when any step fails.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-lavapipe-out}
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${LAVAPIPE_TARGET_DIR:-target-lavapipe}
summary=$OUT/summary.txt
: >"$summary"
failed=0

log() { echo "$*" | tee -a "$summary"; }
die() {
  log "LAVAPIPE CHECK FAILED: $*"
  exit 2
}

# step NAME SECONDS COMMAND...: COMMAND under a timeout, its output line by line into
# $OUT/NAME.log and the terminal; records exit code and seconds in the summary.
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
  timeout --kill-after=10 "$limit" stdbuf -oL -eL "$@" 2>&1 | tee -a "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  log "$name: exit $rc in $((SECONDS - start))s"
  return "$rc"
}

driver() {
  if ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "mesa-vulkan-drivers is not installed; run as root or: sudo apt-get install mesa-vulkan-drivers libvulkan1 vulkan-tools"
    step apt 600 bash -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 vulkan-tools' ||
      die "could not install the lavapipe driver"
  fi
  # Only lavapipe's ICD: the package also installs RADV and Intel ICDs, and a machine with a
  # GPU must not run this check on it.
  local icd=/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json
  [ -f "$icd" ] || die "no lavapipe ICD at $icd"
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  # cubecl's default device follows this variable; the tests name WgpuDevice::Cpu anyway.
  export CUBECL_WGPU_DEFAULT_DEVICE=Cpu
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  if command -v vulkaninfo >/dev/null; then
    vulkaninfo --summary 2>/dev/null | grep -E 'deviceType|deviceName|driverInfo' | tee "$OUT/driver.log"
    grep -q PHYSICAL_DEVICE_TYPE_CPU "$OUT/driver.log" || die "Vulkan lists no CPU-type (software) adapter"
  fi
  log "driver: $(grep -m1 deviceName "$OUT/driver.log" 2>/dev/null | sed 's/.*= //')"
}

build() {
  step build 5400 cargo test --release --locked -p arcane --features test-lavapipe \
    --test lavapipe --no-run || die "the test-lavapipe build failed (see $OUT/build.log)"
  BIN=$(sed -n 's/.*Executable tests\/lavapipe.rs (\(.*\))/\1/p' "$OUT/build.log" | tail -n 1)
  [ -x "$BIN" ] || die "no test binary in $OUT/build.log"
}

# tests NAME SECONDS FILTER: the test binary's tests matching FILTER, one at a time; fails
# when any fails or when none ran.
tests() {
  local name=$1 limit=$2 filter=$3
  if step "$name" "$limit" "$BIN" --test-threads 1 --nocapture "$filter" &&
    grep -Eq 'test result: ok\. [1-9][0-9]* passed' "$OUT/$name.log"; then
    return 0
  fi
  log "$name: FAILED (see $OUT/$name.log)"
  failed=1
}

no_adapter() {
  # Without the driver the check must fail, not skip: the adapter test must panic.
  if VK_DRIVER_FILES=/nonexistent VK_ICD_FILENAMES=/nonexistent step no_adapter 120 \
    "$BIN" --test-threads 1 the_adapter_is_a_software_vulkan_device; then
    log "no_adapter: FAILED: the tests passed without a Vulkan driver"
    failed=1
  else
    log "no_adapter: the tests refuse to run without the driver, as they must"
  fi
}

start=$SECONDS
driver
build
[ $# -eq 0 ] && set -- adapter no_adapter attention matmul parity cache training eval dtypes
for what in "$@"; do
  case $what in
    driver | build) ;;
    adapter) tests adapter 120 the_adapter_is_a_software_vulkan_device ;;
    no_adapter) no_adapter ;;
    attention) tests attention 900 attention:: ;;
    matmul) tests matmul 600 matmul:: ;;
    parity) tests parity 1200 parity:: ;;
    cache) tests cache 1200 cache:: ;;
    training) tests training 1200 training:: ;;
    eval) tests eval 900 eval:: ;;
    dtypes) tests dtypes 900 dtypes:: ;;
    *) die "unknown step $what" ;;
  esac
done
log "total: $((SECONDS - start))s; logs in $OUT"
[ "$failed" = 0 ] || die "some steps failed (see $summary)"
log "LAVAPIPE CHECK PASSED"
