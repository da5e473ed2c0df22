//! Sentence embeddings with a BERT encoder (sentence-transformers models such as all-MiniLM-L6-v2).
//!
//! [`BertModel::load`] reads a sentence-transformers folder; [`BertModel::embed`] runs
//! tokenize → encoder → pooling → (optional) L2 normalisation on the CPU, with the dense
//! layers as `gemm` products over all tokens of a batch and attention per sequence and head.

mod config;
mod encoder;
mod error;
mod linalg;
mod ops;
mod pooling;
mod tokenize;
mod weights;

use std::fmt;
use std::path::Path;

pub use error::BertError;

use config::FolderConfig;
use tokenize::{Encoded, TextTokenizer};
use weights::Weights;

/// Most tokens one encoder pass packs together. Bounds the activation buffers
/// (the feed-forward one is `tokens × intermediate` floats, ~25 MB here for MiniLM) for
/// arbitrarily large inputs, while staying far above the size where gemm is efficient.
const TOKENS_PER_PASS: usize = 4096;

/// A loaded BERT sentence-embedding model. Immutable after loading, so it is `Send + Sync`
/// and one instance can serve concurrent callers.
pub struct BertModel {
    cfg: FolderConfig,
    weights: Weights,
    tokenizer: TextTokenizer,
}

impl fmt::Debug for BertModel {
    // Sizes only: the weights and vocabulary are far too large to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.cfg.encoder;
        f.debug_struct("BertModel")
            .field("dim", &self.dim())
            .field("hidden", &e.hidden)
            .field("layers", &e.layers)
            .field("heads", &e.heads)
            .field("intermediate", &e.intermediate)
            .field("vocab_size", &e.vocab_size)
            .field("max_tokens", &self.cfg.max_tokens)
            .field("pooling", &self.cfg.pooling)
            .field("normalize", &self.cfg.normalize)
            .field("parameters", &self.weights.parameter_count())
            .finish()
    }
}

impl BertModel {
    /// Load from a sentence-transformers folder (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `modules.json`, the pooling module's `config.json`, and optionally
    /// `sentence_bert_config.json`).
    ///
    /// The safetensors file is memory-mapped and decoded once (f32, f16 or bf16 weights,
    /// names with or without a `bert.` prefix). Fails if a file or tensor is missing, the
    /// architecture is not BERT, or the pipeline has modules other than Transformer, Pooling
    /// and Normalize.
    pub fn load(dir: &Path) -> Result<Self, BertError> {
        let cfg = FolderConfig::load(dir)?;
        let tdir = &cfg.transformer_dir;
        let tokenizer = TextTokenizer::load(&tdir.join("tokenizer.json"), cfg.max_tokens, cfg.lowercase)?;
        let weights = Weights::load(&tdir.join("model.safetensors"), &cfg.encoder)?;
        Ok(Self {
            cfg,
            weights,
            tokenizer,
        })
    }

    /// Length of the vectors [`embed`](Self::embed) returns.
    pub fn dim(&self) -> usize {
        self.cfg.encoder.hidden * self.cfg.pooling.len()
    }

    /// Most tokens per text (special tokens included); longer texts are truncated.
    /// `max_seq_length` from `sentence_bert_config.json` (512 without it), capped by the
    /// position embeddings.
    pub fn max_tokens(&self) -> usize {
        self.cfg.max_tokens
    }

    /// Tokens each text would use (with `[CLS]`/`[SEP]`, after truncation), e.g. for quotas
    /// before running. Equals what [`embed`](Self::embed) feeds for that text.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, BertError> {
        Ok(self
            .tokenizer
            .encode(texts, false)?
            .iter()
            .map(|e| e.ids.len())
            .collect())
    }

    /// The token ids [`embed`](Self::embed) feeds for each text (`[CLS]` … `[SEP]`, truncated to
    /// [`max_tokens`](Self::max_tokens)); for debugging and for checking against a reference tokenizer.
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, BertError> {
        Ok(self
            .tokenizer
            .encode(texts, false)?
            .into_iter()
            .map(|e| e.ids)
            .collect())
    }

    /// Embeds `texts` as one batch on `pool`: tokenize (truncating to
    /// [`max_tokens`](Self::max_tokens) like sentence-transformers), run the encoder, pool as
    /// the pooling config says, and L2-normalise when `modules.json` has a Normalize module.
    ///
    /// Sequences are packed without padding (no work is spent on pad tokens; see the
    /// `encoder` module), so the result for a text does not depend on what it is batched with.
    /// Returns the vectors in input order and the total number of tokens fed.
    pub fn embed(&self, texts: &[&str], pool: &rayon::ThreadPool) -> Result<(Vec<Vec<f32>>, usize), BertError> {
        let (vectors, counts) = self.embed_counted(texts, pool)?;
        Ok((vectors, counts.iter().sum()))
    }

    /// [`BertModel::embed`], with the tokens of each text rather than the
    /// total, for callers that bill a batch's texts to different requests.
    pub fn embed_counted(
        &self,
        texts: &[&str],
        pool: &rayon::ThreadPool,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>), BertError> {
        if texts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        pool.install(|| {
            let encoded = self.tokenizer.encode(texts, true)?;
            let counts = encoded.iter().map(|e| e.ids.len()).collect();
            let mut vectors = Vec::with_capacity(texts.len());
            for group in pack(&encoded) {
                vectors.extend(self.embed_group(&group)?);
            }
            Ok((vectors, counts))
        })
    }

    /// One encoder pass over `group`, then pooling per sequence.
    fn embed_group(&self, group: &[&Encoded]) -> Result<Vec<Vec<f32>>, BertError> {
        let hidden = encoder::forward(&self.weights, &self.cfg.encoder, group)?;
        let width = self.cfg.encoder.hidden;
        let mut rest = hidden.as_slice();
        let mut out = Vec::with_capacity(group.len());
        for seq in group {
            let (states, tail) = rest
                .split_at_checked(seq.ids.len() * width)
                .ok_or_else(|| BertError::Internal {
                    op: "pool",
                    detail: "encoder returned fewer rows than tokens".to_owned(),
                })?;
            rest = tail;
            let mut v = pooling::pool(states, width, &self.cfg.pooling);
            if self.cfg.normalize {
                pooling::l2_normalize(&mut v);
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// Splits sequences, in order, into groups of at most [`TOKENS_PER_PASS`] tokens
/// (a single longer sequence gets a group of its own).
fn pack(encoded: &[Encoded]) -> Vec<Vec<&Encoded>> {
    let mut groups: Vec<Vec<&Encoded>> = Vec::new();
    let mut current: Vec<&Encoded> = Vec::new();
    let mut tokens = 0;
    for e in encoded {
        if !current.is_empty() && tokens + e.ids.len() > TOKENS_PER_PASS {
            groups.push(std::mem::take(&mut current));
            tokens = 0;
        }
        tokens += e.ids.len();
        current.push(e);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}
