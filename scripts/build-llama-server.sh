#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` for the function-calling comparison (make
# eval-tools-vs-llama, docs/benchmarks.md).
#
# Unlike the benchmark tools (scripts/build-llama-tools.sh), the server cannot be compiled
# against the tree vendored in the llama-cpp-sys-2 crate: its sources are not shipped there,
# and the server uses common/chat.* internals that change between llama.cpp commits. So the
# whole llama.cpp tree vendored in the llama-cpp-python sdist (the same sdist the benchmark
# tools come from) is built as one: ggml, llama, common and tools/server of a single commit.
# CPU flags are the crate's (no -march=native), as for the benchmark tools; the embedded web
# UI is left out (it would be downloaded).
#
# Env knobs: TANDEM_HOME (~/.cache/tandem), LLAMA_CPP_PYTHON_VERSION (0.3.36),
# LLAMA_TOOLS_JOBS (2), LLAMA_SERVER_FORCE=1. Idempotent: a stamp records the inputs.
# Takes ~15 minutes on 2 cores the first time.
set -euo pipefail

TANDEM_HOME="${TANDEM_HOME:-$HOME/.cache/tandem}"
PY_VER="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${LLAMA_TOOLS_JOBS:-2}"
RECIPE_VERSION=1
HOME_DIR="$TANDEM_HOME/llama-server"
SRC_DIR="$HOME_DIR/src"
BUILD_DIR="$HOME_DIR/build"
BIN="$HOME_DIR/bin/llama-server"
STAMP="$HOME_DIR/stamp.txt"
SDIST_DIR="$TANDEM_HOME/sdist"

log() { printf '[build-llama-server] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for t in cmake python3 tar; do command -v "$t" >/dev/null || die "missing prerequisite: $t"; done

mkdir -p "$SDIST_DIR" "$HOME_DIR/bin"
SDIST="$SDIST_DIR/llama_cpp_python-$PY_VER.tar.gz"
if [[ ! -f "$SDIST" ]] || ! tar tzf "$SDIST" >/dev/null 2>&1; then
    log "downloading the llama-cpp-python==$PY_VER sdist into $SDIST_DIR"
    python3 -m pip download -q --no-deps --no-binary :all: -d "$SDIST_DIR" "llama-cpp-python==$PY_VER" >&2
    [[ -f "$SDIST" ]] || die "pip download did not produce $SDIST"
fi

CMAKE_ARGS=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON
    -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=ON -DGGML_BLAS=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF
)
[[ "$(uname -m)" == x86_64 ]] || CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF)
STAMP_CONTENT="recipe=$RECIPE_VERSION
sdist=llama-cpp-python $PY_VER sha256=$(sha256sum "$SDIST" | cut -d' ' -f1)
cmake_args=${CMAKE_ARGS[*]}
cxx=$(c++ --version | head -n1)"
if [[ "${LLAMA_SERVER_FORCE:-0}" != 1 && -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    log "up to date: $BIN (LLAMA_SERVER_FORCE=1 to rebuild)"
    exit 0
fi

log "extracting llama.cpp from the sdist into $SRC_DIR"
rm -rf "$SRC_DIR" "$BUILD_DIR"
mkdir -p "$SRC_DIR"
tar xzf "$SDIST" -C "$SRC_DIR" --strip-components=3 "llama_cpp_python-$PY_VER/vendor/llama.cpp"
log "configuring"
cmake -S "$SRC_DIR" -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" > "$HOME_DIR/configure.log" 2>&1 \
    || { tail -n 40 "$HOME_DIR/configure.log" >&2; die "cmake configure failed"; }
log "building llama-server with -j$JOBS (log: $HOME_DIR/build.log)"
t0=$(date +%s)
cmake --build "$BUILD_DIR" -j"$JOBS" --target llama-server > "$HOME_DIR/build.log" 2>&1 \
    || { grep -E 'error' "$HOME_DIR/build.log" | head -n 40 >&2; die "build failed"; }
install -m 0755 "$BUILD_DIR/bin/llama-server" "$BIN"
printf '%s\n' "$STAMP_CONTENT" > "$STAMP"
log "built in $(( $(date +%s) - t0 ))s -> $BIN"
