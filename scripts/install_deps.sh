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
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all packages present"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install_deps: the CUDA toolkit (nvcc) was not found; install it from NVIDIA first" >&2
  exit 1
fi
