#!/usr/bin/env bash
# A dry run of scripts/gpu_check.sh on a machine without a GPU, to try the script itself (its
# stages, budget arithmetic, log parsing and table) before a lent GPU's minutes are spent on it.
# The binaries are the CPU CUDA emulator's (build/*_emu, from the default build), compute-sanitizer
# and nvidia-smi are stand-ins that run the program and print a clean summary, and the data is a
# small synthetic set. Nothing it prints is a GPU figure.
#
# Usage: scripts/gpu_check_dry.sh [OUT_DIR (/tmp/gpu_check_dry)]
#   STAGES (default "sanitize main bench svd"; ctest, torch and scale need the real build, PyTorch
#   with CUDA, or hours on the emulator), BUILD (the emulator build, default build/).
# Exit 0 when the rows the stages fill came out parsed: sanitizers 0 errors, the main job's metrics
# agreeing, graph = launches, bench rc 0, the SVD RMSE. The table's verdict itself says FAIL: the
# kernel-variant programs are not there (below).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/gpu_check_dry}
EMU=${BUILD:-$ROOT/build}
for b in vae_gpu_emu vae_tests_emu vae_gpu_bench_emu; do
  [ -x "$EMU/$b" ] || { echo "gpu_check_dry: $EMU/$b not built (the default build makes it)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/gpu_check_dry.XXXXXX)
mkdir -p "$work/build/bench" "$work/shims"
ln -s "$EMU/vae_gpu_emu" "$work/build/vae_gpu"
ln -s "$EMU/vae_tests_emu" "$work/build/vae_tests"
ln -s "$EMU/vae_gpu_bench_emu" "$work/build/bench/vae_gpu_bench"
# The kernel-variant programs run at their full sizes there, which the emulator does not finish
# in the stage's minutes (ctest runs them small: emu.KernelVariants.*): left out, so that row
# reads "rc 127" at once.
cat >"$work/shims/compute-sanitizer" <<'SH'
#!/usr/bin/env bash
tool=memcheck
while [[ ${1:-} == --* ]]; do
  case $1 in --tool) tool=$2; shift 2 ;; --error-exitcode) shift 2 ;; *) shift ;; esac
done
"$@"; rc=$?
if [ "$tool" = racecheck ]; then echo "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
else echo "========= ERROR SUMMARY: 0 errors"; fi
exit $rc
SH
printf '#!/bin/sh\necho "CPU CUDA emulator (dry run), n/a, n/a"\n' >"$work/shims/nvidia-smi"
chmod +x "$work/shims/"*
rm -rf "$OUT"
PATH="$work/shims:$PATH" BUILD_DIR="$work/build" STAGES="${STAGES:-sanitize main bench svd}" EPOCHS=2 \
  BENCH_ARGS=--smoke SANITIZER_FILTER='CudaOps.Fill*:CudaOps.Axpy*:CudaOps.Topk*' BUDGET=0 COMMIT=dry-run \
  "$ROOT/scripts/gpu_check.sh" "$OUT" "synthetic:users=300,items=400,ratings=15000" >"$OUT.log" 2>&1
echo "gpu_check.sh exit $? (the table's verdict; see above why FAIL is expected); log $OUT.log"
cat "$OUT/summary.txt"
rm -rf "$work"
# The rows each stage fills, parsed as the real run parses them.
bad=0
expect() {  # ROW REGEX
  local line
  line=$(grep -E "^$1 " "$OUT/summary.txt" | head -n 1)
  if [[ $line =~ $2 ]]; then echo "ok    $1"; else echo "WRONG $1: wanted /$2/"; bad=1; fi
}
want() { [[ " ${STAGES:-sanitize main bench svd} " == *" $1 "* ]]; }
if want sanitize; then
  expect memcheck '0 errors; tests passed [1-9][0-9]*, failed 0, skipped 0; rc per shard: 0 0 0$'
  expect racecheck '0 errors; tests passed [1-9][0-9]*, failed 0, skipped 0; rc per shard: 0 0 0$'
fi
if want main; then
  expect 'metrics agree \(3 dp\)' ' yes, .*ndcg@20=[0-9.]+.*\(max \|diff\| 0\)$'
  expect 'graph = launches' ' yes, bit-identical metrics$'
  expect 'graph steps' ' [0-9]+ captured, [0-9]+ replayed without capture \([0-9]+ graph nodes per step'
  expect 'cuda speed-up' ' [0-9.e+-]+x$'
  expect 'compare cuda' ' rc 0, [1-9][0-9]* models in compare.csv'
fi
if want bench; then
  expect bench ' rc 0, [1-9][0-9]* cases'
  expect 'graph branches' ' vae epoch, .* ms one stream'
fi
want svd && expect 'svd 5-fold cuda' ' svd RMSE [0-9.]+ ± [0-9.]+, .*svdpp RMSE [0-9.]+'
exit "$bad"
