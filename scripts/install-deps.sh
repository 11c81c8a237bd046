#!/usr/bin/env bash
# Installs the build and test prerequisites when missing (idempotent, quiet when all present):
# cmake, clang and libclang-dev for llama.cpp's bindings; the Python packages of the SDK test.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
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
