//! The hosted model API: OpenAI's endpoints over the node's models, paid
//! per token by the tenant whose key calls them.
//!
//! ```text
//! POST /v1/chat/completions   messages → reply; `stream: true` for server-sent events
//! POST /v1/completions        prompt → continuation; streams too
//! POST /v1/embeddings         input (string or list) → vectors, float or base64
//! GET  /v1/models             (in `admin`) the loaded models, OpenAI's list shape
//! ```
//!
//! Requests go to the same schedulers as functions' `wafer:ai/llm` calls,
//! so the two batch together. A tenant key of scope `invoke` (or the
//! operator's token) authenticates; the tenant's quotas admit the request
//! and its token allowance caps `max_tokens`. Every request that reaches a
//! model is written to the ledger once, under a fresh invocation id (the
//! ULID in the response's `id` and in `x-wafer-invocation-id`), with the
//! prompt and completion tokens the scheduler counted; the `usage` in the
//! response is that record. Errors come in OpenAI's shape (see [`error`]).

pub mod error;
pub mod generation;
pub mod wire;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use self::error::{OpenAiError, quota_refusal};
use self::generation::{Meter, Piece};
use self::wire::*;
use super::error::INVOCATION_ID_HEADER;
use crate::allowance::TenantHold;
use crate::auth::Scope;
use crate::billing::ModelUsage;
use crate::node::Node;
use wafer_host_apis::llm::{MAX_EMBED_TEXTS, MAX_MESSAGES, MAX_PROMPT_BYTES};
use wafer_host_apis::model::{ChatMessage, FinishReason, LlmModel, ModelError, SamplingParams, TokenUsage};

/// Largest request body: a prompt may be [`MAX_PROMPT_BYTES`] of text, and
/// JSON escaping can double it (`\n`, `\"`); anything larger is refused
/// before it is read whole.
pub const MAX_BODY_BYTES: usize = 2 * MAX_PROMPT_BYTES + 64 * 1024;

/// OpenAI's range for `temperature` (the engine allows more).
const MAX_TEMPERATURE: f32 = 2.0;

/// The routes, mounted under `/v1`.
pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/chat/completions", post(chat))
        .route("/completions", post(completions))
        .route("/embeddings", post(embeddings))
}

/// An authenticated, admitted caller.
struct Caller {
    tenant: String,
    permit: Option<OwnedSemaphorePermit>,
}

fn authenticate(node: &Node, headers: &HeaderMap) -> Result<String, OpenAiError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = node.auth.authenticate(header).ok_or_else(OpenAiError::unauthorized)?;
    if !principal.allows(Scope::Invoke) {
        return Err(OpenAiError::forbidden());
    }
    Ok(principal.tenant)
}

fn admit(node: &Node, tenant: String) -> Result<Caller, OpenAiError> {
    let permit = node
        .billing
        .admit(&tenant)
        .map_err(|refusal| quota_refusal(&tenant, refusal))?;
    Ok(Caller { tenant, permit })
}

/// Bytes of an oversized body read and dropped before answering 413: a
/// client still sending when the answer comes sees its connection reset
/// and not the answer. Larger bodies get the reset.
const DRAIN_BYTES: usize = 16 << 20;

/// Reads at most [`MAX_BODY_BYTES`] and parses it.
async fn read_json<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, OpenAiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return Err(OpenAiError::too_large(MAX_BODY_BYTES));
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n.min(MAX_BODY_BYTES as u64) as usize));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OpenAiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > DRAIN_BYTES {
            break;
        }
        if total <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&data);
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(OpenAiError::too_large(MAX_BODY_BYTES));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!("the request body is not a valid request: {e}"),
        )
    })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn model_error(node: &Node, name: &str, error: ModelError) -> OpenAiError {
    match error {
        ModelError::Unknown(_) => {
            let loaded: Vec<&str> = node.models.names().collect();
            OpenAiError::model_not_found(name, &loaded)
        }
        ModelError::WrongKind { .. } => OpenAiError::invalid("model", "invalid_model", error.to_string()),
        ModelError::Tokenizer(_) | ModelError::Template(_) => {
            OpenAiError::invalid("messages", "invalid_value", error.to_string())
        }
        other => OpenAiError::internal(other),
    }
}

/// Turns OpenAI's sampling fields into the engine's, refusing what is not
/// implemented rather than ignoring it.
fn sampling(fields: &SamplingFields, cap: u32) -> Result<SamplingParams, OpenAiError> {
    let d = SamplingParams::default();
    if fields.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::unsupported("n", "only n = 1 is supported"));
    }
    for (name, value) in [
        ("presence_penalty", fields.presence_penalty),
        ("frequency_penalty", fields.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(OpenAiError::unsupported(
                name,
                format!("{name} is not supported (only 0); `repeat_penalty` is"),
            ));
        }
    }
    if fields
        .logit_bias
        .as_ref()
        .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
    {
        return Err(OpenAiError::unsupported("logit_bias", "logit_bias is not supported"));
    }
    let temperature = fields.temperature.unwrap_or(d.temperature);
    if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
        return Err(OpenAiError::invalid(
            "temperature",
            "invalid_value",
            format!("temperature {temperature} is outside 0..=2"),
        ));
    }
    let top_p = fields.top_p.unwrap_or(d.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(OpenAiError::invalid(
            "top_p",
            "invalid_value",
            format!("top_p {top_p} is outside (0, 1]"),
        ));
    }
    let (max_name, max) = match (fields.max_completion_tokens, fields.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    if max == Some(0) {
        return Err(OpenAiError::invalid(
            max_name,
            "invalid_value",
            format!("{max_name} must be at least 1"),
        ));
    }
    // Above the model's cap, a request gets the cap (and `length`).
    let max_tokens = max.unwrap_or(d.max_tokens as u64).min(u64::from(cap)) as usize;
    let stop = match &fields.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                OpenAiError::invalid("stop", "invalid_type", "stop must be a string or a list of strings")
            })?,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "stop",
                "invalid_type",
                "stop must be a string or a list of strings",
            ));
        }
    };
    let params = SamplingParams {
        temperature,
        top_k: fields
            .top_k
            .map_or(d.top_k, |k| usize::try_from(k).unwrap_or(usize::MAX)),
        top_p,
        repeat_penalty: fields.repeat_penalty.unwrap_or(d.repeat_penalty),
        // Negative seeds are as good as any: keep their bits.
        seed: fields.seed.map_or_else(random_seed, |s| s as u64),
        max_tokens,
        stop,
    };
    params.validate().map_err(|message| {
        let param = if message.contains("stop") {
            "stop"
        } else if message.contains("repeat") {
            "repeat_penalty"
        } else {
            "top_k"
        };
        OpenAiError::invalid(param, "invalid_value", message)
    })?;
    Ok(params)
}

/// A seed for requests that give none: different per request.
fn random_seed() -> u64 {
    rand::random()
}

/// The text of a message's `content`: a string or text parts.
fn message_text(index: usize, content: Option<&Value>) -> Result<String, OpenAiError> {
    let param = || format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(OpenAiError::unsupported(
                            &param(),
                            format!(
                                "content parts of type `{}` are not supported; only text",
                                kind.unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(OpenAiError::invalid(
            &param(),
            "invalid_type",
            "content must be a string or a list of text parts",
        )),
    }
}

fn chat_messages(messages: &[MessageIn]) -> Result<Vec<ChatMessage>, OpenAiError> {
    if messages.is_empty() {
        return Err(OpenAiError::invalid(
            "messages",
            "invalid_value",
            "messages must hold at least one message",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(OpenAiError::invalid(
            "messages",
            "invalid_value",
            format!("{} messages; at most {MAX_MESSAGES}", messages.len()),
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    let mut bytes = 0usize;
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(OpenAiError::invalid(
                    &format!("messages[{i}].role"),
                    "invalid_value",
                    format!("role `{other}` is not supported; use system, developer, user or assistant"),
                ));
            }
        };
        let content = message_text(i, m.content.as_ref())?;
        bytes += content.len();
        out.push(ChatMessage {
            role: role.to_owned(),
            content,
        });
    }
    if bytes > MAX_PROMPT_BYTES {
        return Err(OpenAiError::invalid(
            "messages",
            "context_length_exceeded",
            format!("the messages hold {bytes} bytes; at most {MAX_PROMPT_BYTES}"),
        ));
    }
    Ok(out)
}

/// What a request asks the model to continue.
enum Input {
    Chat(Vec<ChatMessage>),
    Prompt(String),
}

/// Which response shape a generation gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Text,
}

/// A validated generation request.
struct GenerationRequest {
    model: String,
    llm: Arc<LlmModel>,
    input: Input,
    sampling: SamplingFields,
    shape: Shape,
}

async fn chat(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let tenant = authenticate(&node, &headers)?;
        let request: ChatRequest = read_json(&headers, body).await?;
        let llm = lookup_llm(&node, &request.model)?;
        if request.logprobs == Some(true) {
            return Err(OpenAiError::unsupported("logprobs", "logprobs are not supported"));
        }
        if request.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(OpenAiError::unsupported("tools", "tools are not supported"));
        }
        if request.functions.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(OpenAiError::unsupported("functions", "functions are not supported"));
        }
        if let Some(format) = &request.response_format
            && !format.is_null()
            && format.get("type").and_then(Value::as_str) != Some("text")
        {
            return Err(OpenAiError::unsupported(
                "response_format",
                "only response_format {\"type\": \"text\"} is supported",
            ));
        }
        let messages = chat_messages(&request.messages)?;
        generate(
            node.clone(),
            tenant,
            GenerationRequest {
                model: request.model,
                llm,
                input: Input::Chat(messages),
                sampling: request.sampling,
                shape: Shape::Chat,
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let tenant = authenticate(&node, &headers)?;
        let request: CompletionRequest = read_json(&headers, body).await?;
        let llm = lookup_llm(&node, &request.model)?;
        if request.echo == Some(true) {
            return Err(OpenAiError::unsupported("echo", "echo is not supported"));
        }
        if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(OpenAiError::unsupported("suffix", "suffix is not supported"));
        }
        if request.best_of.is_some_and(|n| n != 1) {
            return Err(OpenAiError::unsupported("best_of", "only best_of = 1 is supported"));
        }
        if request.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(OpenAiError::unsupported("logprobs", "logprobs are not supported"));
        }
        let prompt = match &request.prompt {
            Value::String(s) => s.clone(),
            Value::Array(items) if items.len() == 1 && items.first().is_some_and(Value::is_string) => {
                items.first().and_then(Value::as_str).unwrap_or_default().to_owned()
            }
            Value::Array(items) if items.iter().all(Value::is_string) => {
                return Err(OpenAiError::unsupported(
                    "prompt",
                    "one prompt per request: send a string (or a list holding one string)",
                ));
            }
            _ => {
                return Err(OpenAiError::unsupported(
                    "prompt",
                    "prompt must be a string; token arrays are not supported",
                ));
            }
        };
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(OpenAiError::invalid(
                "prompt",
                "context_length_exceeded",
                format!("the prompt is {} bytes; at most {MAX_PROMPT_BYTES}", prompt.len()),
            ));
        }
        generate(
            node.clone(),
            tenant,
            GenerationRequest {
                model: request.model,
                llm,
                input: Input::Prompt(prompt),
                sampling: request.sampling,
                shape: Shape::Text,
            },
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn lookup_llm(node: &Node, name: &str) -> Result<Arc<LlmModel>, OpenAiError> {
    node.models.llm(name).cloned().map_err(|e| model_error(node, name, e))
}

/// Model, parameters, quotas, tokens, allowance, then the scheduler.
async fn generate(node: Arc<Node>, tenant: String, request: GenerationRequest) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let llm = request.llm;
    let mut params = sampling(&request.sampling, llm.max_tokens_cap())?;
    let stream = request.sampling.stream.unwrap_or(false);
    let include_usage = request
        .sampling
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let caller = admit(&node, tenant)?;

    // Tokenising a long input is real work: off the async threads.
    let tokenizer_llm = llm.clone();
    let input_param = if request.shape == Shape::Chat {
        "messages"
    } else {
        "prompt"
    };
    let ids = tokio::task::spawn_blocking(move || match request.input {
        Input::Chat(messages) => tokenizer_llm.encode_chat(&messages),
        Input::Prompt(prompt) => tokenizer_llm.encode_prompt(&prompt),
    })
    .await
    .map_err(OpenAiError::internal)?
    .map_err(|e| match e {
        ModelError::Tokenizer(_) | ModelError::Template(_) => {
            OpenAiError::invalid(input_param, "invalid_value", e.to_string())
        }
        other => model_error(&node, &request.model, other),
    })?;
    let limit = llm.max_sequence();
    if ids.len() >= limit {
        return Err(OpenAiError::invalid(
            input_param,
            "context_length_exceeded",
            format!(
                "this model serves at most {limit} tokens per sequence (prompt and completion); the {input_param} are {} tokens",
                ids.len()
            ),
        ));
    }
    // The hold (None when the tenant has no token limit) is kept until the
    // ledger has this request's usage, so concurrent requests and
    // invocations cannot spend the same tokens twice.
    let token_hold = TenantHold::new(&node, &caller.tenant);
    if let Some(hold) = &token_hold
        && let Some(left) = hold.left()
    {
        let prompt = ids.len() as u64;
        if prompt >= left {
            return Err(OpenAiError::insufficient_quota(format!(
                "tenant `{}` may use {left} more tokens this month (quotas); this prompt alone is {prompt}",
                caller.tenant
            )));
        }
        // The generation stops at the allowance, as if at max_tokens.
        params.max_tokens = params.max_tokens.min((left - prompt) as usize);
        hold.set(prompt + params.max_tokens as u64);
    }
    let deadline = started + node.config.limits.max_timeout.0;
    let (events, progress) = llm.generate_metered(&caller.tenant, ids, params, deadline)?;

    let invocation_id = ulid::Ulid::new().to_string();
    let meter = Meter {
        node: node.clone(),
        tenant: caller.tenant,
        invocation_id: invocation_id.clone(),
        model: request.model.clone(),
        progress,
        token_hold,
        permit: caller.permit,
        started,
    };
    let mut pieces = generation::spawn(meter, events);
    let prefix = if request.shape == Shape::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let response = Responder {
        id: format!("{prefix}-{invocation_id}"),
        created: unix_now(),
        model: request.model,
        shape: request.shape,
        include_usage,
    };
    let mut response = if stream {
        // Wait for the first piece, so that a request the model refuses
        // while it waits (its queue timeout) still gets an HTTP error.
        let first = pieces.recv().await;
        if let Some(Piece::End(Err(e))) = first {
            return Err(e);
        }
        response.stream(first, pieces)
    } else {
        response.whole(pieces).await?
    };
    if let Ok(value) = HeaderValue::from_str(&invocation_id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, value);
    }
    Ok(response)
}

/// Formats a generation's pieces as OpenAI's JSON or server-sent events.
struct Responder {
    id: String,
    created: u64,
    model: String,
    shape: Shape,
    include_usage: bool,
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage_of(usage: TokenUsage) -> Usage {
    Usage::new(u64::from(usage.prompt), u64::from(usage.completion))
}

/// Appends one server-sent event holding `value` as JSON.
fn push_event(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

impl Responder {
    /// Collects the whole text, then answers.
    async fn whole(&self, mut pieces: mpsc::Receiver<Piece>) -> Result<Response, OpenAiError> {
        let mut text = String::new();
        let (finish, usage) = loop {
            match pieces.recv().await {
                Some(Piece::Text(t)) => text.push_str(&t),
                Some(Piece::End(end)) => break end?,
                None => return Err(OpenAiError::internal("the generation task ended without an answer")),
            }
        };
        let usage = usage_of(usage);
        let body = match self.shape {
            Shape::Chat => serde_json::to_vec(&ChatCompletion {
                id: &self.id,
                object: "chat.completion",
                created: self.created,
                model: &self.model,
                choices: [ChatChoice {
                    index: 0,
                    message: MessageOut {
                        role: "assistant",
                        content: &text,
                        refusal: None,
                    },
                    logprobs: None,
                    finish_reason: finish_name(finish),
                }],
                usage,
            }),
            Shape::Text => serde_json::to_vec(&TextCompletion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: [TextChoice {
                    text: &text,
                    index: 0,
                    logprobs: None,
                    finish_reason: Some(finish_name(finish)),
                }],
                usage: Some(usage),
            }),
        }
        .map_err(OpenAiError::internal)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }

    /// The frame of a streamed chunk of this response's shape.
    fn chunk<C>(&self, choices: Vec<C>, usage: Option<Option<Usage>>) -> Chunk<'_, C> {
        Chunk {
            id: &self.id,
            object: match self.shape {
                Shape::Chat => "chat.completion.chunk",
                Shape::Text => "text_completion",
            },
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }

    /// One event carrying `text` and/or a finish reason (and, for the
    /// first chat chunk, the role).
    fn push_chunk(&self, out: &mut Vec<u8>, role: bool, text: Option<&str>, finish: Option<FinishReason>) {
        let usage = self.include_usage.then_some(None);
        let finish_reason = finish.map(finish_name);
        match self.shape {
            Shape::Chat => {
                let choice = ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: role.then_some("assistant"),
                        content: text,
                    },
                    logprobs: None,
                    finish_reason,
                };
                push_event(out, &self.chunk(vec![choice], usage));
            }
            Shape::Text => {
                let choice = TextChoice {
                    text: text.unwrap_or(""),
                    index: 0,
                    logprobs: None,
                    finish_reason,
                };
                push_event(out, &self.chunk(vec![choice], usage));
            }
        }
    }

    /// The closing events: the finish reason, the usage (if asked), `[DONE]`.
    fn push_end(&self, out: &mut Vec<u8>, end: Result<(FinishReason, TokenUsage), OpenAiError>) {
        match end {
            Ok((finish, usage)) => {
                self.push_chunk(out, false, None, Some(finish));
                if self.include_usage {
                    // No choices: the frame alone, whatever the shape's choice type.
                    let chunk = self.chunk::<TextChoice<'_>>(Vec::new(), Some(Some(usage_of(usage))));
                    push_event(out, &chunk);
                }
            }
            // OpenAI's clients raise an APIError on an `error` event.
            Err(e) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(e.to_json().as_bytes());
                out.extend_from_slice(b"\n\n");
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Server-sent events: every piece the task has ready goes out in one
    /// write; dropping the body (the client left) closes `pieces`, which
    /// stops and bills the generation.
    fn stream(self, first: Option<Piece>, pieces: mpsc::Receiver<Piece>) -> Response {
        struct State {
            responder: Responder,
            pieces: mpsc::Receiver<Piece>,
            first: Option<Piece>,
            started: bool,
            done: bool,
        }
        let state = State {
            responder: self,
            pieces,
            first,
            started: false,
            done: false,
        };
        let body = futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            let mut out = Vec::new();
            if !s.started {
                s.started = true;
                if s.responder.shape == Shape::Chat {
                    s.responder.push_chunk(&mut out, true, Some(""), None);
                }
            }
            let mut next = match s.first.take() {
                Some(piece) => Some(piece),
                None => s.pieces.recv().await,
            };
            loop {
                match next {
                    Some(Piece::Text(text)) => s.responder.push_chunk(&mut out, false, Some(&text), None),
                    Some(Piece::End(end)) => {
                        s.responder.push_end(&mut out, end);
                        s.done = true;
                        break;
                    }
                    None => {
                        let e = OpenAiError::internal("the generation task ended without an answer");
                        s.responder.push_end(&mut out, Err(e));
                        s.done = true;
                        break;
                    }
                }
                next = match s.pieces.try_recv() {
                    Ok(piece) => Some(piece),
                    Err(_) => break,
                };
            }
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(out)), s))
        });
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(body),
        )
            .into_response()
    }
}

async fn embeddings(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Response {
    embed(node, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn embed(node: Arc<Node>, headers: HeaderMap, body: Body) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let tenant = authenticate(&node, &headers)?;
    let request: EmbeddingRequest = read_json(&headers, body).await?;
    let embedder = node
        .models
        .embedder(&request.model)
        .map_err(|e| model_error(&node, &request.model, e))?
        .clone();
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                "invalid_value",
                format!("encoding_format `{other}`: use float or base64"),
            ));
        }
    };
    if let Some(d) = request.dimensions
        && d != embedder.dim() as u64
    {
        return Err(OpenAiError::unsupported(
            "dimensions",
            format!(
                "this model's vectors have {} dimensions; it cannot give {d}",
                embedder.dim()
            ),
        ));
    }
    let texts: Vec<String> = match request.input {
        Value::String(s) => vec![s],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                _ => String::new(),
            })
            .collect(),
        _ => {
            return Err(OpenAiError::unsupported(
                "input",
                "input must be a string or a list of strings; token arrays are not supported",
            ));
        }
    };
    if texts.is_empty() {
        return Err(OpenAiError::invalid(
            "input",
            "invalid_value",
            "input must not be empty",
        ));
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    if texts.len() > MAX_EMBED_TEXTS || bytes > MAX_PROMPT_BYTES {
        return Err(OpenAiError::invalid(
            "input",
            "invalid_value",
            format!(
                "{} texts of {bytes} bytes; at most {MAX_EMBED_TEXTS} texts and {MAX_PROMPT_BYTES} bytes per request",
                texts.len()
            ),
        ));
    }
    let caller = admit(&node, tenant)?;
    if let Some(left) = node.billing.token_allowance(&caller.tenant) {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let need: u64 = embedder.count_tokens(&refs)?.iter().sum::<usize>() as u64;
        if need > left {
            return Err(OpenAiError::insufficient_quota(format!(
                "tenant `{}` may use {left} more tokens this month (quotas); these texts are {need}",
                caller.tenant
            )));
        }
    }
    let invocation_id = ulid::Ulid::new().to_string();
    let deadline = started + node.config.limits.max_timeout.0;
    // Embed and bill in a task: a client that leaves mid-way is still
    // billed (once) for the work its texts took.
    let task = {
        let node = node.clone();
        let invocation_id = invocation_id.clone();
        let model = request.model.clone();
        tokio::spawn(async move {
            let permit = caller.permit;
            let (vectors, tokens) = embedder.embed(texts, deadline).await?;
            let tokens = tokens as u64;
            record_embedding(&node, &caller.tenant, &invocation_id, started, model, tokens).await?;
            drop(permit);
            Ok::<_, OpenAiError>((vectors, tokens))
        })
    };
    let (vectors, tokens) = task.await.map_err(OpenAiError::internal)??;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingData::Base64(wire::base64(&bytes))
            } else {
                EmbeddingData::Float(v)
            },
        })
        .collect();
    let body = serde_json::to_vec(&EmbeddingList {
        object: "list",
        data,
        model: &request.model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .map_err(OpenAiError::internal)?;
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&invocation_id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, value);
    }
    Ok(response)
}

async fn record_embedding(
    node: &Node,
    tenant: &str,
    invocation_id: &str,
    started: Instant,
    model: String,
    tokens: u64,
) -> Result<(), OpenAiError> {
    generation::record_tokens(
        node,
        tenant,
        invocation_id,
        started,
        ModelUsage {
            model,
            embedding_tokens: tokens,
            ..ModelUsage::default()
        },
    )
    .await
}
