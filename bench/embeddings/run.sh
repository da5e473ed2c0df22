#!/usr/bin/env bash
# Embeddings benchmark: Wafer's BERT encoder vs candle's BERT, same model, same
# texts, 2 threads, run back to back (Wafer, candle, Wafer, candle).
# Usage: bench/embeddings/run.sh [MODEL_DIR] [REPEATS=3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:-/root/.cache/wafer/models/all-minilm-l6-v2}
repeats=${2:-3}
threads=2
texts=$here/texts.json
wafer_target=/root/.cache/wafer/target
candle_target=/root/.cache/wafer/target-candle-native

echo "==> building Wafer's embed_bench" >&2
(cd "$root" && CARGO_TARGET_DIR=$wafer_target nice -n 10 \
  cargo build --release -p wafer-host-apis --example embed_bench >&2)
echo "==> building candle-bert" >&2
(cd "$root/bench/llm/candle-peer" && RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=$candle_target nice -n 10 \
  cargo build --release --bin candle-bert >&2)

wafer() { "$wafer_target/release/examples/embed_bench" "$model" "$texts" "$threads" "$repeats"; }
candle() { RAYON_NUM_THREADS=$threads "$candle_target/release/candle-bert" "$model" "$texts" "$repeats"; }

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in 1 2; do
  echo "==> round $round: wafer" >&2
  wafer
  echo "==> round $round: candle" >&2
  candle
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
