//! The one error type of the BERT embedder.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a [`super::BertModel`].
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    /// A file the model folder must contain is not there.
    #[error("missing model file {}", path.display())]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A file exists but could not be read or memory-mapped.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the model folder does not parse into what it should hold.
    #[error("invalid JSON in {}: {source}", path.display())]
    Json {
        /// The file that failed to parse.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` describes a model that is not a BERT encoder.
    #[error(
        "unsupported architecture {architecture:?}: only BERT encoders (model_type \"bert\", Bert* architectures) are supported"
    )]
    UnsupportedArchitecture {
        /// The architecture or model type found in `config.json`.
        architecture: String,
    },
    /// `config.json` has a setting this implementation does not handle.
    #[error("unsupported config value {field} = {value}: {reason}")]
    UnsupportedConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// `modules.json` lists a sentence-transformers module this implementation does not run.
    #[error(
        "unsupported sentence-transformers module {module_type:?} in modules.json (supported: Transformer, Pooling, Normalize)"
    )]
    UnsupportedModule {
        /// The module's `type` string.
        module_type: String,
    },
    /// `modules.json` lacks a module the pipeline needs.
    #[error("modules.json has no {module} module")]
    MissingModule {
        /// The kind of module that is missing.
        module: &'static str,
    },
    /// The pooling configuration asks for something unsupported or inconsistent.
    #[error("unsupported pooling config {}: {reason}", path.display())]
    UnsupportedPooling {
        /// The pooling config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer file could not be loaded or configured.
    #[error("cannot load tokenizer {}: {source}", path.display())]
    TokenizerLoad {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's error.
        #[source]
        source: tokenizers::Error,
    },
    /// Tokenizing an input text failed.
    #[error("tokenization failed: {source}")]
    Tokenize {
        /// The tokenizer library's error.
        #[source]
        source: tokenizers::Error,
    },
    /// The safetensors file is malformed.
    #[error("invalid safetensors file {}: {source}", path.display())]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The safetensors library's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A weight the encoder needs is not in the safetensors file (looked up with and without the `bert.` prefix).
    #[error("missing tensor {name:?} (also tried \"bert.{name}\")")]
    MissingTensor {
        /// The tensor name without prefix.
        name: String,
    },
    /// A weight has a shape that does not match `config.json`.
    #[error("tensor {name:?} has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor name as found in the file.
        name: String,
        /// The shape `config.json` implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// A weight is stored in a dtype other than F32, F16 or BF16.
    #[error("tensor {name:?} has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype {
        /// The tensor name as found in the file.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tokenized input is longer than the model's position embeddings allow.
    #[error("input has {tokens} tokens, the limit is {limit}")]
    InputTooLong {
        /// Tokens in the sequence.
        tokens: usize,
        /// The most tokens one sequence may have.
        limit: usize,
    },
    /// The tokenizer produced an id that the embedding matrix has no row for.
    #[error("token id {id} is outside the vocabulary of {vocab_size} embeddings")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Rows in the word-embedding matrix.
        vocab_size: usize,
    },
    /// An internal matrix product was handed inconsistent shapes (a bug, reported rather than panicking).
    #[error("internal shape error in {op}: {detail}")]
    Internal {
        /// The operation.
        op: &'static str,
        /// What did not fit.
        detail: String,
    },
}
