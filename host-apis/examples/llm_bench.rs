//! The engine's side of `bench/llm`: prefill and decode tokens/s on the
//! decoder directly (the method of `bench/llm/peers.py`: a 128-token prompt
//! on a fresh cache, then 128 greedy single-token steps, best of 3), then
//! aggregate decode tokens/s through the continuous-batching scheduler with
//! 1, 4, 8 and 16 concurrent generations (best of 2 after a warm-up
//! generation), each on the chat prompt that
//! `bench/llm/function_path.py` sends the `chat` function (same template,
//! same tokens), so the two paths run the same work. Prints JSON.
//!
//! Run with:
//! `cargo run --release -p wafer-host-apis --example llm_bench -- MODEL.gguf bench/llm/prompt_128.json [THREADS]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use wafer_host_apis::model::chat_template::ChatMessage;
use wafer_host_apis::model::gguf::Gguf;
use wafer_host_apis::model::llama::{Llama, SeqStep};
use wafer_host_apis::model::scheduler::collect;
use wafer_host_apis::model::{ModelConfig, Models, SamplingParams, sampler};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = Path::new(&args[0]);
    let prompt: Vec<u32> = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&args[1]).unwrap())
        .map(|v| v.get("ids").cloned().unwrap_or(v))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let gguf = Gguf::open(path).unwrap();
    let model = Llama::from_gguf(&gguf, 2048).unwrap();
    let decode_tokens = 128;

    let (mut best_prefill, mut best_decode) = (0f64, 0f64);
    for _ in 0..4 {
        let mut kv = model.new_cache(64 << 20);
        let blocks = kv.reserve(prompt.len() + decode_tokens + 1).unwrap();
        let t = Instant::now();
        let out = pool.install(|| {
            model.forward(
                &mut kv,
                &[SeqStep {
                    blocks: &blocks,
                    start: 0,
                    tokens: &prompt,
                    logits: true,
                }],
                &pool,
            )
        });
        let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
        let mut next = sampler::argmax(&out.unwrap()[0]);
        let t = Instant::now();
        for i in 0..decode_tokens {
            let step = SeqStep {
                blocks: &blocks,
                start: prompt.len() + i,
                tokens: &[next],
                logits: true,
            };
            let out = pool.install(|| model.forward(&mut kv, &[step], &pool)).unwrap();
            next = sampler::argmax(&out[0]);
        }
        let decode = decode_tokens as f64 / t.elapsed().as_secs_f64();
        best_prefill = best_prefill.max(prefill);
        best_decode = best_decode.max(decode);
    }

    let mut config = ModelConfig::at(path);
    config.max_context = Some(2048);
    config.max_batch = Some(16);
    let mut configs = BTreeMap::new();
    configs.insert("m".to_string(), config);
    let models = Models::load(&configs, Some(threads)).unwrap();
    let llm = models.llm("m").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut concurrent = BTreeMap::new();
    let mut step_ms = BTreeMap::new();
    let step_stats = || {
        let s = llm.replicas()[0].stats();
        (
            s.steps.load(std::sync::atomic::Ordering::Relaxed),
            s.step_ns.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    for streams in [1usize, 4, 8, 16] {
        // What examples/chat sends for function_path.py's request.
        let message = |role: &str, content: &str| ChatMessage {
            role: role.into(),
            content: content.into(),
        };
        let chat = llm
            .encode_chat(&[
                message("system", "You are a helpful assistant."),
                message(
                    "user",
                    "Write a very long, detailed essay about the history of the Roman Empire.",
                ),
            ])
            .unwrap();
        let params = SamplingParams {
            temperature: 0.0,
            max_tokens: decode_tokens,
            ..Default::default()
        };
        let run = || {
            let deadline = Instant::now() + Duration::from_secs(600);
            let t = Instant::now();
            let total: u32 = runtime.block_on(async {
                let mut rxs: Vec<_> = (0..streams)
                    .map(|i| {
                        llm.generate(&format!("t{i}"), chat.clone(), params.clone(), deadline)
                            .unwrap()
                    })
                    .collect();
                let mut total = 0;
                for rx in &mut rxs {
                    total += collect(rx).await.unwrap().usage.completion;
                }
                total
            });
            total as f64 / t.elapsed().as_secs_f64()
        };
        if streams == 1 {
            run(); // warm-up: a whole generation, as function_path.py's
        }
        let (steps0, ns0) = step_stats();
        // Best of 2, as function_path.py.
        concurrent.insert(streams.to_string(), run().max(run()));
        let (steps1, ns1) = step_stats();
        step_ms.insert(
            streams.to_string(),
            (ns1 - ns0) as f64 / 1e6 / (steps1 - steps0).max(1) as f64,
        );
    }
    let limit = 20e9 / model.bytes_per_decode() as f64;
    println!(
        "{}",
        serde_json::json!({
            "engine": "wafer",
            "threads": threads,
            "prompt_tokens": prompt.len(),
            "prefill_tok_s": best_prefill,
            "decode_tok_s": best_decode,
            "aggregate_decode_tok_s_by_streams": concurrent,
            "mean_step_ms_by_streams": step_ms,
            "bytes_per_decode_token": model.bytes_per_decode(),
            "decode_limit_tok_s_at_20GBps": limit,
        })
    );
}
