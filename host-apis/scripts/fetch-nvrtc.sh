#!/usr/bin/env bash
# Fetches NVRTC (the CUDA runtime compiler, no GPU needed) from its PyPI wheel
# into ~/.cache/wafer/nvrtc and prints the folder to put on LD_LIBRARY_PATH.
# Idempotent: a second run finds the library and only prints the folder.
#
#   export LD_LIBRARY_PATH="$(host-apis/scripts/fetch-nvrtc.sh):$LD_LIBRARY_PATH"
#   WAFER_REQUIRE_NVRTC=1 cargo test -p wafer-host-apis cuda_kernels_compile
set -euo pipefail

version="${WAFER_NVRTC_VERSION:-12.6.85}"
root="${WAFER_NVRTC_DIR:-$HOME/.cache/wafer/nvrtc}"
dest="$root/$version"
lib="$dest/nvidia/cuda_nvrtc/lib"

if ! ls "$lib"/libnvrtc.so* >/dev/null 2>&1; then
    mkdir -p "$root"
    tmp="$(mktemp -d "$root/download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        -d "$tmp" "nvidia-cuda-nvrtc-cu12==$version" >&2
    wheel="$(ls "$tmp"/nvidia_cuda_nvrtc_cu12-*.whl)"
    python3 -m zipfile -e "$wheel" "$tmp/unpacked" >&2
    rm -rf "$dest"
    mv "$tmp/unpacked" "$dest"
fi

# The wheel ships libnvrtc.so.12 only; cudarc also tries plain libnvrtc.so.
if [ ! -e "$lib/libnvrtc.so" ]; then
    target="$(cd "$lib" && ls libnvrtc.so.* | grep -v builtins | head -n1)"
    ln -sf "$target" "$lib/libnvrtc.so"
fi

echo "$lib"
