//! A tiny random-weight decoder, written as a GGUF file by the test itself,
//! covers what the real model is too slow or too well-behaved for: both
//! architectures (llama's adjacent-pair RoPE; qwen2's NeoX RoPE and Q/K/V
//! biases), a batch smaller than the queue, a cache that holds one
//! sequence at a time, queue bounds, and malformed files.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wafer_host_apis::model::scheduler::collect;
use wafer_host_apis::model::{EngineError, ModelConfig, Models, SamplingParams};

const DIM: usize = 64;
const HEADS: u32 = 4;
const KV_HEADS: u32 = 2;
const FFN: usize = 128;
const LAYERS: usize = 2;
const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// GPT-2's byte-to-character table: every byte is one token.
fn byte_tokens() -> Vec<String> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    cs.into_iter().map(|c| char::from_u32(c).unwrap().to_string()).collect()
}

/// Deterministic pseudo-random weights in [-scale, scale].
fn weights(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Writes the GGUF file and returns its tensors (name, dims innermost first,
/// values), so the same weights can be written in other layouts.
fn write_gguf(path: &Path, arch: &str) -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let mut tokens = byte_tokens();
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    let vocab = tokens.len();
    let mut types = vec![1i32; 256];
    types.extend([3, 3, 3]);
    let im_end = (vocab - 1) as u32;
    let key = |k: &str| format!("{arch}.{k}");
    let meta: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str(arch.into())),
        (key("block_count"), Meta::U32(LAYERS as u32)),
        (key("context_length"), Meta::U32(256)),
        (key("embedding_length"), Meta::U32(DIM as u32)),
        (key("feed_forward_length"), Meta::U32(FFN as u32)),
        (key("attention.head_count"), Meta::U32(HEADS)),
        (key("attention.head_count_kv"), Meta::U32(KV_HEADS)),
        (key("attention.layer_norm_rms_epsilon"), Meta::F32(1e-5)),
        (key("rope.freq_base"), Meta::F32(10000.0)),
        ("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Meta::Str("default".into())),
        ("tokenizer.ggml.tokens".into(), Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32s(types)),
        ("tokenizer.ggml.merges".into(), Meta::Strs(Vec::new())),
        ("tokenizer.ggml.eos_token_id".into(), Meta::U32(im_end)),
        ("tokenizer.ggml.add_bos_token".into(), Meta::Bool(false)),
    ];
    let kv_dim = DIM / HEADS as usize * KV_HEADS as usize;
    // (name, dims innermost first, values); every tensor F32.
    let mut tensors: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
    let mut seed = 1;
    let mut add = |name: String, dims: Vec<u64>, scale: f32| {
        let n = dims.iter().product::<u64>() as usize;
        seed += 1;
        let values = if scale == 0.0 {
            vec![1.0; n]
        } else {
            weights(n, seed, scale)
        };
        tensors.push((name, dims, values));
    };
    add("token_embd.weight".into(), vec![DIM as u64, vocab as u64], 1.0);
    add("output_norm.weight".into(), vec![DIM as u64], 0.0);
    for l in 0..LAYERS {
        let b = |t: &str| format!("blk.{l}.{t}");
        add(b("attn_norm.weight"), vec![DIM as u64], 0.0);
        add(b("attn_q.weight"), vec![DIM as u64, DIM as u64], 0.3);
        add(b("attn_k.weight"), vec![DIM as u64, kv_dim as u64], 0.3);
        add(b("attn_v.weight"), vec![DIM as u64, kv_dim as u64], 0.3);
        if arch == "qwen2" {
            add(b("attn_q.bias"), vec![DIM as u64], 0.1);
            add(b("attn_k.bias"), vec![kv_dim as u64], 0.1);
            add(b("attn_v.bias"), vec![kv_dim as u64], 0.1);
        }
        add(b("attn_output.weight"), vec![DIM as u64, DIM as u64], 0.3);
        add(b("ffn_norm.weight"), vec![DIM as u64], 0.0);
        add(b("ffn_gate.weight"), vec![DIM as u64, FFN as u64], 0.3);
        add(b("ffn_up.weight"), vec![DIM as u64, FFN as u64], 0.3);
        add(b("ffn_down.weight"), vec![FFN as u64, DIM as u64], 0.3);
    }

    let mut out = Vec::new();
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        string(&mut out, k);
        match v {
            Meta::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Meta::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Meta::Bool(x) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*x));
            }
            Meta::Str(x) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, x);
            }
            Meta::Strs(xs) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    string(&mut out, x);
                }
            }
            Meta::I32s(xs) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    out.extend(x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, dims, values) in &tensors {
        string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(offset.to_le_bytes());
        offset += (values.len() * 4).next_multiple_of(32) as u64;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    for (_, _, values) in &tensors {
        for v in values {
            out.extend(v.to_le_bytes());
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
    }
    std::fs::write(path, out).unwrap();
    tensors
}

/// The same model as a Hugging Face folder: `config.json`, one
/// `model.safetensors` (Hugging Face names and `[out, in]` shapes),
/// `tokenizer.json` and `tokenizer_config.json`. A GGUF llama file's Q/K rows
/// were permuted by llama.cpp's converter so that RoPE rotates adjacent
/// pairs; a Hugging Face checkpoint rotates halves, so for llama the rows go
/// back: Hugging Face row `j * hd/2 + i` of a head is GGUF row `2i + j`.
fn write_hf(dir: &Path, arch: &str, tensors: &[(String, Vec<u64>, Vec<f32>)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tokens = byte_tokens();
    tokens.extend(SPECIALS.iter().map(|s| s.to_string()));
    let vocab = tokens.len();
    let hd = DIM / HEADS as usize;
    let config = serde_json::json!({
        "model_type": arch, "hidden_size": DIM, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "intermediate_size": FFN,
        "vocab_size": vocab, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "eos_token_id": vocab - 1,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab_map: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(k, t)| {
            serde_json::json!({ "id": 256 + k, "content": t, "single_word": false, "lstrip": false,
                                          "rstrip": false, "normalized": false, "special": true })
        })
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true },
        "post_processor": null,
        "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
        "model": { "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                   "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                   "vocab": vocab_map, "merges": [] },
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let tokenizer_config = serde_json::json!({ "eos_token": "<|im_end|>", "add_bos_token": false });
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();

    let hf_name = |gguf: &str| -> String {
        let fixed = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
        ];
        if let Some((_, n)) = fixed.iter().find(|(g, _)| *g == gguf) {
            return (*n).to_owned();
        }
        let rest = gguf.strip_prefix("blk.").unwrap();
        let (layer, tensor) = rest.split_once('.').unwrap();
        let (base, suffix) = tensor.rsplit_once('.').unwrap();
        let mapped = [
            ("attn_norm", "input_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ]
        .iter()
        .find(|(g, _)| *g == base)
        .unwrap()
        .1;
        format!("model.layers.{layer}.{mapped}.{suffix}")
    };
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, dims, values) in tensors {
        let shape: Vec<u64> = dims.iter().rev().copied().collect();
        let mut values = values.clone();
        let heads = match name.rsplit('.').nth(1) {
            Some("attn_q") => Some(HEADS as usize),
            Some("attn_k") => Some(KV_HEADS as usize),
            _ => None,
        };
        if let (Some(heads), "llama") = (heads, arch) {
            let cols = dims[0] as usize;
            let gguf = values.clone();
            for h in 0..heads {
                for i in 0..hd / 2 {
                    for j in 0..2 {
                        let (hf_row, gguf_row) = (h * hd + j * hd / 2 + i, h * hd + 2 * i + j);
                        if gguf.len() >= (gguf_row + 1) * cols {
                            values[hf_row * cols..(hf_row + 1) * cols]
                                .copy_from_slice(&gguf[gguf_row * cols..(gguf_row + 1) * cols]);
                        }
                    }
                }
            }
        }
        let start = data.len();
        for v in &values {
            data.extend(v.to_le_bytes());
        }
        header.insert(
            hf_name(name),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [start, data.len()] }),
        );
    }
    let mut header = serde_json::to_vec(&header).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
}

/// Folders that cannot load say why: an architecture this engine lacks,
/// a config that promises more layers than the weights hold.
#[test]
fn hugging_face_folders_that_cannot_load_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = write_gguf(&dir.path().join("tiny.gguf"), "llama");
    let hf = dir.path().join("hf");
    write_hf(&hf, "llama", &tensors);
    let load = || {
        let mut configs = BTreeMap::new();
        configs.insert("m".to_string(), ModelConfig::at(&hf));
        Models::load(&configs, Some(1)).map(|_| ()).unwrap_err().to_string()
    };
    let config_path = hf.join("config.json");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut c = config.clone();
        c[key] = value;
        std::fs::write(&config_path, c.to_string()).unwrap();
    };
    with("num_hidden_layers", serde_json::json!(LAYERS + 1));
    let e = load();
    assert!(e.contains(&format!("model.layers.{LAYERS}.")), "{e}");
    with("model_type", serde_json::json!("gpt_neox"));
    let e = load();
    assert!(e.contains("gpt_neox"), "{e}");
}

/// A decoder as a Hugging Face folder computes what the same weights do as
/// a GGUF file: the same token ids, the same logits (to f32 rounding: the
/// two RoPE pairings order the sums differently), the same greedy text.
#[tokio::test]
async fn hugging_face_folders_match_gguf_files() {
    for arch in ["llama", "qwen2"] {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        let tensors = write_gguf(&gguf, arch);
        write_hf(&dir.path().join("hf"), arch, &tensors);
        let mut configs = BTreeMap::new();
        for (name, path) in [("gguf", gguf.clone()), ("hf", dir.path().join("hf"))] {
            let mut config = ModelConfig::at(&path);
            config.max_context = Some(128);
            configs.insert(name.to_string(), config);
        }
        let models = Models::load(&configs, Some(2)).unwrap();
        let (a, b) = (models.llm("gguf").unwrap(), models.llm("hf").unwrap());
        assert!(b.model().config().rope_neox, "Hugging Face checkpoints rotate halves");
        for p in PROMPTS {
            assert_eq!(a.encode_prompt(p).unwrap(), b.encode_prompt(p).unwrap(), "{arch}: {p}");
        }
        let ids = a.encode_prompt("a much longer prompt of bytes").unwrap();
        let logits = |m: &wafer_host_apis::model::LlmModel| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let mut kv = m.model().new_cache(1 << 20);
            let blocks = kv.reserve(ids.len()).unwrap();
            let step = wafer_host_apis::model::llama::SeqStep {
                blocks: &blocks,
                start: 0,
                tokens: &ids,
                logits: true,
            };
            m.model().forward(&mut kv, &[step], &pool).unwrap().remove(0)
        };
        let (la, lb) = (logits(a), logits(b));
        let diff = la.iter().zip(&lb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "{arch}: logits differ by {diff}");
        let mut ra = a.generate("t", ids.clone(), greedy(16), deadline()).unwrap();
        let mut rb = b.generate("t", ids.clone(), greedy(16), deadline()).unwrap();
        let (ta, tb) = (collect(&mut ra).await.unwrap(), collect(&mut rb).await.unwrap());
        assert_eq!(ta.text, tb.text, "{arch}");
        assert_eq!(ta.usage, tb.usage, "{arch}");
    }
}

fn tiny(arch: &str, tweak: impl FnOnce(&mut ModelConfig)) -> (tempfile::TempDir, Models) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join(format!("tiny-{arch}.gguf"));
    write_gguf(&path, arch);
    let mut config = ModelConfig::at(&path);
    config.max_context = Some(128);
    tweak(&mut config);
    let mut configs = BTreeMap::new();
    configs.insert("tiny".to_string(), config);
    let models = Models::load(&configs, Some(2)).unwrap();
    (dir, models)
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..Default::default()
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

const PROMPTS: [&str; 6] = [
    "hello",
    "a much longer prompt of bytes",
    "x",
    "ünïcødé ✓",
    "1 2 3 4",
    "<|im_start|>user",
];

async fn generate_all(models: &Models, together: bool) -> Vec<String> {
    let llm = models.llm("tiny").unwrap();
    let mut texts = Vec::new();
    if together {
        let mut rxs: Vec<_> = PROMPTS
            .iter()
            .enumerate()
            .map(|(i, p)| {
                llm.generate(
                    &format!("t{}", i % 3),
                    llm.encode_prompt(p).unwrap(),
                    greedy(20),
                    deadline(),
                )
                .unwrap()
            })
            .collect();
        for rx in &mut rxs {
            texts.push(collect(rx).await.unwrap().text);
        }
    } else {
        for p in PROMPTS {
            let mut rx = llm
                .generate("t", llm.encode_prompt(p).unwrap(), greedy(20), deadline())
                .unwrap();
            texts.push(collect(&mut rx).await.unwrap().text);
        }
    }
    texts
}

#[tokio::test]
async fn both_architectures_batch_exactly_like_one_at_a_time() {
    for arch in ["llama", "qwen2"] {
        // A batch of 2 for 6 requests: admission, queueing and prefill chunks of 3.
        let (_dir, models) = tiny(arch, |c| {
            c.max_batch = Some(2);
            c.step_tokens = Some(3);
        });
        let alone = generate_all(&models, false).await;
        let together = generate_all(&models, true).await;
        assert_eq!(alone, together, "{arch}");
        assert!(alone.iter().any(|t| !t.is_empty()), "{arch}: {alone:?}");
    }
}

#[tokio::test]
async fn a_cache_too_small_for_any_sequence_refuses_at_once() {
    let (_dir, models) = tiny("llama", |c| c.kv_cache_mib = Some(0));
    let llm = models.llm("tiny").unwrap();
    let err = llm
        .generate("t", llm.encode_prompt("hi").unwrap(), greedy(4), deadline())
        .unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidParams(ref m) if m.contains("at most 0")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_queue_is_bounded() {
    let (_dir, models) = tiny("llama", |c| {
        c.max_batch = Some(1);
        c.queue_depth = Some(2);
    });
    let llm = models.llm("tiny").unwrap();
    let ids = llm.encode_prompt("hello").unwrap();
    // A deadline in the past keeps requests from running long; what matters
    // is that a burst beyond the queue is refused as overloaded, at once.
    let mut refused = 0;
    let mut receivers = Vec::new();
    for _ in 0..50 {
        match llm.generate("t", ids.clone(), greedy(100), deadline()) {
            Ok(rx) => receivers.push(rx),
            Err(EngineError::Overloaded(m)) => {
                assert!(m.contains("queue_depth"), "{m}");
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(refused > 0, "50 requests into a queue of 2 were all accepted");
    for rx in &mut receivers {
        assert!(collect(rx).await.is_ok());
    }
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_gguf(&path, "llama");
    let good = std::fs::read(&path).unwrap();
    let load = |bytes: &[u8], name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("m".to_string(), ModelConfig::at(&p));
        Models::load(&configs, Some(1)).unwrap_err().to_string()
    };
    assert!(load(b"not a model at all", "garbage.gguf").contains("not a GGUF"));
    assert!(load(&good[..good.len() / 2], "truncated.gguf").contains("outside the file"));
    let mut gpt = good.clone();
    let at = gpt.windows(5).position(|w| w == b"llama").unwrap();
    gpt[at..at + 5].copy_from_slice(b"gptxx");
    let err = load(&gpt, "arch.gguf");
    assert!(err.contains("gptxx") && err.contains("supported"), "{err}");
}

mod host {
    //! The `llm` host calls on `LlmCtx` directly, without wasm.
    use super::*;
    use wafer_host_apis::bindings::llm::{Error, FinishReason, Host, HostGeneration, Params};
    use wafer_host_apis::llm::{LlmCtx, MAX_OPEN_GENERATIONS};

    fn params(max_tokens: u32) -> Params {
        Params {
            temperature: Some(0.0),
            top_k: None,
            top_p: None,
            repeat_penalty: None,
            seed: None,
            max_tokens: Some(max_tokens),
            stop: Vec::new(),
        }
    }

    #[tokio::test]
    async fn permission_budget_and_usage_are_the_hosts() {
        let (_dir, models) = tiny("llama", |_| {});
        let mut ctx = LlmCtx::new(models.clone(), vec!["tiny".to_string()], "t", deadline());
        let err = ctx
            .infer("other".into(), "hello".into(), params(4))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::ModelNotAllowed(m) if m.contains("wafer.toml")),
            "{err:?}"
        );

        // A budget of 8 tokens: a 5-token prompt may generate 3, then stops.
        let mut ctx = LlmCtx::new(models, vec!["tiny".to_string()], "t", deadline()).with_token_budget(Some(8));
        let done = ctx
            .infer("tiny".into(), "hello".into(), params(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.usage.prompt_tokens, done.usage.completion_tokens),
            (5, 3),
            "{done:?}"
        );
        assert!(matches!(done.finish_reason, FinishReason::Length));
        let used = ctx.usage()["tiny"];
        assert_eq!((used.prompt, used.completion), (5, 3));
        assert_eq!(ctx.budget_left(), Some(0));
        let err = ctx
            .infer("tiny".into(), "hello".into(), params(1))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::OverQuota(_)), "{err:?}");
    }

    /// Billing reads the scheduler's meter, not the events: a generation
    /// the guest drops before reading anything still counts the prompt it
    /// was fed and the tokens it sampled.
    #[tokio::test]
    async fn a_dropped_generation_still_counts_what_it_used() {
        let (_dir, models) = tiny("llama", |c| c.step_tokens = Some(3));
        let mut ctx = LlmCtx::new(models, vec!["tiny".to_string()], "t", deadline());
        let prompt = "a prompt long enough to take several prefill steps";
        let handle = ctx
            .infer_stream("tiny".into(), prompt.into(), params(40))
            .await
            .unwrap()
            .unwrap();
        let waited = Instant::now();
        while ctx.usage().get("tiny").is_none_or(|u| u.prompt == 0) {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the meter never showed the prompt being fed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        HostGeneration::drop(&mut ctx, handle).await.unwrap();
        let used = ctx.usage()["tiny"];
        let prompt_tokens = prompt.len() as u64; // one token per byte
        assert!(used.prompt > 0 && used.prompt <= prompt_tokens, "{used:?}");
        assert!(used.completion <= 40, "{used:?}");
        // The scheduler stops it at its next step: the count settles.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let settled = ctx.usage()["tiny"];
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ctx.usage()["tiny"], settled, "a dropped generation kept running");
    }

    /// Generations open at once hold their whole allowance (prompt + max
    /// tokens) against the budget, so together they cannot overshoot it.
    #[tokio::test]
    async fn open_generations_share_the_budget_without_overshooting() {
        let (_dir, models) = tiny("llama", |c| c.max_batch = Some(4));
        let budget = 40;
        let mut ctx = LlmCtx::new(models, vec!["tiny".to_string()], "t", deadline()).with_token_budget(Some(budget));
        // "hello" is 5 tokens: the first may use 5 + 25 of the 40.
        let first = ctx
            .infer_stream("tiny".into(), "hello".into(), params(25))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ctx.budget_left(), Some(10));
        // The second gets what is left: 5 prompt tokens and 5 more.
        let second = ctx
            .infer_stream("tiny".into(), "hello".into(), params(25))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ctx.budget_left(), Some(0));
        let err = ctx
            .infer_stream("tiny".into(), "hello".into(), params(1))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::OverQuota(_)), "{err:?}");
        for handle in [first, second] {
            let borrow = || wasmtime::component::Resource::<_>::new_borrow(handle.rep());
            while let Ok(Some(_)) = HostGeneration::next(&mut ctx, borrow()).await.unwrap() {}
            HostGeneration::drop(&mut ctx, handle).await.unwrap();
        }
        let used = ctx.usage()["tiny"];
        assert!(used.prompt + used.completion <= budget, "{used:?} overshoots {budget}");
        assert_eq!(used.prompt, 10, "{used:?}");
        // Once they ended, only what they used is held.
        assert_eq!(ctx.budget_left(), Some(budget - used.prompt - used.completion));
    }

    /// A tenant's allowance shared by several invocations, as the runtime's
    /// quotas are: each invocation's hold is taken off what the others see.
    struct Tenant {
        limit: u64,
        held: std::sync::atomic::AtomicU64,
    }

    struct Hold(std::sync::Arc<Tenant>, std::sync::atomic::AtomicU64);

    impl wafer_host_apis::llm::TokenAllowance for Hold {
        fn left(&self) -> Option<u64> {
            Some(
                self.0
                    .limit
                    .saturating_sub(self.0.held.load(std::sync::atomic::Ordering::SeqCst)),
            )
        }
        fn hold(&self, tokens: u64) {
            use std::sync::atomic::Ordering::SeqCst;
            let old = self.1.swap(tokens, SeqCst);
            self.0.held.fetch_add(tokens, SeqCst);
            self.0.held.fetch_sub(old, SeqCst);
        }
    }

    #[tokio::test]
    async fn invocations_of_one_tenant_share_its_allowance() {
        let (_dir, models) = tiny("llama", |c| c.max_batch = Some(4));
        let tenant = std::sync::Arc::new(Tenant {
            limit: 60,
            held: Default::default(),
        });
        let ctx = |models: &wafer_host_apis::model::Models| {
            LlmCtx::new(models.clone(), vec!["tiny".to_string()], "t", deadline())
                .with_allowance(std::sync::Arc::new(Hold(tenant.clone(), Default::default())))
        };
        let (mut a, mut b, mut c) = (ctx(&models), ctx(&models), ctx(&models));
        // a may use 5 + 40 of the 60; b then gets 5 + 10; c nothing.
        let first = a
            .infer_stream("tiny".into(), "hello".into(), params(40))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.budget_left(), Some(15));
        let second = b
            .infer_stream("tiny".into(), "hello".into(), params(40))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.budget_left(), Some(0));
        let err = c
            .infer("tiny".into(), "hello".into(), params(1))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::OverQuota(_)), "{err:?}");
        for (ctx, handle) in [(&mut a, first), (&mut b, second)] {
            let borrow = || wasmtime::component::Resource::<_>::new_borrow(handle.rep());
            while let Ok(Some(_)) = HostGeneration::next(ctx, borrow()).await.unwrap() {}
            HostGeneration::drop(ctx, handle).await.unwrap();
        }
        let used = |ctx: &LlmCtx| ctx.usage().get("tiny").map_or(0, |u| u.prompt + u.completion);
        let total = used(&a) + used(&b);
        assert!(total <= 60, "{total} tokens of a 60-token allowance");
        assert!(used(&b) <= 15, "b was not capped at what was left: {}", used(&b));
    }

    #[tokio::test]
    async fn open_generations_are_bounded_and_dropping_frees_a_slot() {
        let (_dir, models) = tiny("llama", |c| c.max_batch = Some(16));
        let mut ctx = LlmCtx::new(models, vec!["tiny".to_string()], "t", deadline());
        let mut open = Vec::new();
        for _ in 0..MAX_OPEN_GENERATIONS {
            open.push(
                ctx.infer_stream("tiny".into(), "hi".into(), params(50))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let err = ctx
            .infer_stream("tiny".into(), "hi".into(), params(50))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParams(m) if m.contains("drop one")),
            "{err:?}"
        );
        let first = open.remove(0);
        // Read a little of one stream, then drop it: the slot comes back.
        let next = HostGeneration::next(&mut ctx, wasmtime::component::Resource::new_borrow(first.rep())).await;
        assert!(next.unwrap().is_ok());
        HostGeneration::drop(&mut ctx, first).await.unwrap();
        assert!(
            ctx.infer_stream("tiny".into(), "hi".into(), params(5))
                .await
                .unwrap()
                .is_ok()
        );
        let counted = ctx.usage()["tiny"];
        assert!(counted.completion >= 1, "{counted:?}");
    }
}
