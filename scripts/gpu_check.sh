#!/usr/bin/env bash
# The GPU acceptance check, for a machine with an NVIDIA GPU (sm_90 by default):
#   1. configure (sm_90, the .devkit prefix when present) and build with Ninja;
#   2. the whole ctest suite (real-data tests read MOVIELENS_DIR when set);
#   3. compute-sanitizer memcheck and racecheck over vae_tests --gtest_filter='Cuda*';
#   4. the main job (vae_gpu --epochs 20) on --device cuda and --device cpu, metric lines of both;
#   5. a summary table, printed last.
# Every stage runs even when an earlier one fails (except after a failed build); the exit
# status is 0 only when all of them pass. Logs go to OUT_DIR.
#
# Usage: scripts/gpu_check.sh [OUT_DIR (./gpu_check_out)] [DATA (synthetic)]
# Environment: MOVIELENS_DIR, BUILD_DIR (build-gpu-check), EPOCHS (20), CUDA_ARCHS (90),
#              SANITIZER_TIMEOUT seconds per sanitizer run (3600).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-./gpu_check_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
DATA=${2:-synthetic}
BUILD=${BUILD_DIR:-$ROOT/build-gpu-check}
EPOCHS=${EPOCHS:-20}
ARCHS=${CUDA_ARCHS:-90}
SAN_TIMEOUT=${SANITIZER_TIMEOUT:-3600}
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

say() { printf '\n== %s\n' "$*"; }
ok=1

# ---- 1. configure and build -------------------------------------------------------------
say "configure + build ($BUILD, sm_$ARCHS) -> $OUT/build.log"
cmake_args=(-S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
            -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DVAE_BUILD_BENCH=OFF)
[ -d "$ROOT/.devkit" ] && cmake_args+=(-DCMAKE_PREFIX_PATH="$ROOT/.devkit")
command -v nvcc >/dev/null && cmake_args+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
build_status=FAILED
t0=$(date +%s)
if cmake "${cmake_args[@]}" >"$OUT/build.log" 2>&1 && ninja -C "$BUILD" >>"$OUT/build.log" 2>&1; then
  build_status="ok ($(( $(date +%s) - t0 )) s)"
else
  ok=0
  tail -n 30 "$OUT/build.log"
fi

gpu_name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
[ -n "$gpu_name" ] || gpu_name="none found by nvidia-smi"
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || commit="$commit (+ uncommitted changes)"

ctest_line="not run"; memcheck_line="not run"; racecheck_line="not run"
spe_cpu="n/a"; spe_cuda="n/a"; speedup="n/a"; metrics_cpu="n/a"; metrics_cuda="n/a"

if [ "$build_status" != FAILED ]; then
  # ---- 2. the whole test suite ----------------------------------------------------------
  say "ctest (MOVIELENS_DIR=${MOVIELENS_DIR:-unset}) -> $OUT/ctest.log"
  ctest --test-dir "$BUILD" --output-on-failure -j4 >"$OUT/ctest.log" 2>&1
  ctest_rc=$?
  total=$(grep -oE 'tests failed out of [0-9]+' "$OUT/ctest.log" | grep -oE '[0-9]+$' | tail -n 1)
  failed=$(grep -oE '[0-9]+ tests failed out of' "$OUT/ctest.log" | grep -oE '^[0-9]+' | tail -n 1)
  skipped=$(grep -cE '\(Skipped\)' "$OUT/ctest.log")
  total=${total:-0}; failed=${failed:-0}
  passed=$(( total - failed - skipped ))
  ctest_line="run $total, passed $passed, failed $failed, skipped $skipped"
  grep -E '\(Failed\)|\(Timeout\)|\(SEGFAULT\)|Exception' "$OUT/ctest.log" | head -n 20
  [ "$ctest_rc" -eq 0 ] || ok=0

  # ---- 3. compute-sanitizer over the CUDA tests ------------------------------------------
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
      log="$OUT/sanitizer_$tool.log"
      say "compute-sanitizer --tool $tool vae_tests --gtest_filter='Cuda*' -> $log"
      timeout "$SAN_TIMEOUT" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$BUILD/vae_tests" --gtest_filter='Cuda*' >"$log" 2>&1
      rc=$?
      # memcheck: "ERROR SUMMARY: N errors"; racecheck: "RACECHECK SUMMARY: … (N errors, M warnings)".
      errs=$(grep -oE 'ERROR SUMMARY: [0-9]+|\([0-9]+ errors' "$log" | grep -oE '[0-9]+' | tail -n 1)
      tests=$(grep -oE '\[  PASSED  \] [0-9]+|\[  FAILED  \] [0-9]+ test' "$log" | tr '\n' ' ')
      line="${errs:-?} errors, rc $rc; $tests"
      [ "$rc" -eq 124 ] && line="TIMEOUT after $SAN_TIMEOUT s; $line"
      [ "$rc" -eq 0 ] && [ "${errs:-0}" = 0 ] || { ok=0; grep -m 20 -E '^========= (Invalid|Race|Error|Program hit)' "$log"; }
      [ "$tool" = memcheck ] && memcheck_line=$line || racecheck_line=$line
    done
  else
    memcheck_line="compute-sanitizer not found"; racecheck_line=$memcheck_line; ok=0
  fi

  # ---- 4. the main job on both devices --------------------------------------------------
  # Seconds per epoch: mean of the "(X s)" training times of the model's epoch lines.
  per_epoch() {
    tr '\r' '\n' <"$1" | awk '/^Best epoch/ { exit } /^Epoch \[/ && match($0, /\(([0-9.]+) s\)/) {
      s = substr($0, RSTART + 1, RLENGTH - 4); sum += s; n++ } END { if (n) printf "%.3f", sum / n; else print "n/a" }'
  }
  for dev in cuda cpu; do
    log="$OUT/main_$dev.log"
    say "vae_gpu --epochs $EPOCHS --device $dev --data $DATA -> $log"
    t0=$(date +%s.%N)
    "$BUILD/vae_gpu" --epochs "$EPOCHS" --device "$dev" --data "$DATA" >"$log" 2>"$OUT/main_$dev.err"
    rc=$?
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    [ "$rc" -eq 0 ] || { ok=0; tail -n 5 "$OUT/main_$dev.err"; }
    line=$(grep -m 1 'final metrics' "$log" || echo "none (rc $rc)")
    echo "$dev: $line"
    if [ "$dev" = cuda ]; then metrics_cuda=$line; spe_cuda="$(per_epoch "$log") (wall $wall s, rc $rc)"
    else metrics_cpu=$line; spe_cpu="$(per_epoch "$log") (wall $wall s, rc $rc)"; fi
  done
  a=${spe_cpu%% *}; b=${spe_cuda%% *}
  speedup=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", a / b; else print "n/a" }')
fi

# ---- 5. summary (last) --------------------------------------------------------------------
say "summary"
row() { printf '%-22s %s\n' "$1" "$2"; }
row "commit" "$commit"
row "GPU" "$gpu_name"
row "build" "$build_status"
row "ctest" "$ctest_line"
row "memcheck (Cuda*)" "$memcheck_line"
row "racecheck (Cuda*)" "$racecheck_line"
row "s/epoch cpu" "$spe_cpu"
row "s/epoch cuda" "$spe_cuda"
row "cuda speed-up" "$speedup"
row "data" "$DATA, $EPOCHS epochs"
row "logs" "$OUT"
row "result" "$([ "$ok" = 1 ] && echo PASS || echo FAIL)"
[ "$ok" = 1 ]
