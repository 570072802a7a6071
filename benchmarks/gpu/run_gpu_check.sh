#!/usr/bin/env bash
# Compiles the standalone CUDA harness and checks/benchmarks the kernels (no TensorFlow).
#
# Usage: benchmarks/gpu/run_gpu_check.sh [--compile-only]
# Skips (exit 0) when nvcc or a GPU is missing. --compile-only builds the harness for
# sm_80 without running it (useful on machines without a GPU).
# Environment: NVCC (default nvcc on PATH or /usr/local/cuda/bin/nvcc), PYTHON (python3),
# GFLA_HARNESS_ARCH (default: native when a GPU is present), REPEATS (20).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
python="${PYTHON:-$(command -v python3 || command -v python)}"

if [[ ! -x "$nvcc" ]]; then
  echo "SKIP: nvcc not found (set NVCC)"
  exit 0
fi
compile_only=0
[[ "${1:-}" == "--compile-only" ]] && compile_only=1
if [[ $compile_only == 0 ]] && ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU); then
  echo "SKIP: no CUDA GPU visible"
  exit 0
fi
arch="${GFLA_HARNESS_ARCH:-$([[ $compile_only == 1 ]] && echo sm_80 || echo native)}"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
"$nvcc" -std=c++17 -O2 -arch="$arch" -o "$build/harness" "$here/harness.cu"
echo "compiled harness for $arch with $("$nvcc" --version | tail -1)"
if [[ $compile_only == 1 ]]; then
  exit 0
fi
"$python" "$here/gpu_check.py" --harness "$build/harness" --repeats "${REPEATS:-20}"
