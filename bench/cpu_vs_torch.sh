#!/usr/bin/env bash
# Seconds per notebook-VAE epoch on ml-100k: vae_gpu's CPU backend against the notebooks'
# PyTorch eager loop, side by side on this machine (same architecture, batch 64, Adam 1e-3).
#   bench/cpu_vs_torch.sh [ML100K_DIR] [EPOCHS]     (VAE_BUILD_DIR picks the build, default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${MOVIELENS_DIR:-../shared/data}/ml-100k}
epochs=${2:-5}
threads=$(nproc)
py=""
for p in python3 /usr/bin/python3; do
  if "$p" -c "import torch" 2>/dev/null; then py=$p; break; fi
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OPENBLAS_NUM_THREADS=$threads "${VAE_BUILD_DIR:-build}"/vae_gpu train --model vae --data "$data" --epochs "$epochs" \
  --device cpu --quiet --out "$out" >/dev/null
ours=$(python3 -c "import json,sys; print(json.load(open('$out/summary.json'))['epoch_seconds_median'])")
echo "vae_gpu cpu      : $ours s/epoch (median of $epochs, $threads threads)"
if [ -z "$py" ]; then
  echo "pytorch          : not installed (pip install torch, or apt-get install python3-torch)"
  exit 0
fi
theirs=$("$py" bench/torch_notebook_vae.py --data "$data" --epochs "$epochs" --threads "$threads" |
         python3 -c "import json,sys; d=json.load(sys.stdin); print(d['epoch_seconds_median'], d['torch'])")
set -- $theirs
echo "pytorch $2 eager : $1 s/epoch (median of $epochs, $threads threads)"
python3 -c "print(f'ratio pytorch/vae_gpu: {$1/$ours:.2f}x')"
