#!/usr/bin/env bash
# What the GEMM precision costs in accuracy: each model trained with --precision fp32, tf32 and
# bf16 on the GPU, next to the exact GEMMs (the default; the CPU gives the same numbers, so they
# run there) and to how much the metrics move between seeds of the exact run. One markdown table.
#
#   bench/precision_accuracy.sh [DATA]   (an ml-100k directory by default; any --data value)
# Environment:
#   BIN        the binary of the reduced-precision runs (build/vae_gpu; build/vae_gpu_emu runs them
#              on the CPU CUDA emulator, whose cuBLAS rounds GEMM inputs to 10 / 7 mantissa bits
#              for TF32 / BF16 as tensor cores do but sums in double: there the tf32 and bf16
#              columns isolate the input rounding, and fp32 gives the exact numbers)
#   CPU_BIN    the binary of the exact runs (build/vae_gpu)
#   MODELS     "vae autorec multvae cdae"; each with its natural protocol (seed, seed, heldout,
#              heldout) and EPOCHS_SEED (20) or EPOCHS_HELDOUT (50) epochs
#   PRECISIONS "fp32 tf32 bf16"
#   SEEDS      exact runs for the seed spread ("1 2 3 4 5"); the precision runs use the first
#   JOBS       runs at a time (2)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${MOVIELENS_DIR:-../shared/data}/ml-100k}
bin=${BIN:-build/vae_gpu}
cpu_bin=${CPU_BIN:-build/vae_gpu}
models=${MODELS:-vae autorec multvae cdae}
precisions=${PRECISIONS:-fp32 tf32 bf16}
seeds=${SEEDS:-1 2 3 4 5}
jobs=${JOBS:-2}
case $data in
  synthetic*) ;;
  *) [ -e "$data" ] || { echo "precision_accuracy: no data at $data" >&2; exit 2; } ;;
esac
for b in "$bin" "$cpu_bin"; do
  [ -x "$b" ] || { echo "precision_accuracy: $b is not built" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

protocol_of() { case $1 in multvae | cdae) echo heldout ;; *) echo seed ;; esac; }
epochs_of() {
  if [ "$(protocol_of "$1")" = heldout ]; then echo "${EPOCHS_HELDOUT:-50}"; else echo "${EPOCHS_SEED:-20}"; fi
}

# One line per run: its directory name and the command, run JOBS at a time.
first_seed=${seeds%% *}
for m in $models; do
  common="train --model $m --protocol $(protocol_of "$m") --epochs $(epochs_of "$m") --data $data --quiet"
  for s in $seeds; do
    echo "$m.exact.$s $cpu_bin $common --device cpu --precision exact --seed $s"
  done
  for p in $precisions; do
    echo "$m.$p.$first_seed $bin $common --device cuda --precision $p --seed $first_seed"
  done
done >"$out/runs.txt"
echo "precision_accuracy: $(wc -l <"$out/runs.txt") runs, $jobs at a time ($bin for the reduced precisions)" >&2
# shellcheck disable=SC2016
xargs -P "$jobs" -L 1 sh -c 'name=$1; shift; "$@" --out "'"$out"'/$name" >"'"$out"'/$name.log" 2>&1 ||
  { echo "precision_accuracy: $name failed:" >&2; tail -5 "'"$out"'/$name.log" >&2; exit 255; }' _ \
  <"$out/runs.txt"

python3 - "$out" "$first_seed" "$models" "$precisions" "$seeds" <<'PY'
import json, statistics, sys
out, first, models, precisions, seeds = sys.argv[1], sys.argv[2], *[a.split() for a in sys.argv[3:6]]
load = lambda name: json.load(open(f"{out}/{name}/summary.json"))
print("| model (protocol, epochs) | metric | exact | seed sd (exact, %d seeds) | %s |"
      % (len(seeds), " | ".join(f"{p} (Δ)" for p in precisions)))
print("|---|---|---|---|" + "---|" * len(precisions))
for m in models:
    ref = load(f"{m}.exact.{first}")
    spread = [load(f"{m}.exact.{s}")["metrics"] for s in seeds]
    runs = [load(f"{m}.{p}.{first}") for p in precisions]
    label = f"{m} ({ref['protocol']}, {ref['epochs']})"
    for k, v in ref["metrics"].items():
        if v is None or k.startswith("coverage"):
            continue
        sd = statistics.stdev(r[k] for r in spread) if len(spread) > 1 else float("nan")
        cells = " | ".join(f"{r['metrics'][k]:.4f} ({r['metrics'][k] - v:+.4f})" for r in runs)
        print(f"| {label} | {k} | {v:.4f} | {sd:.4f} | {cells} |")
        label = ""
PY
