#!/usr/bin/env bash
# Shows that Python's huggingface_hub and Arcane share one Hugging Face cache (not run by CI:
# it needs Python with huggingface_hub). Against a fake Hub on 127.0.0.1 (scripts/fake_hub.py):
#   1. Python downloads arcane-test/gpt2 (snapshot_download); the server stops; arcane-cli
#      generates from it with HF_HUB_OFFLINE=1 and gives the ids of the fixture folder.
#   2. arcane-cli downloads arcane-test/llama; the server stops; Python finds every file
#      offline (try_to_load_from_cache, hf_hub_download(local_files_only=True)) with the
#      fixture's bytes, scan_cache_dir() reports the repo without warnings, and transformers
#      loads the snapshot folder.
# Usage: scripts/hub_interop.sh [PYTHON] (default /work/venv/bin/python); builds arcane-cli
# unless ARCANE_CLI names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-/work/venv/bin/python}
# ARCANE_CLI: a binary already built (skips the build).
if [ -z "${ARCANE_CLI:-}" ]; then cargo build --release -p arcane-cli >/dev/null; fi
CLI=$(realpath "${ARCANE_CLI:-target/release/arcane-cli}")
TMP=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_HUB_CACHE HUGGINGFACE_HUB_CACHE
export HF_HOME=$TMP/hf-home HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_XET=1

start_hub() {
  "$PY" scripts/fake_hub.py --repo arcane-test/gpt2=arcane/tests/fixtures/gpt2 \
    --repo arcane-test/llama=arcane/tests/fixtures/llama >"$TMP/port" 2>>"$TMP/requests.log" &
  SERVER=$!
  for _ in $(seq 50); do grep -q PORT "$TMP/port" 2>/dev/null && break; sleep 0.1; done
  export HF_ENDPOINT="http://127.0.0.1:$(awk '{print $2}' "$TMP/port")"
}
stop_hub() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }
gen() { "$CLI" generate --json --temperature 0 --max-new-tokens 8 --prompt "The whale" --model "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["ids"])'; }

echo "== 1. Python downloads, Arcane reads (offline, server stopped)"
start_hub
"$PY" - <<'PYEOF'
from huggingface_hub import snapshot_download
print("python snapshot:", snapshot_download("arcane-test/gpt2"))
PYEOF
stop_hub
before=$(wc -l <"$TMP/requests.log")
from_cache=$(HF_HUB_OFFLINE=1 gen arcane-test/gpt2)
local=$(gen arcane/tests/fixtures/gpt2)
echo "arcane from Python's cache: $from_cache"
echo "arcane from the fixture:    $local"
[ "$from_cache" = "$local" ] || { echo "FAIL: different ids"; exit 1; }
[ "$(wc -l <"$TMP/requests.log")" = "$before" ] || { echo "FAIL: a request was made"; exit 1; }

echo "== 2. Arcane downloads, Python reads (offline, server stopped)"
start_hub
gen arcane-test/llama >/dev/null
stop_hub
HF_HUB_OFFLINE=1 "$PY" - <<'PYEOF'
import os
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache
fixture = "arcane/tests/fixtures/llama"
for name in sorted(os.listdir(fixture)):
    path = try_to_load_from_cache("arcane-test/llama", name)
    assert isinstance(path, str), f"{name}: not found in Arcane's cache ({path!r})"
    again = hf_hub_download("arcane-test/llama", name, local_files_only=True)
    assert again == path, (again, path)
    assert open(path, "rb").read() == open(os.path.join(fixture, name), "rb").read(), name
    print(f"python finds {name}: {path}")
info = scan_cache_dir()
assert not info.warnings, info.warnings
repo = next(r for r in info.repos if r.repo_id == "arcane-test/llama")
print(f"scan_cache_dir: {repo.repo_id} {repo.size_on_disk} bytes, revisions {[r.commit_hash for r in repo.revisions]}, refs {[sorted(r.refs) for r in repo.revisions]}")
snapshot = snapshot_download("arcane-test/llama", local_files_only=True)
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(snapshot)
print("transformers loads", type(model).__name__, "from", snapshot)
PYEOF
echo "OK: Python and Arcane read each other's cache"
