#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages vae_gpu builds against; packages already present are
# skipped, so running it twice is cheap. The CUDA toolkit itself is expected to be installed
# (nvcc on PATH or under /usr/local/cuda).
set -euo pipefail

pkgs=(cmake ninja-build g++ pkg-config libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev
      libopenblas-dev python3 curl unzip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "install_deps: need root to install ${missing[*]}, and sudo is not installed: run this as root" >&2
      exit 1
    fi
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all packages present"
fi

# Optional test tools (VAE_TEST_EXTRAS=1, set by `scripts/setup.sh --tests`): PyTorch and NumPy
# for the parity and file-format tests. Best effort: without them those tests skip.
if [ "${VAE_TEST_EXTRAS:-0}" = 1 ]; then
  extras=()
  for p in python3-numpy python3-torch; do
    dpkg -s "$p" >/dev/null 2>&1 || extras+=("$p")
  done
  if ((${#extras[@]})); then
    echo "install_deps: installing test tools ${extras[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    { "${sudo_cmd[@]}" apt-get update -qq &&
      "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${extras[@]}"; } ||
      echo "install_deps: warning: could not install ${extras[*]}; the PyTorch/NumPy tests will skip" >&2
  fi
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install_deps: the CUDA toolkit (nvcc) was not found; install it from NVIDIA first" >&2
  exit 1
fi
