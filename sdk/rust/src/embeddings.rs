//! Sentence embeddings on the node's models (`wafer:ai/embeddings`).
//!
//! ```no_run
//! use wafer_sdk::embeddings::{self, cosine};
//!
//! let batch = embeddings::embed("all-minilm-l6-v2", &["a cat sat", "a dog ran"])?;
//! let similarity = cosine(&batch.vectors[0], &batch.vectors[1]);
//! # Ok::<(), wafer_sdk::llm::LlmError>(())
//! ```

use crate::bindings::wafer::ai::embeddings as wit;
use crate::llm::{LlmError, ensure_host};

/// Vectors, one per input text in order, and the tokens the host counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// L2-normalised when the model's configuration says so (MiniLM: yes).
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model.
    pub prompt_tokens: u32,
}

/// Embed `texts` with `model` (listed in the function's manifest).
pub fn embed(model: &str, texts: &[&str]) -> Result<Embeddings, LlmError> {
    ensure_host("embeddings::embed")?;
    let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
    let batch = wit::embed(model, &texts)?;
    Ok(Embeddings {
        vectors: batch.vectors,
        prompt_tokens: batch.prompt_tokens,
    })
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn natively_embed_fails_clearly() {
        assert!(matches!(embed("m", &["x"]), Err(LlmError::Unavailable(_))));
    }
}
