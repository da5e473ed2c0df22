//! Generate from a GGUF model with the engine directly (no runtime, no
//! wasm): the baseline the function path is compared with, and a quick way
//! to see a model work.
//!
//! Run with:
//! `cargo run --release -p wafer-host-apis --example generate -- MODEL.gguf "prompt" [max_tokens] [--chat] [--streams N]`
//!
//! Prints the text, then prefill and decode tokens/s. With `--streams N`,
//! runs N identical generations at once and prints the aggregate rate.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wafer_host_apis::model::{ChatMessage, GenEvent, ModelConfig, Models, SamplingParams};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: generate MODEL.gguf PROMPT [MAX_TOKENS] [--chat] [--streams N]");
    let prompt = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "The capital of France is".into());
    let max_tokens: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let chat = args.iter().any(|a| a == "--chat");
    let streams: usize = args
        .iter()
        .position(|a| a == "--streams")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let threads: Option<usize> = std::env::var("WAFER_THREADS").ok().and_then(|s| s.parse().ok());

    let mut configs = BTreeMap::new();
    let mut config = ModelConfig::at(path);
    config.step_tokens = std::env::var("WAFER_STEP_TOKENS").ok().and_then(|s| s.parse().ok());
    configs.insert("m".to_string(), config);
    let started = Instant::now();
    let models = Models::load(&configs, threads).expect("load");
    eprintln!("loaded in {:?}", started.elapsed());
    let llm = models.llm("m").unwrap();
    let ids = if chat {
        llm.encode_chat(&[ChatMessage {
            role: "user".into(),
            content: prompt.clone(),
        }])
        .unwrap()
    } else {
        llm.encode_prompt(&prompt).unwrap()
    };
    eprintln!("prompt: {} tokens: {ids:?}", ids.len());
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    let start = Instant::now();
    let mut rxs: Vec<_> = (0..streams)
        .map(|i| {
            llm.generate(&format!("t{i}"), ids.clone(), params.clone(), deadline)
                .unwrap()
        })
        .collect();
    let mut first_token = None;
    let mut total = 0u32;
    let mut text = String::new();
    for (i, rx) in rxs.iter_mut().enumerate() {
        while let Some(event) = rx.recv().await {
            match event {
                GenEvent::Text { text: t, .. } => {
                    first_token.get_or_insert_with(|| start.elapsed());
                    if i == 0 {
                        text.push_str(&t);
                    }
                }
                GenEvent::Done { usage, finish } => {
                    total += usage.completion;
                    if i == 0 {
                        eprintln!("finish: {finish:?}, usage: {usage:?}");
                    }
                    break;
                }
                GenEvent::Failed { error, .. } => panic!("{error}"),
            }
        }
    }
    let elapsed = start.elapsed();
    println!("{text}");
    let ttft = first_token.unwrap_or(elapsed);
    let decode = elapsed.saturating_sub(ttft);
    eprintln!(
        "streams {streams}: first token {:.1} ms (prefill {:.0} tok/s), decode {:.1} tok/s per stream, aggregate {:.1} tok/s",
        ttft.as_secs_f64() * 1e3,
        ids.len() as f64 * streams as f64 / ttft.as_secs_f64(),
        (total as f64 / streams as f64 - 1.0) / decode.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
    );
}
