#!/usr/bin/env bash
# Build llama.cpp's bench tools from the crate's vendored llama.cpp (if needed)
# and compare Tandem against them.
#
#   scripts/bench.sh [extra args for bench-vs-llamacpp.py ...]
#
# Env: TANDEM_HOME (~/.cache/tandem), BENCH_MODEL (default: first
# $TANDEM_HOME/models/smollm2-135m/*.gguf), BENCH_THREADS (2),
# TANDEM_BIN (default: ${CARGO_TARGET_DIR:-$TANDEM_HOME/target}/release/tandem),
# plus everything build-llama-tools.sh understands (TANDEM_LLAMA_CPU, ...).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TANDEM_HOME="${TANDEM_HOME:-$HOME/.cache/tandem}"

"$SCRIPT_DIR/build-llama-tools.sh"

MODEL="${BENCH_MODEL:-}"
if [[ -z "$MODEL" ]]; then
    MODEL="$(ls "$TANDEM_HOME"/models/smollm2-135m/*.gguf 2>/dev/null | head -n1 || true)"
fi
[[ -n "$MODEL" && -f "$MODEL" ]] || {
    echo "bench.sh: no model; set BENCH_MODEL or put a GGUF in $TANDEM_HOME/models/smollm2-135m/" >&2
    exit 2
}
THREADS="${BENCH_THREADS:-2}"
TANDEM_BIN="${TANDEM_BIN:-${CARGO_TARGET_DIR:-$TANDEM_HOME/target}/release/tandem}"

args=(--model "$MODEL" --threads "$THREADS")
if [[ -x "$TANDEM_BIN" ]]; then
    args+=(--tandem "$TANDEM_BIN")
else
    echo "bench.sh: WARNING: tandem binary not found at $TANDEM_BIN (build with" \
         "'cargo build --release -p tandem'); Tandem column will be n/a" >&2
fi

exec python3 "$SCRIPT_DIR/bench-vs-llamacpp.py" "${args[@]}" "$@"
