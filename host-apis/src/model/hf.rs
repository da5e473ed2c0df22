//! Decoders as Hugging Face folders: `config.json`, the weights in
//! safetensors (`model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists), `tokenizer.json` and
//! `tokenizer_config.json` (special tokens, chat template).
//!
//! The files are memory-mapped; F32, F16 and BF16 weights are used in place
//! (F32/F16/BF16 matrices take the kernels' f32 path). Weights are looked up
//! by their GGUF names ([`DecoderWeights`]) and mapped to Hugging Face's, so
//! the decoder is the same code for both formats. Hugging Face checkpoints
//! rotate query/key halves (`rotate_half`, NeoX style), where GGUF llama
//! files were permuted by their converter to rotate adjacent pairs: the
//! configuration says which.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::ModelError;
use super::llama::{DecoderWeights, LlamaConfig};
use super::quant::{GgmlType, QMatrix, dequantize_row};
use super::tokenizer::Tokenizer;

/// `model_type`s this loader builds.
const DECODERS: &[&str] = &["llama", "mistral", "qwen2"];

/// An opened folder.
pub struct HfFolder {
    dir: PathBuf,
    config: Value,
    files: Vec<Bytes>,
    tensors: HashMap<String, Tensor>,
}

impl std::fmt::Debug for HfFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfFolder")
            .field("dir", &self.dir)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Tensor {
    file: usize,
    ty: GgmlType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The `model_type` of `dir/config.json`, if it has one.
pub fn model_type(dir: &Path) -> Option<String> {
    read_json(&dir.join("config.json"))
        .ok()
        .and_then(|c| c.get("model_type").and_then(Value::as_str).map(str::to_owned))
}

/// Whether `dir` holds a decoder this loader builds.
pub fn is_decoder(dir: &Path) -> bool {
    model_type(dir).is_some_and(|t| DECODERS.contains(&t.as_str()))
}

/// Refuses a folder whose `config.json` names a model type that neither
/// this loader nor the BERT encoder builds, naming what is supported.
pub fn check_supported(dir: &Path) -> Result<(), ModelError> {
    match model_type(dir) {
        Some(t) if !DECODERS.contains(&t.as_str()) && t != "bert" => Err(ModelError::Unsupported(format!(
            "model_type `{t}` in {} (supported: decoders {}; encoders bert)",
            dir.join("config.json").display(),
            DECODERS.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Invalid(format!("{} is not valid JSON: {e}", path.display())))
}

fn map_file(path: &Path) -> Result<Bytes, ModelError> {
    let file = File::open(path).map_err(|e| ModelError::Invalid(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: the map is read-only; like every model file, it must not be
    // truncated while the node runs (the same contract as GGUF files).
    #[allow(unsafe_code)]
    let map =
        unsafe { Mmap::map(&file) }.map_err(|e| ModelError::Invalid(format!("cannot map {}: {e}", path.display())))?;
    Ok(Bytes::from_owner(map))
}

impl HfFolder {
    /// Read `config.json` and map every safetensors file; refuses other
    /// model types, dtypes other than F32/F16/BF16, and RoPE scaling.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let config = read_json(&dir.join("config.json"))?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("(none)");
        if !DECODERS.contains(&model_type) {
            return Err(ModelError::Unsupported(format!(
                "model_type `{model_type}` in {} (supported decoders: {})",
                dir.join("config.json").display(),
                DECODERS.join(", ")
            )));
        }
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if index.exists() {
            let index = read_json(&index)?;
            let mut shards: Vec<String> = index
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| ModelError::Invalid("model.safetensors.index.json has no weight_map".into()))?
                .values()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            shards.sort();
            shards.dedup();
            shards
        } else {
            vec!["model.safetensors".into()]
        };
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for name in names {
            // Shard names come from a file in the folder: keep them inside it.
            if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                return Err(ModelError::Invalid(format!(
                    "shard name `{name}` is not a plain file name"
                )));
            }
            let path = dir.join(&name);
            let bytes = map_file(&path)?;
            let (header, meta) = SafeTensors::read_metadata(&bytes)
                .map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))?;
            let base = 8 + header;
            for (tensor, info) in meta.tensors() {
                let ty = match info.dtype {
                    Dtype::F32 => GgmlType::F32,
                    Dtype::F16 => GgmlType::F16,
                    Dtype::BF16 => GgmlType::BF16,
                    other => {
                        return Err(ModelError::Unsupported(format!(
                            "tensor `{tensor}` in {} is {other:?} (supported: F32, F16, BF16)",
                            path.display()
                        )));
                    }
                };
                let (start, end) = (base + info.data_offsets.0, base + info.data_offsets.1);
                tensors.insert(
                    tensor,
                    Tensor {
                        file: files.len(),
                        ty,
                        shape: info.shape.clone(),
                        start,
                        end,
                    },
                );
            }
            files.push(bytes);
        }
        let folder = HfFolder {
            dir: dir.to_owned(),
            config,
            files,
            tensors,
        };
        let tied = folder.config.get("tie_word_embeddings").and_then(Value::as_bool);
        if tied == Some(false) && !folder.tensors.contains_key("lm_head.weight") {
            return Err(ModelError::Invalid(
                "tie_word_embeddings is false but there is no lm_head.weight".into(),
            ));
        }
        Ok(folder)
    }

    /// Hyper-parameters from `config.json`.
    pub fn config(&self) -> Result<LlamaConfig, ModelError> {
        let c = &self.config;
        let int = |k: &str| -> Result<usize, ModelError> {
            c.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::Invalid(format!("config.json has no integer `{k}`")))
        };
        let float = |k: &str, default: f64| c.get(k).and_then(Value::as_f64).unwrap_or(default) as f32;
        if let Some(scaling) = c.get("rope_scaling").filter(|v| !v.is_null()) {
            return Err(ModelError::Unsupported(format!("RoPE scaling {scaling}")));
        }
        let dim = int("hidden_size")?;
        let n_heads = int("num_attention_heads")?;
        let n_kv_heads = int("num_key_value_heads").unwrap_or(n_heads);
        super::llama::check_heads(dim, n_heads, n_kv_heads)?;
        let head_dim = int("head_dim").unwrap_or(dim / n_heads);
        let vocab = int("vocab_size")?;
        if vocab == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::Invalid(format!(
                "vocabulary {vocab}, head width {head_dim}"
            )));
        }
        Ok(LlamaConfig {
            arch: c
                .get("model_type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            n_layers: int("num_hidden_layers")?,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: int("intermediate_size")?,
            vocab,
            context_length: int("max_position_embeddings")?,
            rms_eps: float("rms_norm_eps", 1e-6),
            rope_base: float("rope_theta", 10_000.0),
            rope_dim: head_dim,
            rope_neox: true,
        })
    }

    /// The tokenizer from `tokenizer.json`, with BOS/EOS and `add_bos_token`
    /// from `tokenizer_config.json` and the end-of-sequence ids from
    /// `config.json` and `generation_config.json`.
    pub fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        let tc = self.tokenizer_config();
        let token_text = |k: &str| -> Option<String> {
            match tc.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            }
        };
        let mut eos_ids = Vec::new();
        let generation = read_json(&self.dir.join("generation_config.json")).unwrap_or(Value::Null);
        for source in [&self.config, &generation] {
            match source.get("eos_token_id") {
                Some(Value::Number(n)) => eos_ids.extend(n.as_u64()),
                Some(Value::Array(ids)) => eos_ids.extend(ids.iter().filter_map(Value::as_u64)),
                _ => {}
            }
        }
        let eos_ids: Vec<u32> = eos_ids.into_iter().filter_map(|v| u32::try_from(v).ok()).collect();
        let add_bos = tc.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        Ok(Tokenizer::from_hf(
            &self.dir.join("tokenizer.json"),
            token_text("bos_token").as_deref(),
            token_text("eos_token").as_deref(),
            &eos_ids,
            add_bos,
        )?)
    }

    /// The chat template of `tokenizer_config.json` (a string, or the one
    /// named `default` in a list).
    pub fn chat_template(&self) -> Option<String> {
        match self.tokenizer_config().get("chat_template")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    }

    fn tokenizer_config(&self) -> Value {
        read_json(&self.dir.join("tokenizer_config.json")).unwrap_or(Value::Null)
    }

    fn tensor(&self, gguf_name: &str) -> Result<(&Tensor, Bytes, String), ModelError> {
        let name = hf_name(gguf_name).ok_or_else(|| ModelError::Invalid(format!("no weight maps to `{gguf_name}`")))?;
        let t = self
            .tensors
            .get(&name)
            .ok_or_else(|| ModelError::Invalid(format!("{} has no tensor `{name}`", self.dir.display())))?;
        let file = &self.files[t.file];
        if t.start > t.end || t.end > file.len() {
            return Err(ModelError::Invalid(format!("tensor `{name}` lies outside its file")));
        }
        Ok((t, file.slice(t.start..t.end), name))
    }
}

/// The Hugging Face name of a weight named as in GGUF files.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output.weight" => Some("lm_head.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_owned());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tensor) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (base, suffix) = tensor.rsplit_once('.')?;
    let mapped = match base {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{mapped}.{suffix}"))
}

impl DecoderWeights for HfFolder {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError> {
        let (t, bytes, hf) = self.tensor(name)?;
        if t.shape != [rows, cols] {
            return Err(ModelError::Invalid(format!(
                "tensor `{hf}` has shape {:?}; expected [{rows}, {cols}]",
                t.shape
            )));
        }
        QMatrix::new(t.ty, rows, cols, bytes).map_err(|e| ModelError::Invalid(format!("tensor `{hf}`: {e}")))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let (t, bytes, hf) = self.tensor(name)?;
        if t.shape != [len] {
            return Err(ModelError::Invalid(format!(
                "tensor `{hf}` has shape {:?}; expected [{len}]",
                t.shape
            )));
        }
        let mut out = vec![0f32; len];
        dequantize_row(t.ty, &bytes, &mut out).map_err(|e| ModelError::Invalid(format!("tensor `{hf}`: {e}")))?;
        Ok(out)
    }

    fn has(&self, name: &str) -> bool {
        hf_name(name).is_some_and(|n| self.tensors.contains_key(&n))
    }

    fn total_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.end.saturating_sub(t.start)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(
            hf_name("blk.11.attn_q.bias").as_deref(),
            Some("model.layers.11.self_attn.q_proj.bias")
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").as_deref(),
            Some("model.layers.0.mlp.down_proj.weight")
        );
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.0.nonsense.weight"), None);
    }
}
