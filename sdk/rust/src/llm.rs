//! Text generation on the node's models (`wafer:ai/llm`).
//!
//! The node batches requests from every function onto the models it
//! serves. A function may only use the models its manifest lists:
//!
//! ```toml
//! models = ["smollm2-135m-instruct"]
//! ```
//!
//! ```no_run
//! use wafer_sdk::llm::{self, Message, Params};
//!
//! let reply = llm::chat(
//!     "smollm2-135m-instruct",
//!     &[Message::user("What is the capital of France?")],
//!     &Params::new().temperature(0.0).max_tokens(32),
//! )?;
//! println!("{} ({} tokens)", reply.text, reply.usage.completion_tokens);
//!
//! // Streaming: text arrives as the model generates it.
//! let mut stream = llm::chat_stream("smollm2-135m-instruct", &[Message::user("Tell me a story")], &Params::new())?;
//! for piece in &mut stream {
//!     print!("{}", piece?);
//! }
//! let (finish, usage) = stream.finish().expect("finished");
//! # Ok::<(), wafer_sdk::llm::LlmError>(())
//! ```
//!
//! The host counts usage (the tokens fed, template included, and the tokens
//! sampled) and bills it; the numbers here are the same.

use std::fmt;

use crate::bindings::wafer::ai::llm as wit;

/// Why a call failed; every message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlmError {
    /// No model of that name is loaded on the node.
    UnknownModel(String),
    /// The function's manifest does not list the model.
    ModelNotAllowed(String),
    /// A parameter or the input is out of range.
    InvalidParams(String),
    /// The tenant's quota or budget would be exceeded.
    OverQuota(String),
    /// The request waited or ran past its deadline.
    Timeout(String),
    /// The model's queue is full; retry later.
    Overloaded(String),
    /// The model failed.
    Internal(String),
    /// Not running on Wafer (a native unit test).
    Unavailable(String),
}

impl LlmError {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::UnknownModel(m)
            | Self::ModelNotAllowed(m)
            | Self::InvalidParams(m)
            | Self::OverQuota(m)
            | Self::Timeout(m)
            | Self::Overloaded(m)
            | Self::Internal(m)
            | Self::Unavailable(m) => m,
        }
    }

    /// A short, stable name for the kind (`unknown_model`, ...), for JSON
    /// error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel(_) => "unknown_model",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::InvalidParams(_) => "invalid_params",
            Self::OverQuota(_) => "over_quota",
            Self::Timeout(_) => "timeout",
            Self::Overloaded(_) => "overloaded",
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status a function would usually answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownModel(_) => 404,
            Self::ModelNotAllowed(_) => 403,
            Self::InvalidParams(_) => 400,
            Self::OverQuota(_) | Self::Overloaded(_) => 429,
            Self::Timeout(_) => 504,
            Self::Internal(_) | Self::Unavailable(_) => 500,
        }
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for LlmError {}

impl From<wit::Error> for LlmError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::UnknownModel(m) => Self::UnknownModel(m),
            wit::Error::ModelNotAllowed(m) => Self::ModelNotAllowed(m),
            wit::Error::InvalidParams(m) => Self::InvalidParams(m),
            wit::Error::OverQuota(m) => Self::OverQuota(m),
            wit::Error::Timeout(m) => Self::Timeout(m),
            wit::Error::Overloaded(m) => Self::Overloaded(m),
            wit::Error::Internal(m) => Self::Internal(m),
        }
    }
}

/// Sampling parameters; unset fields take the model's defaults
/// (temperature 0.8, top-k 40, top-p 0.95, max tokens 256).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u64>,
    max_tokens: Option<u32>,
    stop: Vec<String>,
}

impl Params {
    /// The model's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// 0 is greedy (the most likely token every time).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sample among the k most likely tokens (0: no limit).
    pub fn top_k(mut self, k: u32) -> Self {
        self.top_k = Some(k);
        self
    }
    /// Sample among the most likely tokens whose probabilities sum to p.
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }
    /// Penalise tokens already in the context (1.0: off).
    pub fn repeat_penalty(mut self, p: f32) -> Self {
        self.repeat_penalty = Some(p);
        self
    }
    /// The same seed, input and parameters give the same text.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The most tokens to generate (the node caps it).
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Stop before this string (repeatable); it is not returned.
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }

    fn to_wit(&self) -> wit::Params {
        wit::Params {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "json", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system instruction.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }
    /// What the user said.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
    /// What the model answered earlier.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Tokens the host counted for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "json", derive(serde::Serialize))]
pub struct Usage {
    /// Tokens fed (the prompt, with the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

impl From<wit::Usage> for Usage {
    fn from(u: wit::Usage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "json", derive(serde::Serialize), serde(rename_all = "lowercase"))]
pub enum FinishReason {
    /// An end-of-turn token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

impl From<wit::FinishReason> for FinishReason {
    fn from(f: wit::FinishReason) -> Self {
        match f {
            wit::FinishReason::Stop => FinishReason::Stop,
            wit::FinishReason::Length => FinishReason::Length,
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text (never the prompt).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// What it used.
    pub usage: Usage,
}

impl From<wit::Completion> for Completion {
    fn from(c: wit::Completion) -> Self {
        Completion {
            text: c.text,
            finish: c.finish_reason.into(),
            usage: c.usage.into(),
        }
    }
}

pub(crate) fn ensure_host(what: &str) -> Result<(), LlmError> {
    if cfg!(target_arch = "wasm32") {
        Ok(())
    } else {
        Err(LlmError::Unavailable(format!(
            "{what} runs on the Wafer host; build for wasm32-wasip2 and run the function on Wafer"
        )))
    }
}

fn wit_messages(messages: &[Message]) -> Vec<wit::Message> {
    messages
        .iter()
        .map(|m| wit::Message {
            role: m.role.clone(),
            content: m.content.clone(),
        })
        .collect()
}

/// Continue `prompt` (raw text).
pub fn infer(model: &str, prompt: &str, params: &Params) -> Result<Completion, LlmError> {
    ensure_host("llm::infer")?;
    Ok(wit::infer(model, prompt, &params.to_wit())?.into())
}

/// Answer a conversation, formatted with the model's chat template.
pub fn chat(model: &str, messages: &[Message], params: &Params) -> Result<Completion, LlmError> {
    ensure_host("llm::chat")?;
    Ok(wit::chat(model, &wit_messages(messages), &params.to_wit())?.into())
}

/// [`infer`], as text pieces while they are generated.
pub fn infer_stream(model: &str, prompt: &str, params: &Params) -> Result<Stream, LlmError> {
    ensure_host("llm::infer_stream")?;
    Ok(Stream {
        inner: wit::infer_stream(model, prompt, &params.to_wit())?,
        done: false,
    })
}

/// [`chat`], as text pieces while they are generated.
pub fn chat_stream(model: &str, messages: &[Message], params: &Params) -> Result<Stream, LlmError> {
    ensure_host("llm::chat_stream")?;
    Ok(Stream {
        inner: wit::chat_stream(model, &wit_messages(messages), &params.to_wit())?,
        done: false,
    })
}

/// A generation in progress: iterate for text pieces. Dropping it cancels
/// the generation (and its billing stops there).
#[derive(Debug)]
pub struct Stream {
    inner: wit::Generation,
    done: bool,
}

impl Stream {
    /// Why generation ended and what it used, once the iterator is done.
    pub fn finish(&self) -> Option<(FinishReason, Usage)> {
        self.inner.finish().map(|(f, u)| (f.into(), u.into()))
    }
}

impl Iterator for Stream {
    type Item = Result<String, LlmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.inner.next() {
            Ok(Some(text)) => Some(Ok(text)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e.into()))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn natively_calls_fail_clearly() {
        let err = chat("m", &[Message::user("hi")], &Params::new()).unwrap_err();
        assert!(matches!(err, LlmError::Unavailable(_)), "{err}");
        assert_eq!(err.http_status(), 500);
    }

    #[test]
    fn params_build_up() {
        let p = Params::new().temperature(0.0).max_tokens(5).stop("\n").stop("END");
        let w = p.to_wit();
        assert_eq!(w.temperature, Some(0.0));
        assert_eq!(w.max_tokens, Some(5));
        assert_eq!(w.stop, vec!["\n".to_string(), "END".to_string()]);
    }
}
