#!/usr/bin/env bash
# Every model on ml-100k with its natural protocol, one summary line each (CPU or GPU, as
# --device says). Used for the figures in issue notes and bench/RESULTS.md.
#   bench/ml100k_models.sh [ML100K_DIR] [--device cpu|cuda] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${MOVIELENS_DIR:-../shared/data}/ml-100k}
device=${2:-cpu}
bin=${3:-build}/vae_gpu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {  # name, then vae_gpu train flags
  local name=$1
  shift
  "$bin" train --data "$data" --device "$device" --quiet --out "$out/$name" "$@" >/dev/null
  python3 - "$out/$name/summary.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = " ".join(f"{k}={v:.4f}" for k, v in s["metrics"].items() if v is not None)
print(f"{sys.argv[2]:<22} {s['protocol']:<8} best_epoch={s['best_epoch']:<4} "
      f"s/epoch={s['epoch_seconds_median']:.3f} {m}")
PY
}
run vae-seed --model vae --epochs 20
run popularity-seed --model popularity
run autorec-seed --model autorec --epochs 20
run autorec-dense-seed --model autorec --loss dense --epochs 20
run multvae-heldout --model multvae --protocol heldout --epochs 100 --patience 20
run cdae-heldout --model cdae --protocol heldout --epochs 100 --patience 20
run ease-heldout --model ease --protocol heldout
run popularity-heldout --model popularity --protocol heldout
run i-autorec-u1 --model i-autorec --protocol ratings --fold 1 --epochs 60
run autorec-u1 --model autorec --protocol ratings --fold 1 --epochs 60
run popularity-u1 --model popularity --protocol ratings --fold 1
