#!/usr/bin/env bash
# Wafer's two entry points.
#   ./dev.sh up     build everything and start a node with the examples deployed
#   ./dev.sh test   run every test (what CI runs, minus fmt and clippy)
# Needs only rustup/cargo, Node and Python; installs the rest itself.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

# One target dir outside the checkout, so fresh clones (and CI) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wafer/target}"

setup() {
  if ! rustc --print sysroot >/dev/null 2>&1 || [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
    echo "==> installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
  fi
}

build_examples() {
  echo "==> building the examples (wasm32-wasip2)"
  (cd examples && env -u CARGO_TARGET_DIR cargo build --release --target wasm32-wasip2 --quiet)
}

case "${1:-}" in
  up)
    setup
    echo "==> building wafer (release)"
    cargo build --release --quiet -p wafer-runtime
    build_examples
    data_dir="${WAFER_DATA_DIR:-$root/.wafer}"
    listen="${WAFER_LISTEN:-127.0.0.1:8080}"
    echo "==> starting a node on http://$listen (data in $data_dir; Ctrl-C stops it)"
    exec "$CARGO_TARGET_DIR/release/wafer" serve --listen "$listen" --data-dir "$data_dir" \
      --deploy examples/hello --deploy examples/tensor-mlp
    ;;
  test)
    setup
    # NVRTC from its PyPI wheel (no GPU needed): every CUDA kernel source must
    # compile, or the tests fail.
    echo "==> fetching NVRTC to compile the CUDA kernels"
    nvrtc_dir="$(host-apis/scripts/fetch-nvrtc.sh)"
    export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export WAFER_REQUIRE_NVRTC=1
    echo "==> cargo test (workspace)"
    cargo test --workspace --no-fail-fast
    build_examples
    echo "==> cargo test (examples, natively)"
    (cd examples && env -u CARGO_TARGET_DIR cargo test --quiet)
    ;;
  *)
    echo "usage: ./dev.sh up | ./dev.sh test" >&2
    exit 2
    ;;
esac
