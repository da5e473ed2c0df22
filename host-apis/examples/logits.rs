//! Print the top logits after a token sequence, straight from the decoder
//! (for comparing with a reference implementation).
//!
//! Run with:
//! `cargo run --release -p wafer-host-apis --example logits -- MODEL.gguf 1,9690,198`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use wafer_host_apis::model::gguf::Gguf;
use wafer_host_apis::model::llama::{Llama, SeqStep};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = Gguf::open(Path::new(&args[0])).unwrap();
    let ids: Vec<u32> = args[1].split(',').map(|s| s.trim().parse().unwrap()).collect();
    let model = Llama::from_gguf(&file, 4096).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut kv = model.new_cache(64 << 20);
    let blocks = kv.reserve(ids.len()).unwrap();
    let step = SeqStep {
        blocks: &blocks,
        start: 0,
        tokens: &ids,
        logits: true,
    };
    let logits = model.forward(&mut kv, &[step], &pool).unwrap().remove(0);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    for &i in order.iter().take(8) {
        println!("{i}\t{:.4}", logits[i]);
    }
}
