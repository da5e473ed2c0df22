//! OpenAI's request and response bodies, as far as this server implements
//! them. Requests ignore fields they do not know (clients send `user`,
//! `metadata`, `store` and more), but fields that would change the answer
//! and are not implemented are refused by the handlers, never ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Sampling fields shared by chat and text completions.
#[derive(Debug, Default, Deserialize)]
pub struct SamplingFields {
    /// 0..=2 (OpenAI's range); 0 is greedy.
    pub temperature: Option<f32>,
    /// (0, 1].
    pub top_p: Option<f32>,
    /// Most tokens to generate (older name).
    pub max_tokens: Option<u64>,
    /// Most tokens to generate (newer name; wins over `max_tokens`).
    pub max_completion_tokens: Option<u64>,
    /// A string or a list of strings.
    pub stop: Option<Value>,
    /// Seeds the sampler: the same seed and input give the same text.
    pub seed: Option<i64>,
    /// Only 1.
    pub n: Option<u64>,
    /// Only 0 (not implemented).
    pub presence_penalty: Option<f32>,
    /// Only 0 (not implemented).
    pub frequency_penalty: Option<f32>,
    /// Not implemented; `{}` is accepted.
    pub logit_bias: Option<Value>,
    /// Extension (llama.cpp's server has it too): sample from the k most
    /// likely tokens; 0 is all.
    pub top_k: Option<u64>,
    /// Extension: llama.cpp's repeat penalty, 1.0 is off.
    pub repeat_penalty: Option<f32>,
    /// Whether to stream server-sent events.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a last chunk with `usage`.
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with empty `choices` and the request's `usage`.
    pub include_usage: Option<bool>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// A loaded text-generation model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<MessageIn>,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Only false/absent.
    pub logprobs: Option<bool>,
    /// Not implemented.
    pub tools: Option<Value>,
    /// Not implemented.
    pub functions: Option<Value>,
    /// Only `{"type": "text"}`.
    pub response_format: Option<Value>,
}

/// One message of a chat request.
#[derive(Debug, Deserialize)]
pub struct MessageIn {
    /// `system`, `developer` (read as system), `user` or `assistant`.
    pub role: String,
    /// A string, or a list of `{"type": "text", "text": ...}` parts.
    pub content: Option<Value>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// A loaded text-generation model.
    pub model: String,
    /// A string, or a list holding one string.
    pub prompt: Value,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Only false/absent.
    pub echo: Option<bool>,
    /// Not implemented.
    pub suffix: Option<String>,
    /// Only 1.
    pub best_of: Option<u64>,
    /// Not implemented (an integer for this endpoint).
    pub logprobs: Option<Value>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// A loaded embeddings model.
    pub model: String,
    /// A string or a list of strings.
    pub input: Value,
    /// `float` (the default) or `base64` (little-endian f32; OpenAI's
    /// clients ask for it unless told otherwise).
    pub encoding_format: Option<String>,
    /// Only the model's own width.
    pub dimensions: Option<u64>,
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens fed (template included).
    pub prompt_tokens: u64,
    /// Tokens sampled.
    pub completion_tokens: u64,
    /// The sum.
    pub total_tokens: u64,
}

impl Usage {
    /// From the prompt and completion counts.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

/// `chat.completion`.
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    /// `chatcmpl-<invocation id>`.
    pub id: &'a str,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model asked for.
    pub model: &'a str,
    /// One choice.
    pub choices: [ChatChoice<'a>; 1],
    /// What was billed.
    pub usage: Usage,
}

/// The one choice of a chat completion.
#[derive(Debug, Serialize)]
pub struct ChatChoice<'a> {
    /// 0.
    pub index: u32,
    /// The assistant's reply.
    pub message: MessageOut<'a>,
    /// Always null.
    pub logprobs: Option<()>,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// The reply message.
#[derive(Debug, Serialize)]
pub struct MessageOut<'a> {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: &'a str,
    /// Always null.
    pub refusal: Option<()>,
}

/// `text_completion`.
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    /// `cmpl-<invocation id>`.
    pub id: &'a str,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model asked for.
    pub model: &'a str,
    /// One choice.
    pub choices: [TextChoice<'a>; 1],
    /// What was billed; absent on stream chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A choice of a text completion (or of one of its stream chunks).
#[derive(Debug, Serialize)]
pub struct TextChoice<'a> {
    /// The text (or the piece of it).
    pub text: &'a str,
    /// 0.
    pub index: u32,
    /// Always null.
    pub logprobs: Option<()>,
    /// `stop`, `length`, or null before the end of a stream.
    pub finish_reason: Option<&'static str>,
}

/// One streamed chunk: `chat.completion.chunk` (choices are [`ChunkChoice`]) or a
/// `text_completion` chunk (choices are [`TextChoice`]); both share this frame.
#[derive(Debug, Serialize)]
pub struct Chunk<'a, C> {
    /// Same id on every chunk of a response.
    pub id: &'a str,
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model asked for.
    pub model: &'a str,
    /// One choice; empty on the usage chunk.
    pub choices: Vec<C>,
    /// With `include_usage`: null on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// The choice of a chat chunk.
#[derive(Debug, Serialize)]
pub struct ChunkChoice<'a> {
    /// 0.
    pub index: u32,
    /// What the chunk adds.
    pub delta: Delta<'a>,
    /// Always null.
    pub logprobs: Option<()>,
    /// Null until the last choice-bearing chunk.
    pub finish_reason: Option<&'static str>,
}

/// A chunk's addition to the message.
#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    /// `assistant` on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
}

/// `POST /v1/embeddings` answer.
#[derive(Debug, Serialize)]
pub struct EmbeddingList<'a> {
    /// `list`.
    pub object: &'static str,
    /// One per input, in order.
    pub data: Vec<EmbeddingItem>,
    /// The model asked for.
    pub model: &'a str,
    /// Tokens embedded (`completion_tokens` is not part of this shape).
    pub usage: EmbeddingUsage,
}

/// One vector.
#[derive(Debug, Serialize)]
pub struct EmbeddingItem {
    /// `embedding`.
    pub object: &'static str,
    /// Position in `input`.
    pub index: usize,
    /// Floats, or a base64 string of little-endian f32.
    pub embedding: EmbeddingData,
}

/// An embedding in either encoding.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingData {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Usage of an embeddings request.
#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens embedded.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// Standard base64 (with padding) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
