//! Tokenization the way sentence-transformers configures it.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::BertError;

/// Token ids of one text, special tokens included.
pub(crate) struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// A `tokenizer.json` tokenizer set to truncate at the model's limit and never pad.
pub(crate) struct TextTokenizer {
    inner: Tokenizer,
    lowercase: bool,
}

impl TextTokenizer {
    /// Loads `path` and overrides its truncation and padding: tokenizer.json files exported
    /// from sentence-transformers often carry `truncation: 128` / `padding: Fixed(128)` left
    /// over from training, which sentence-transformers itself replaces with `max_seq_length`
    /// truncation and per-batch padding. We pack sequences without padding, so padding is off.
    pub fn load(path: &Path, max_tokens: usize, lowercase: bool) -> Result<Self, BertError> {
        if !path.is_file() {
            return Err(BertError::MissingFile { path: path.to_owned() });
        }
        let load_err = |source| BertError::TokenizerLoad {
            path: path.to_owned(),
            source,
        };
        let mut inner = Tokenizer::from_file(path).map_err(load_err)?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(load_err)?;
        Ok(Self { inner, lowercase })
    }

    /// Tokenizes `texts`. With `parallel`, on the current rayon pool (callers run this inside
    /// their `pool.install`); without, on the calling thread, so that callers outside any pool
    /// (e.g. quota checks) do not spin up rayon's global pool.
    pub fn encode(&self, texts: &[&str], parallel: bool) -> Result<Vec<Encoded>, BertError> {
        let lowered: Vec<String>;
        let inputs: Vec<&str> = if self.lowercase {
            // sentence-transformers' `do_lower_case` lowercases the text before the tokenizer.
            lowered = texts.iter().map(|t| t.to_lowercase()).collect();
            lowered.iter().map(String::as_str).collect()
        } else {
            texts.to_vec()
        };
        let encodings = if parallel {
            self.inner.encode_batch_fast(inputs, true)
        } else {
            inputs.into_iter().map(|t| self.inner.encode_fast(t, true)).collect()
        }
        .map_err(|source| BertError::Tokenize { source })?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }
}
