//! candle peer benchmark for Wafer's BERT encoder (`bench/embeddings`).
//!
//! Loads a sentence-transformers folder (all-MiniLM-L6-v2) with
//! `candle_transformers::models::bert::BertModel` (f32, CPU) and embeds the texts the way
//! sentence-transformers does: tokenize (pad to the longest text of the batch, truncate to
//! 256 tokens, the model's `max_seq_length` and the limit Wafer's encoder uses), forward with
//! the attention mask, mean-pool over the mask, L2-normalise.
//!
//! Measures sentences/s over all texts in batches of 1, 8 and 32 (tokenization included,
//! as in Wafer), best of REPEATS after one warm-up pass per batch size.
//!
//! Threads: candle's CPU matmul (gemm) uses `Parallelism::Rayon(n)` with
//! n = `candle_core::utils::get_num_threads()`, which reads `RAYON_NUM_THREADS` and falls back
//! to `num_cpus::get()`; the gemm work and candle-nn's softmax run on rayon's global pool,
//! which is also sized by `RAYON_NUM_THREADS`. Other element-wise ops are single-threaded.
//! So run with `RAYON_NUM_THREADS=2`.
//!
//! Usage: RAYON_NUM_THREADS=2 candle-bert MODEL_DIR TEXTS.json [REPEATS=3]
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use std::time::Instant;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Tokens per text, `[CLS]`/`[SEP]` included (`max_seq_length` in sentence_bert_config.json).
const MAX_TOKENS: usize = 256;

struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl Embedder {
    /// Embeds `texts` as one padded batch; returns the unit vectors and the real tokens fed.
    fn embed(&self, texts: &[&str]) -> candle_core::Result<(Vec<Vec<f32>>, usize)> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(candle_core::Error::msg)?;
        let ids: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let masks: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let tokens: usize = enc
            .iter()
            .map(|e| e.get_attention_mask().iter().sum::<u32>() as usize)
            .sum();
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?; // [b, t, h]
                                                                        // Mean over the real tokens only.
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, t, 1]
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // [b, h]
        let counts = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?; // [b, 1]
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norm)?;
        Ok((unit.to_vec2::<f32>()?, tokens))
    }
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: candle-bert MODEL_DIR TEXTS.json [REPEATS=3]");
        std::process::exit(2);
    }
    let dir = Path::new(&args[1]);
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&args[2]).expect("read texts")).expect("parse texts");
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let repeats: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(3);

    let device = Device::Cpu;
    let t0 = Instant::now();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("read config.json"))
            .expect("parse config.json");
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(candle_core::Error::msg)?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(candle_core::Error::msg)?;
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &device)? };
    let model = BertModel::load(vb, &config)?;
    let load_s = t0.elapsed().as_secs_f64();
    let embedder = Embedder {
        model,
        tokenizer,
        device,
    };

    let batches = [1usize, 8, 32];
    let mut per_s = Vec::new();
    let mut tokens_total = 0;
    for batch in batches {
        let run = || -> candle_core::Result<usize> {
            let mut tokens = 0;
            for chunk in texts.chunks(batch) {
                tokens += embedder.embed(chunk)?.1;
            }
            Ok(tokens)
        };
        run()?; // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let t = Instant::now();
            tokens_total = run()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        per_s.push(texts.len() as f64 / best);
    }
    let (first, _) = embedder.embed(&texts[..1])?;

    let result = serde_json::json!({
        "engine": "candle",
        "candle_version": "0.9.2",
        "threads": candle_core::utils::get_num_threads(),
        "model": dir,
        "load_s": load_s,
        "texts": texts.len(),
        "tokens": tokens_total,
        "max_tokens": MAX_TOKENS,
        "dim": first[0].len(),
        "repeats": repeats,
        "batches": batches,
        "sentences_per_s": per_s,
        "first_embedding_head": &first[0][..4],
    });
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    Ok(())
}
