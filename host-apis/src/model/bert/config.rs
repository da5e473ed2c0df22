//! Reading the model folder's JSON: the HF `config.json` and the
//! sentence-transformers files (`modules.json`, pooling config, `sentence_bert_config.json`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::BertError;

/// Activation used in the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Exact GELU, `x * Φ(x)` with erf (HF "gelu").
    GeluErf,
    /// Tanh approximation of GELU (HF "gelu_new", "gelu_pytorch_tanh").
    GeluTanh,
    /// ReLU.
    Relu,
}

/// The encoder hyper-parameters `config.json` gives.
#[derive(Debug, Clone)]
pub(crate) struct EncoderConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
}

impl EncoderConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// Raw `config.json`; only the fields BERT needs, everything else ignored.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    vocab_size: usize,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_owned()
}

/// One pooling strategy; several may be enabled, and their outputs are concatenated
/// in sentence-transformers' order (cls, max, mean, mean_sqrt_len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolingMode {
    /// The first (`[CLS]`) token's hidden state.
    Cls,
    /// Element-wise max over tokens.
    Max,
    /// Mean over non-padding tokens.
    Mean,
    /// Sum over tokens divided by sqrt(token count).
    MeanSqrtLen,
}

#[derive(Deserialize)]
struct RawPooling {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct RawModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    module_type: String,
}

#[derive(Deserialize)]
struct RawSentenceBert {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// Everything the folder's JSON files decide.
#[derive(Debug, Clone)]
pub(crate) struct FolderConfig {
    /// Folder holding `config.json`, `model.safetensors`, `tokenizer.json` (the Transformer module's path).
    pub transformer_dir: PathBuf,
    pub encoder: EncoderConfig,
    pub pooling: Vec<PoolingMode>,
    pub normalize: bool,
    /// Most tokens per sequence, special tokens included.
    pub max_tokens: usize,
    /// sentence-transformers lowercases the text itself when this is set.
    pub lowercase: bool,
}

/// Reads a JSON file, naming the path in every error.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, BertError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|source| BertError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole file, turning "not found" into [`BertError::MissingFile`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, BertError> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// Maps an I/O error on `path`, keeping "not found" distinct because it is the common, actionable case.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> BertError {
    if source.kind() == std::io::ErrorKind::NotFound {
        BertError::MissingFile { path: path.to_owned() }
    } else {
        BertError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The last dotted segment of a module type, so both `sentence_transformers.models.Pooling`
/// and newer module paths are recognised.
fn module_kind(module_type: &str) -> &str {
    module_type.rsplit('.').next().unwrap_or(module_type)
}

impl FolderConfig {
    /// Reads and validates all configuration of a sentence-transformers folder.
    pub fn load(dir: &Path) -> Result<Self, BertError> {
        if !dir.is_dir() {
            return Err(BertError::MissingFile { path: dir.to_owned() });
        }
        let modules: Vec<RawModule> = read_json(&dir.join("modules.json"))?;
        let mut transformer_dir = None;
        let mut pooling_dir = None;
        let mut normalize = false;
        for module in &modules {
            match module_kind(&module.module_type) {
                "Transformer" => transformer_dir = Some(dir.join(&module.path)),
                "Pooling" => pooling_dir = Some(dir.join(&module.path)),
                "Normalize" => normalize = true,
                _ => {
                    return Err(BertError::UnsupportedModule {
                        module_type: module.module_type.clone(),
                    });
                }
            }
        }
        let transformer_dir = transformer_dir.ok_or(BertError::MissingModule { module: "Transformer" })?;
        let pooling_dir = pooling_dir.ok_or(BertError::MissingModule { module: "Pooling" })?;

        let encoder = parse_encoder(&transformer_dir.join("config.json"))?;

        let pooling_path = pooling_dir.join("config.json");
        let pooling = parse_pooling(&pooling_path, encoder.hidden)?;

        // sentence_bert_config.json is optional; without it sentence-transformers uses the
        // tokenizer's limit, which for BERT is the position-embedding count.
        let sbert_path = transformer_dir.join("sentence_bert_config.json");
        let sbert = if sbert_path.is_file() {
            read_json::<RawSentenceBert>(&sbert_path)?
        } else {
            RawSentenceBert {
                max_seq_length: None,
                do_lower_case: false,
            }
        };
        let max_tokens = sbert.max_seq_length.unwrap_or(512).min(encoder.max_positions);
        // [CLS] and [SEP] alone take two tokens; less would make the tokenizer's truncation underflow.
        if max_tokens < 2 {
            return Err(BertError::UnsupportedConfig {
                field: "max_seq_length",
                value: max_tokens.to_string(),
                reason: "must leave room for [CLS] and [SEP] (at least 2)",
            });
        }

        Ok(Self {
            transformer_dir,
            encoder,
            pooling,
            normalize,
            max_tokens,
            lowercase: sbert.do_lower_case,
        })
    }
}

fn parse_encoder(path: &Path) -> Result<EncoderConfig, BertError> {
    let raw: RawConfig = read_json(path)?;
    if let Some(model_type) = &raw.model_type
        && model_type != "bert"
    {
        return Err(BertError::UnsupportedArchitecture {
            architecture: model_type.clone(),
        });
    }
    if let Some(archs) = &raw.architectures
        && let Some(bad) = archs.iter().find(|a| !a.starts_with("Bert"))
    {
        return Err(BertError::UnsupportedArchitecture {
            architecture: bad.clone(),
        });
    }
    if raw.model_type.is_none() && raw.architectures.as_ref().is_none_or(Vec::is_empty) {
        return Err(BertError::UnsupportedArchitecture {
            architecture: "<none given>".to_owned(),
        });
    }
    let activation = match raw.hidden_act.as_str() {
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => {
            return Err(BertError::UnsupportedConfig {
                field: "hidden_act",
                value: other.to_owned(),
                reason: "supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu",
            });
        }
    };
    if let Some(kind) = &raw.position_embedding_type
        && kind != "absolute"
    {
        return Err(BertError::UnsupportedConfig {
            field: "position_embedding_type",
            value: kind.clone(),
            reason: "only absolute position embeddings are supported",
        });
    }
    if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
        return Err(BertError::UnsupportedConfig {
            field: "num_attention_heads",
            value: raw.num_attention_heads.to_string(),
            reason: "must be non-zero and divide hidden_size",
        });
    }
    if raw.hidden_size == 0 || raw.intermediate_size == 0 || raw.max_position_embeddings == 0 {
        return Err(BertError::UnsupportedConfig {
            field: "hidden_size",
            value: raw.hidden_size.to_string(),
            reason: "hidden_size, intermediate_size and max_position_embeddings must be non-zero",
        });
    }
    Ok(EncoderConfig {
        hidden: raw.hidden_size,
        layers: raw.num_hidden_layers,
        heads: raw.num_attention_heads,
        intermediate: raw.intermediate_size,
        vocab_size: raw.vocab_size,
        max_positions: raw.max_position_embeddings,
        type_vocab_size: raw.type_vocab_size,
        // f32 keeps 1e-12 (it is well above f32's smallest normal).
        layer_norm_eps: raw.layer_norm_eps as f32,
        activation,
    })
}

fn parse_pooling(path: &Path, hidden: usize) -> Result<Vec<PoolingMode>, BertError> {
    let raw: RawPooling = read_json(path)?;
    let unsupported = |reason: String| BertError::UnsupportedPooling {
        path: path.to_owned(),
        reason,
    };
    if raw.word_embedding_dimension != hidden {
        return Err(unsupported(format!(
            "word_embedding_dimension {} differs from the encoder's hidden_size {hidden}",
            raw.word_embedding_dimension
        )));
    }
    if raw.pooling_mode_weightedmean_tokens || raw.pooling_mode_lasttoken {
        return Err(unsupported(
            "weighted-mean and last-token pooling are not implemented".to_owned(),
        ));
    }
    // Order matches sentence-transformers' Pooling.forward concatenation.
    let modes: Vec<PoolingMode> = [
        (raw.pooling_mode_cls_token, PoolingMode::Cls),
        (raw.pooling_mode_max_tokens, PoolingMode::Max),
        (raw.pooling_mode_mean_tokens, PoolingMode::Mean),
        (raw.pooling_mode_mean_sqrt_len_tokens, PoolingMode::MeanSqrtLen),
    ]
    .into_iter()
    .filter_map(|(on, mode)| on.then_some(mode))
    .collect();
    if modes.is_empty() {
        return Err(unsupported("no pooling mode is enabled".to_owned()));
    }
    Ok(modes)
}
