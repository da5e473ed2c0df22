//! Text ↔ token ids for a model: the `tokenizers` crate, built from a
//! `tokenizer.json` or from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! From GGUF, the BPE vocabulary and merges become a tokenizer.json
//! document, with the pre-tokenizer the metadata's `tokenizer.ggml.pre`
//! names (the same table llama.cpp keeps in `llama-vocab.cpp`), control
//! tokens as special added tokens, and a byte-level decoder.

use std::path::Path;

use serde_json::json;

use super::gguf::Gguf;

/// A tokenizer that could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The model's tokenizer type is not supported.
    #[error("tokenizer model `{0}` is not supported (supported: gpt2-style BPE); supply a tokenizer.json")]
    UnsupportedModel(String),
    /// The BPE pre-tokenizer named by the metadata is not known.
    #[error("pre-tokenizer `{0}` is not supported; supply a tokenizer.json")]
    UnsupportedPre(String),
    /// Metadata is missing or malformed.
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    /// The `tokenizers` crate failed.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

/// Special tokens and flags the engine needs.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Prepended to prompts when `add_bos` is set.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether prompts start with BOS (from the model's metadata).
    pub add_bos: bool,
    /// Every token that ends a generation: EOS plus end-of-turn tokens
    /// (`<|im_end|>`, `<|eot_id|>`, ...), found by text as llama.cpp does.
    pub end_of_generation: Vec<u32>,
    /// The text of BOS and EOS, for chat templates.
    pub bos_text: String,
    /// See `bos_text`.
    pub eos_text: String,
}

/// A model's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab_size())
            .field("special", &self.special)
            .finish()
    }
}

/// Token texts that end a turn in the chat formats of common models.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
];

/// The GPT-2 split (also the byte-level pre-tokenizer's built-in regex).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Tokenizer {
    /// Load a `tokenizer.json`, with special tokens named by the caller.
    pub fn from_file(path: &Path, special: SpecialTokens) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Tokenizers(format!("{}: {e}", path.display())))?;
        Ok(Tokenizer { inner, special })
    }

    /// Load a Hugging Face `tokenizer.json`. BOS and EOS are named by text
    /// (`tokenizer_config.json`), `eos_ids` come from the model's config;
    /// end-of-turn tokens (`<|im_end|>`, `<|eot_id|>`, ...) found in the
    /// vocabulary end generations too, as for GGUF files.
    pub fn from_hf(
        path: &Path,
        bos_text: Option<&str>,
        eos_text: Option<&str>,
        eos_ids: &[u32],
        add_bos: bool,
    ) -> Result<Self, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Tokenizers(format!("{}: {e}", path.display())))?;
        let bos = bos_text.and_then(|t| inner.token_to_id(t));
        let eos = eos_text.and_then(|t| inner.token_to_id(t)).or(eos_ids.first().copied());
        let mut end_of_generation: Vec<u32> = eos.into_iter().chain(eos_ids.iter().copied()).collect();
        end_of_generation.extend(END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)));
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        let text = |id: Option<u32>| id.and_then(|i| inner.id_to_token(i)).unwrap_or_default();
        let special = SpecialTokens {
            bos,
            eos,
            add_bos: add_bos && bos.is_some(),
            end_of_generation,
            bos_text: text(bos),
            eos_text: text(eos),
        };
        Ok(Tokenizer { inner, special })
    }

    /// Build from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let meta = |e: super::gguf::GgufError| TokenizerError::Metadata(e.to_string());
        let model = gguf.str("tokenizer.ggml.model").map_err(meta)?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let tokens = gguf.str_array("tokenizer.ggml.tokens").map_err(meta)?;
        let merges = gguf.str_array("tokenizer.ggml.merges").map_err(meta)?;
        let types = gguf.int_array("tokenizer.ggml.token_type").unwrap_or_default();
        let pre = gguf.opt_str("tokenizer.ggml.pre").unwrap_or("default");

        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| ((*t).to_owned(), json!(id)))
            .collect();
        let merges: Vec<serde_json::Value> = merges.iter().map(|m| json!(m)).collect();
        // Control (3) and user-defined (4) tokens are matched whole in the
        // input text, before the BPE model sees it.
        let added: Vec<serde_json::Value> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == 3 || **t == 4)
            .filter_map(|(id, t)| {
                let content = tokens.get(id)?;
                Some(json!({
                    "id": id, "content": content, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": *t == 3,
                }))
            })
            .collect();
        let doc = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer(pre)?,
            "post_processor": null,
            "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            },
        });
        let bytes = serde_json::to_vec(&doc).map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;

        let id = |key: &str| {
            gguf.opt_u64(key)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let text = |t: Option<u32>| {
            t.and_then(|t| tokens.get(t as usize))
                .map(|s| (*s).to_owned())
                .unwrap_or_default()
        };
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        if let Some(eot) = id("tokenizer.ggml.eot_token_id") {
            end_of_generation.push(eot);
        }
        for (i, t) in tokens.iter().enumerate() {
            if END_OF_TURN.contains(t) && !end_of_generation.contains(&(i as u32)) {
                end_of_generation.push(i as u32);
            }
        }
        let special = SpecialTokens {
            bos,
            eos,
            add_bos: gguf.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(false) && bos.is_some(),
            end_of_generation,
            bos_text: text(bos),
            eos_text: text(eos),
        };
        Ok(Tokenizer { inner, special })
    }

    /// Special tokens and flags.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`. Special tokens written in the text are matched
    /// as such. With `add_bos`, BOS is prepended when the model asks for it
    /// and the text does not already start with it.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if add_bos
            && self.special.add_bos
            && let Some(bos) = self.special.bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Text of `ids`; special tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// Whether `id` ends a generation.
    pub fn ends_generation(&self, id: u32) -> bool {
        self.special.end_of_generation.contains(&id)
    }
}

fn pre_tokenizer(pre: &str) -> Result<serde_json::Value, TokenizerError> {
    let byte_level = |use_regex: bool| json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex });
    let split = |pattern: &str| json!({ "type": "Split", "pattern": { "Regex": pattern }, "behavior": "Isolated", "invert": false });
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        // Digits one at a time, then GPT-2's split.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => json!({
            "type": "Sequence",
            "pretokenizers": [{ "type": "Digits", "individual_digits": true }, byte_level(true)],
        }),
        "qwen2" | "deepseek-r1-qwen" => {
            json!({ "type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)] })
        }
        "llama3" | "llama-bpe" | "falcon3" | "pixtral" => {
            json!({ "type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)] })
        }
        other => return Err(TokenizerError::UnsupportedPre(other.into())),
    })
}

/// Streams text from generated ids: holds back bytes that do not yet form
/// whole UTF-8 characters, so every chunk is valid text. Decodes a short
/// window, not the whole sequence, per token (the scheme of Hugging Face's
/// text-generation-inference).
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    /// Add a token; returns the new text it completes (maybe empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let after = tokenizer.decode(&self.ids[self.prefix..])?;
        // An incomplete UTF-8 sequence decodes to U+FFFD at the end; wait
        // for the next token to complete it.
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = after.get(before.len()..).map(str::to_owned).unwrap_or_default();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new)
    }

    /// The ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
