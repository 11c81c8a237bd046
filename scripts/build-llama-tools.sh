#!/usr/bin/env bash
# Build llama.cpp's own `llama-bench` and `llama-batched-bench` from the SAME
# llama.cpp sources that Tandem links (the tree vendored in the
# `llama-cpp-sys-2` crate), so Tandem can be compared against them.
#
# Why this is more than `cmake && make`:
#   * The crate ships llama.cpp's library sources (ggml/, src/, include/,
#     common/, vendor/, cmake/) but `tools/` only has README.md files - the tool
#     sources are excluded from the published crate.
#   * We take the two tools' sources from the llama-cpp-python sdist
#     (vendor/llama.cpp/tools/{llama-bench,batched-bench}) and compile them
#     against the crate's tree. The two llama.cpp snapshots are NOT the same
#     commit (see "Version note" below); the tools only use the public llama.h
#     API plus common/ (arg, common, log, download, fit, build-info), whose
#     interfaces they need are identical in both trees, so no source patch is
#     needed today. If a future bump breaks that, patch in patch_tool_sources().
#
# Version note (checked 2026 with llama-cpp-sys-2 0.1.161 / llama-cpp-python 0.3.36):
#   crate tree : LLAMA_VERSION 0.6.0, GGML_VERSION 0.26.0, LLAMA_SESSION_VERSION 11
#   sdist tree : LLAMA_VERSION 0.5.x, GGML_VERSION 0.25.3, llama.cpp commit
#                0c1e57098bba43ac29e6e3b677cdceebdd22334f ("webgpu: fix SSM_SCAN
#                binding aliasing (#29750)")
#   Only the tool *front-ends* come from the sdist; everything that does the
#   actual work (ggml, llama, common) is compiled from the crate's tree.
#
# CPU flags (TANDEM_LLAMA_CPU):
#   crate  (default) - what llama-cpp-sys-2's build.rs produces for a normal
#            `cargo build` without `-C target-cpu=native`: GGML_NATIVE=OFF, and
#            ggml's own defaults for a non-native x86 build (SSE42/AVX/AVX2/
#            BMI2/FMA/F16C = ON, no AVX512), GGML_OPENMP=ON (Tandem enables the
#            `openmp` feature), static libs, and the cc-crate C/CXX flags
#            (-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64).
#            Verified against Tandem's own CMakeCache.txt in
#            $CARGO_TARGET_DIR/release/build/llama-cpp-sys-2-*/out/build.
#   native - GGML_NATIVE=ON (-march=native), i.e. "best llama.cpp on this box".
#   Build type: LLAMA_TOOLS_BUILD_TYPE (default Release). NOTE: Tandem's cargo
#   build uses RelWithDebInfo for llama.cpp because the workspace sets
#   [profile.release] debug = "line-tables-only" (build.rs maps DEBUG=true to
#   RelWithDebInfo; override with LLAMA_LIB_PROFILE=Release).
#
# Env knobs: TANDEM_HOME (default ~/.cache/tandem), LLAMA_CPP_PYTHON_VERSION
# (0.3.36), TANDEM_LLAMA_CPU (crate|native), LLAMA_TOOLS_BUILD_TYPE (Release),
# LLAMA_TOOLS_JOBS (2), LLAMA_TOOLS_EXTRA_CMAKE_ARGS, LLAMA_TOOLS_FORCE=1.
#
# Idempotent: skips everything if both binaries exist and the stamp file
# records the same inputs (crate dir+version, sdist sha256, flags, compiler).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
TANDEM_HOME="${TANDEM_HOME:-$HOME/.cache/tandem}"
PY_VER="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CPU_MODE="${TANDEM_LLAMA_CPU:-crate}"
BUILD_TYPE="${LLAMA_TOOLS_BUILD_TYPE:-Release}"
JOBS="${LLAMA_TOOLS_JOBS:-2}"
EXTRA_CMAKE_ARGS="${LLAMA_TOOLS_EXTRA_CMAKE_ARGS:-}"
RECIPE_VERSION=1   # bump when this script's build recipe changes

TOOLS_HOME="$TANDEM_HOME/llama-tools"
SRC_DIR="$TOOLS_HOME/src"
BUILD_DIR="$TOOLS_HOME/build"
BIN_DIR="$TOOLS_HOME/bin"
STAMP="$TOOLS_HOME/stamp.txt"
SDIST_DIR="$TANDEM_HOME/sdist"
TOOLS=(llama-bench llama-batched-bench)

log() { printf '[build-llama-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for t in cmake python3 tar; do command -v "$t" >/dev/null || die "missing prerequisite: $t"; done

# ---------------------------------------------------------------- 1. crate tree
locate_crate() {
    local manifest=""
    if command -v cargo >/dev/null; then
        manifest="$(cargo metadata --format-version 1 --manifest-path "$REPO_ROOT/Cargo.toml" 2>/dev/null \
            | python3 -c '
import json, sys
try:
    pkgs = json.load(sys.stdin)["packages"]
except Exception:
    sys.exit(0)
for p in pkgs:
    if p["name"] == "llama-cpp-sys-2":
        print(p["manifest_path"]); break
' || true)"
    fi
    if [[ -n "$manifest" && -d "$(dirname "$manifest")/llama.cpp" ]]; then
        dirname "$manifest"; return
    fi
    log "cargo metadata did not give llama-cpp-sys-2; falling back to registry glob" 
    # Prefer the version pinned in Cargo.lock, else the newest on disk.
    local want=""
    if [[ -f "$REPO_ROOT/Cargo.lock" ]]; then
        want="$(awk '/^name = "llama-cpp-sys-2"$/{getline; gsub(/version = |"/,""); print; exit}' "$REPO_ROOT/Cargo.lock")"
    fi
    local d
    if [[ -n "$want" ]]; then
        for d in "$HOME"/.cargo/registry/src/*/llama-cpp-sys-2-"$want"; do
            [[ -d "$d/llama.cpp" ]] && { echo "$d"; return; }
        done
    fi
    d="$(ls -d "$HOME"/.cargo/registry/src/*/llama-cpp-sys-2-* 2>/dev/null | sort -V | tail -n1 || true)"
    [[ -n "$d" && -d "$d/llama.cpp" ]] || die "cannot find llama-cpp-sys-2 sources (run 'cargo fetch' first)"
    echo "$d"
}

CRATE_DIR="$(locate_crate)"
CRATE_LLAMA="$CRATE_DIR/llama.cpp"
CRATE_VER="$(basename "$CRATE_DIR" | sed 's/^llama-cpp-sys-2-//')"
log "crate: llama-cpp-sys-2 $CRATE_VER at $CRATE_DIR"
[[ -f "$CRATE_LLAMA/CMakeLists.txt" && -d "$CRATE_LLAMA/common" ]] \
    || die "$CRATE_LLAMA lacks CMakeLists.txt or common/ (needed by the tools)"

# ---------------------------------------------------------------- 2. sdist
mkdir -p "$SDIST_DIR" "$TOOLS_HOME"
SDIST="$(ls "$SDIST_DIR"/llama_cpp_python-"$PY_VER".tar.gz 2>/dev/null || true)"
if [[ -z "$SDIST" ]] || ! tar tzf "$SDIST" >/dev/null 2>&1; then
    log "downloading llama-cpp-python==$PY_VER sdist into $SDIST_DIR (takes a few minutes)"
    python3 -m pip download --no-deps --no-binary :all: -d "$SDIST_DIR" "llama-cpp-python==$PY_VER" >&2
    SDIST="$SDIST_DIR/llama_cpp_python-$PY_VER.tar.gz"
    [[ -f "$SDIST" ]] || die "pip download did not produce $SDIST"
fi
SDIST_SHA="$(sha256sum "$SDIST" | cut -d' ' -f1)"

# ---------------------------------------------------------------- flags
CC_BIN="${CC:-$(command -v cc || command -v gcc)}"
CXX_BIN="${CXX:-$(command -v c++ || command -v g++)}"
case "$CPU_MODE" in
    crate)
        # Mirrors llama-cpp-sys-2 build.rs on x86_64-unknown-linux-gnu without
        # target-cpu=native (see header). The explicit GGML_* values equal
        # ggml's INS_ENB defaults; spelled out so the build does not depend on them.
        CPU_ARGS=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON
                  -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
        CFLAGS_X="-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64"
        [[ "$(uname -m)" == x86_64 ]] || { CPU_ARGS=(-DGGML_NATIVE=OFF); CFLAGS_X="-ffunction-sections -fdata-sections -fPIC"; }
        ;;
    native)
        CPU_ARGS=(-DGGML_NATIVE=ON)
        CFLAGS_X=""
        ;;
    *) die "TANDEM_LLAMA_CPU must be 'crate' or 'native' (got '$CPU_MODE')" ;;
esac
COMMON_ARGS=(
    -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
    -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN"
    -DCMAKE_C_FLAGS="$CFLAGS_X" -DCMAKE_CXX_FLAGS="$CFLAGS_X"
    -DBUILD_SHARED_LIBS=OFF
    -DGGML_OPENMP=ON            # Tandem: llama-cpp-2 features = ["openmp"]
    -DGGML_BLAS=OFF
    -DLLAMA_BUILD_COMMON=ON
    -DLLAMA_BUILD_TOOLS=ON      # our trimmed tools/CMakeLists.txt (2 tools only)
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_MTMD=OFF
    -DLLAMA_CURL=OFF            # as build.rs
)

# ---------------------------------------------------------------- stamp check
STAMP_CONTENT="recipe=$RECIPE_VERSION
crate=llama-cpp-sys-2 $CRATE_VER
crate_dir=$CRATE_DIR
crate_llama_version=$(grep -E 'set\(LLAMA_VERSION_(MAJOR|MINOR|PATCH)' "$CRATE_LLAMA/CMakeLists.txt" | grep -oE '[0-9]+\)' | tr -d ')' | paste -sd.)
sdist=llama-cpp-python $PY_VER sha256=$SDIST_SHA
cpu_mode=$CPU_MODE
cmake_args=${COMMON_ARGS[*]} ${CPU_ARGS[*]} $EXTRA_CMAKE_ARGS
cc=$("$CC_BIN" --version | head -n1)
cxx=$("$CXX_BIN" --version | head -n1)"

all_bins=1
for t in "${TOOLS[@]}"; do [[ -x "$BIN_DIR/$t" ]] || all_bins=0; done
if [[ "${LLAMA_TOOLS_FORCE:-0}" != 1 && $all_bins == 1 && -f "$STAMP" ]] \
   && [[ "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    log "up to date: $BIN_DIR/{${TOOLS[*]}} (stamp matches; LLAMA_TOOLS_FORCE=1 to rebuild)"
    exit 0
fi

# ---------------------------------------------------------------- 3. scratch tree
log "preparing scratch tree $SRC_DIR"
rm -rf "$SRC_DIR" "$BUILD_DIR"
mkdir -p "$SRC_DIR" "$BUILD_DIR" "$BIN_DIR"
cp -a "$CRATE_LLAMA/." "$SRC_DIR/"
chmod -R u+w "$SRC_DIR"

SDIST_ROOT="llama_cpp_python-$PY_VER/vendor/llama.cpp"
EXTRACT_TMP="$(mktemp -d "$TOOLS_HOME/extract.XXXXXX")"
trap 'rm -rf "$EXTRACT_TMP"' EXIT
tar xzf "$SDIST" -C "$EXTRACT_TMP" \
    "$SDIST_ROOT/tools/llama-bench" "$SDIST_ROOT/tools/batched-bench" \
    "$SDIST_ROOT/CMakeLists.txt" "$SDIST_ROOT/ggml/CMakeLists.txt" "$SDIST_ROOT/include/llama.h"
for d in llama-bench batched-bench; do
    rm -rf "$SRC_DIR/tools/$d"
    cp -a "$EXTRACT_TMP/$SDIST_ROOT/tools/$d" "$SRC_DIR/tools/$d"
done

ver_of() { # $1 = llama.cpp root -> "llama X.Y.Z / ggml A.B.C"
    local l g
    l="$(grep -E 'set\(LLAMA_VERSION_(MAJOR|MINOR|PATCH)' "$1/CMakeLists.txt" | grep -oE '[0-9]+\)' | tr -d ')' | paste -sd.)"
    g="$(grep -E 'set\(GGML_VERSION_(MAJOR|MINOR|PATCH)' "$1/ggml/CMakeLists.txt" | grep -oE '[0-9]+\)' | tr -d ')' | paste -sd.)"
    echo "llama $l / ggml $g"
}
V_CRATE="$(ver_of "$CRATE_LLAMA")"
V_SDIST="$(ver_of "$EXTRACT_TMP/$SDIST_ROOT")"
log "llama.cpp in crate : $V_CRATE"
log "llama.cpp in sdist : $V_SDIST (only tools/ front-ends are taken from it)"
if [[ "$V_CRATE" != "$V_SDIST" ]]; then
    log "NOTE: versions differ; tools are compiled against the crate's llama.h/common/"
fi
if ! diff -q <(grep -v 'define LLAMA_\(SESSION\|STATE_SEQ\)_VERSION' "$CRATE_LLAMA/include/llama.h") \
             <(grep -v 'define LLAMA_\(SESSION\|STATE_SEQ\)_VERSION' "$EXTRACT_TMP/$SDIST_ROOT/include/llama.h") >/dev/null; then
    log "NOTE: llama.h public API differs between crate and sdist (beyond state versions)"
fi

patch_tool_sources() {
    # Place for minimal sed patches if the sdist tools drift from the crate's
    # API. None are needed for llama-cpp-sys-2 0.1.161 + llama-cpp-python 0.3.36:
    # llama.h only differs in LLAMA_SESSION_VERSION/LLAMA_STATE_SEQ_VERSION, and
    # the common/ symbols the tools use (common_params, arg parsing, logging,
    # download/fit helpers, build-info) are unchanged.
    :
}
patch_tool_sources

# Only the two tools: the crate's tools/CMakeLists.txt add_subdirectory()s
# ~15 tools whose sources are not shipped.
cat > "$SRC_DIR/tools/CMakeLists.txt" <<'EOF'
# Trimmed by tandem scripts/build-llama-tools.sh: only the benchmark tools.
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(llama-bench)
EOF

# ---------------------------------------------------------------- 4. build
log "configuring ($CPU_MODE, $BUILD_TYPE)"
t0=$(date +%s)
# shellcheck disable=SC2086
cmake -S "$SRC_DIR" -B "$BUILD_DIR" "${COMMON_ARGS[@]}" "${CPU_ARGS[@]}" $EXTRA_CMAKE_ARGS \
    > "$TOOLS_HOME/cmake-configure.log" 2>&1 \
    || { tail -n 40 "$TOOLS_HOME/cmake-configure.log" >&2; die "cmake configure failed (log: $TOOLS_HOME/cmake-configure.log)"; }
log "building with -j$JOBS (log: $TOOLS_HOME/cmake-build.log)"
cmake --build "$BUILD_DIR" --config "$BUILD_TYPE" -j"$JOBS" --target "${TOOLS[@]}" \
    > "$TOOLS_HOME/cmake-build.log" 2>&1 \
    || { grep -E 'error|Error' "$TOOLS_HOME/cmake-build.log" | head -n 40 >&2; die "build failed (log: $TOOLS_HOME/cmake-build.log)"; }
t1=$(date +%s)

for t in "${TOOLS[@]}"; do
    src="$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -n1)"
    [[ -n "$src" ]] || die "built binary $t not found under $BUILD_DIR"
    install -m 0755 "$src" "$BIN_DIR/$t"
done
printf '%s\n' "$STAMP_CONTENT" > "$STAMP"
{
    echo "crate_llama_cpp=$V_CRATE"
    echo "sdist_llama_cpp=$V_SDIST"
    echo "build_seconds=$((t1 - t0))"
} > "$TOOLS_HOME/build-info.txt"
log "built in $((t1 - t0))s -> $BIN_DIR/{${TOOLS[*]}}"
