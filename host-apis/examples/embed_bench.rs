//! The engine's side of `bench/embeddings`: sentences/s of the BERT encoder
//! through the public model API ([`Models::load`] and the embedder handle,
//! i.e. the worker thread `wafer:ai/embeddings` calls), over the same texts
//! and in the same way as `bench/llm/candle-peer/src/bin/bert.rs`: all texts
//! in batches of 1, 8 and 32, one warm-up pass per batch size, best of
//! REPEATS. Prints JSON.
//!
//! Run with:
//! `cargo run --release -p wafer-host-apis --example embed_bench -- MODEL_DIR bench/embeddings/texts.json [THREADS=2] [REPEATS=3]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use wafer_host_apis::model::{Embedder, ModelConfig, Models};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(&args[0]);
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);

    let t0 = Instant::now();
    let mut configs = BTreeMap::new();
    configs.insert("m".to_string(), ModelConfig::at(dir));
    let models = Models::load(&configs, Some(threads)).unwrap();
    let embedder: &Embedder = models.embedder("m").unwrap();
    let load_s = t0.elapsed().as_secs_f64();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One request at a time, so each call is exactly one batch on the worker.
    let embed = |chunk: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(600);
        runtime.block_on(embedder.embed(chunk.to_vec(), deadline)).unwrap()
    };

    let batches = [1usize, 8, 32];
    let mut per_s = Vec::new();
    let mut tokens = 0;
    for batch in batches {
        let run = || texts.chunks(batch).map(|c| embed(c).1).sum::<usize>();
        run(); // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let t = Instant::now();
            tokens = run();
            best = best.min(t.elapsed().as_secs_f64());
        }
        per_s.push(texts.len() as f64 / best);
    }
    let (first, _) = embed(&texts[..1]);

    let result = serde_json::json!({
        "engine": "wafer",
        "threads": threads,
        "model": dir,
        "load_s": load_s,
        "texts": texts.len(),
        "tokens": tokens,
        "max_tokens": embedder.max_tokens(),
        "dim": embedder.dim(),
        "repeats": repeats,
        "batches": batches,
        "sentences_per_s": per_s,
        "first_embedding_head": &first[0][..4],
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
