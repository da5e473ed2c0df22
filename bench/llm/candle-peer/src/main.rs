//! candle peer benchmark for Wafer's LLM engine.
//!
//! Loads the same GGUF (SmolLM2-135M-Instruct Q4_1) with
//! `candle_transformers::models::quantized_llama` and measures:
//!   * prefill tok/s: one forward over the N prompt ids (fresh KV cache), best of R;
//!   * decode tok/s: after the prefill, G greedy tokens, one forward per token
//!     (argmax of the last logits, no sampler), best of R.
//! Prompt ids come from a JSON file (written by ../peers.py with llama.cpp's
//! tokenizer) so both peers process identical tokens.
//!
//! Usage: RAYON_NUM_THREADS=2 candle-peer MODEL.gguf PROMPT_IDS.json [GEN=128] [REPEATS=3]
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::time::Instant;

fn argmax(logits: &Tensor) -> u32 {
    let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: candle-peer MODEL.gguf PROMPT_IDS.json [GEN=128] [REPEATS=3]");
        std::process::exit(2);
    }
    let model_path = &args[1];
    let ids_json = std::fs::read_to_string(&args[2]).expect("read prompt ids");
    let parsed: serde_json::Value = serde_json::from_str(&ids_json).expect("parse prompt ids");
    let ids: Vec<u32> = parsed["ids"]
        .as_array()
        .expect("\"ids\" array")
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let gen: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(128);
    let repeats: usize = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(3);

    let device = Device::Cpu;
    let t0 = Instant::now();
    let mut file = std::fs::File::open(model_path).expect("open model");
    let content = gguf_file::Content::read(&mut file)?;
    let base = ModelWeights::from_gguf(content, &mut file, &device)?;
    let load_s = t0.elapsed().as_secs_f64();

    // Warm-up (page in weights, allocate).
    {
        let mut m = base.clone();
        let x = Tensor::new(&ids[..8.min(ids.len())], &device)?.unsqueeze(0)?;
        let _ = m.forward(&x, 0)?;
    }

    let mut best_prefill = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    let mut generated: Vec<u32> = Vec::new();
    for _ in 0..repeats {
        let mut m = base.clone(); // fresh KV cache, shared weights
        let x = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
        let t = Instant::now();
        let logits = m.forward(&x, 0)?;
        let mut next = argmax(&logits);
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());

        let mut out = vec![next];
        let t = Instant::now();
        for i in 0..gen {
            let x = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            let logits = m.forward(&x, ids.len() + i)?;
            next = argmax(&logits);
            out.push(next);
        }
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
        generated = out;
    }

    let result = serde_json::json!({
        "engine": "candle",
        "candle_version": "0.9.2",
        "threads": candle_core::utils::get_num_threads(),
        "model": model_path,
        "load_s": load_s,
        "prompt_tokens": ids.len(),
        "prefill_s_best": best_prefill,
        "prefill_tok_s": ids.len() as f64 / best_prefill,
        "decode_tokens": gen,
        "decode_s_best": best_decode,
        "decode_tok_s": gen as f64 / best_decode,
        "decode_method": "forward() one token at a time, argmax of last logits",
        "repeats": repeats,
        "first_generated_ids": &generated[..generated.len().min(16)],
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    Ok(())
}
