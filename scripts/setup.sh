#!/usr/bin/env bash
# One-step set-up: Debian packages, configure (Release, Ninja) and build into ./build.
# --tests (first argument) also installs the optional test tools (PyTorch, NumPy).
# Other arguments go to cmake's configure step, e.g. -DCMAKE_CUDA_ARCHITECTURES="80;90".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --tests ]; then
  export VAE_TEST_EXTRAS=1
  shift
fi
scripts/install_deps.sh
if ! command -v nvcc >/dev/null 2>&1; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -G Ninja "$@" >/dev/null
cmake --build build -j "$jobs"
