#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (host code: the CPU
# oracle, loaders, CLI; the GPU tests skip without a device, and compute-sanitizer covers the
# kernels on a GPU machine). Builds into build-sanitize/ (RelWithDebInfo, no benchmarks) and
# runs ctest there; the CLI tests run the sanitized vae_gpu too. Extra arguments go to ctest,
# e.g. scripts/sanitize_cpu.sh -R 'Loaders|Cli'. The CPU CUDA emulator's tests are left out: its fibers
# switch stacks by hand, which AddressSanitizer cannot follow. About 8 min to build and 5 min to test on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
dir=build-sanitize
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVAE_BUILD_BENCH=OFF -DVAE_BUILD_EMU=OFF \
  -DVAE_SANITIZE=address,undefined >/dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)"
if [ -z "${MOVIELENS_DIR:-}" ] && [ -d ../shared/data ]; then  # as .ci/run: the real-data tests too
  MOVIELENS_DIR=$(cd ../shared/data && pwd)
  export MOVIELENS_DIR
fi
# protect_shadow_gap=0: the CUDA runtime maps memory where ASan keeps its shadow gap.
export ASAN_OPTIONS=${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
ctest --test-dir "$dir" --output-on-failure -j2 "$@"
