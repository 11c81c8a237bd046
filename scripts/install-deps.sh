#!/usr/bin/env bash
# Installs the build and test prerequisites when missing (idempotent, quiet when all present):
# cmake, clang and libclang-dev for llama.cpp's bindings; the Python packages of the SDK tests;
# Claude Code (npm) for tests/python/test_claude_code.py.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# bindgen needs libclang.so
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need_apt+=(libclang-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing build prerequisites: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing build prerequisites: ${need_apt[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

py=${TANDEM_PYTHON:-python3}
if ! "$py" -c 'import openai, anthropic, pytest' >/dev/null 2>&1; then
  echo "installing Python test packages (openai, anthropic, pytest)"
  "$py" -m pip install -q --disable-pip-version-check openai anthropic pytest
fi

# Claude Code, pinned, under $TANDEM_HOME/npm (the test finds it there). npm does not run the
# package's postinstall (which puts the native binary in place), so run it here.
cc_version=2.1.197
cc_home="${TANDEM_HOME:-$HOME/.cache/tandem}/npm"
cc_bin="$cc_home/node_modules/.bin/claude"
if ! "$cc_bin" --version 2>/dev/null | grep -q "^$cc_version "; then
  echo "installing Claude Code $cc_version into $cc_home"
  mkdir -p "$cc_home"
  npm install --prefix "$cc_home" --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$cc_version" >/dev/null
  (cd "$cc_home/node_modules/@anthropic-ai/claude-code" && node install.cjs)
  "$cc_bin" --version | grep -q "^$cc_version " || { echo "Claude Code did not install" >&2; exit 1; }
fi
