#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (host code: the CPU
# oracle, loaders, CLI) and the kernels on the CPU CUDA emulator (emu.*: device memory is heap
# memory and static shared arrays globals, so an out-of-bounds kernel access is reported, as
# compute-sanitizer's memcheck would on a GPU; the emulator tells the sanitizer about its fiber
# stacks). Builds into build-sanitize/ (RelWithDebInfo, no benchmarks) and runs ctest there; the
# CLI tests run the sanitized vae_gpu and vae_gpu_emu too. The emulated tests run about ten times
# slower sanitized, so the long ones (their kernels are the short ones' too), the kernel variant
# programs and the reverse/shuffle schedule repeats are left out (EMU_EXCLUDE, a ctest -E regex;
# empty runs them all). Extra arguments go to ctest, e.g. scripts/sanitize_cpu.sh -R 'Loaders|Cli'.
# About 20 min to build and 10 min to test on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
dir=build-sanitize
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVAE_BUILD_BENCH=OFF -DVAE_BUILD_EMU=ON \
  -DVAE_SANITIZE=address,undefined >/dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)"
if [ -z "${MOVIELENS_DIR:-}" ] && [ -d ../shared/data ]; then  # as .ci/run: the real-data tests too
  MOVIELENS_DIR=$(cd ../shared/data && pwd)
  export MOVIELENS_DIR
fi
# protect_shadow_gap=0: the CUDA runtime maps memory where ASan keeps its shadow gap.
export ASAN_OPTIONS=${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# The long emulated tests: the list CMakeLists.txt keeps for the schedule repeats.
long=$(cat "$dir/emu_long_tests.txt")
exclude=${EMU_EXCLUDE-"^emu_(reverse|shuffle)\.|^emu\.KernelVariants\.|^emu\..*($long)"}
ctest --test-dir "$dir" --output-on-failure -j2 ${exclude:+-E "$exclude"} "$@"
