#!/usr/bin/env bash
# The whole GPU acceptance in one call, for a GPU machine lent by the minute that has the CUDA
# toolkit but none of Debian's packages and no network.
#
# On the build machine, before the tree is copied over:
#   scripts/gpu_accept.sh --prepare
#     .devkit/  GoogleTest, CLI11 and nlohmann-json as a CMake prefix (../shared/tools/device_kit.sh)
#     .mldata/  the MovieLens copies the real-data tests and benchmarks read (from MOVIELENS_DIR,
#               default ../shared/data); both folders are git-ignored and must travel with the tree
# On the GPU machine:
#   COMMIT=<sha> scripts/gpu_accept.sh DEST
#     runs scripts/gpu_check.sh (all stages) under BUDGET seconds (default 540) with MOVIELENS_DIR
#     pointing at .mldata, then leaves two files in DEST: summary.txt (the table) and
#     gpu_check_logs.tgz (every log, the bench JSON, run summaries), both also written after every
#     stage (result INCOMPLETE until the end). Other gpu_check variables
#     (STAGES, BENCH_ARGS, SAN_SHARDS, ...) pass through; BENCH_ARGS defaults to --quick.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${1:-}" ] && [ "$1" != --prepare ]; then  # DEST relative to the caller's directory
  mkdir -p "$1" && DEST_ABS=$(cd "$1" && pwd) || exit 1
fi
cd "$ROOT" || exit 1

if [ "${1:-}" = --prepare ]; then
  set -e
  src=${MOVIELENS_DIR:-../shared/data}
  if [ -x ../shared/tools/device_kit.sh ]; then
    ../shared/tools/device_kit.sh .devkit
  else
    echo "gpu_accept: ../shared/tools/device_kit.sh not found; .devkit not made" >&2
  fi
  rm -rf .mldata && mkdir -p .mldata
  for d in ml-100k ml-latest-small; do
    [ -d "$src/$d" ] && cp -r "$src/$d" .mldata/
  done
  du -sh .devkit .mldata 2>/dev/null || true
  exit 0
fi

[ -n "${1:-}" ] || { echo "usage: scripts/gpu_accept.sh --prepare | scripts/gpu_accept.sh DEST" >&2; exit 2; }
dest=$DEST_ABS
work=$(mktemp -d /tmp/gpu_check.XXXXXX)
[ -d .mldata/ml-100k ] && export MOVIELENS_DIR="$ROOT/.mldata"
export BUDGET=${BUDGET:-540} BENCH_ARGS=${BENCH_ARGS:---quick}
# The table and logs so far land in DEST after every stage: a call stopped from outside (a lease
# shorter than the budget) still brings them back.
export PARTIAL_DEST=$dest
scripts/gpu_check.sh "$work/out"
rc=$?
cp "$work/out/summary.txt" "$dest/" 2>/dev/null
# Run directories hold model files (tens of MB at the ml-20m shape): leave those out.
tar -czf "$dest/gpu_check_logs.tgz" -C "$work" --exclude='*.safetensors' --exclude='*.npy' out
exit "$rc"
