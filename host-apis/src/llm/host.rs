//! The generated `llm` and `embeddings` host traits, implemented on
//! [`LlmCtx`]. Permission checks come first, and every refusal says how to
//! fix it; usage is the schedulers' own count (their meters), never taken
//! from the guest.

use wasmtime::component::Resource;

use super::{GenerationHandle, LlmCtx, MAX_EMBED_TEXTS, MAX_MESSAGES, MAX_PROMPT_BYTES};
use crate::bindings::embeddings::{self, EmbeddingBatch};
use crate::bindings::llm::{self, Completion, Error, FinishReason, Message, Params, Usage};
use crate::model::{self, ChatMessage, EngineError, GenEvent, ModelError, SamplingParams, TokenUsage};

type HostResult<T> = wasmtime::Result<Result<T, Error>>;

/// What a generation is asked to continue.
enum Input {
    Prompt(String),
    Chat(Vec<Message>),
}

impl LlmCtx {
    fn check_allowed(&self, name: &str) -> Result<(), Error> {
        if self.allowed.iter().any(|m| m == name) {
            return Ok(());
        }
        let listed = if self.allowed.is_empty() {
            "none".to_owned()
        } else {
            self.allowed.join(", ")
        };
        Err(Error::ModelNotAllowed(format!(
            "this function may not use model `{name}` (it may use: {listed}); add it to `models = [...]` in the function's wafer.toml and deploy again"
        )))
    }

    fn model_error(&self, e: ModelError) -> Error {
        match e {
            ModelError::Unknown(name) => {
                let loaded: Vec<&str> = self.models.names().collect();
                let loaded = if loaded.is_empty() {
                    "none".to_owned()
                } else {
                    loaded.join(", ")
                };
                Error::UnknownModel(format!(
                    "no model named `{name}` is loaded on this node (loaded: {loaded})"
                ))
            }
            ModelError::WrongKind { .. } => Error::InvalidParams(e.to_string()),
            ModelError::Tokenizer(_) | ModelError::Template(_) => Error::InvalidParams(e.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }

    /// Checks, tokenisation, budget, then the scheduler.
    fn start(&mut self, model_name: &str, input: Input, params: Params) -> Result<GenerationHandle, Error> {
        self.check_allowed(model_name)?;
        let llm = self.models.llm(model_name).map_err(|e| self.model_error(e))?.clone();
        let ids = match input {
            Input::Prompt(p) => {
                if p.len() > MAX_PROMPT_BYTES {
                    return Err(Error::InvalidParams(format!(
                        "the prompt is {} bytes; at most {MAX_PROMPT_BYTES}",
                        p.len()
                    )));
                }
                llm.encode_prompt(&p)
            }
            Input::Chat(messages) => {
                let bytes: usize = messages.iter().map(|m| m.content.len() + m.role.len()).sum();
                if messages.len() > MAX_MESSAGES || bytes > MAX_PROMPT_BYTES {
                    return Err(Error::InvalidParams(format!(
                        "{} messages of {bytes} bytes; at most {MAX_MESSAGES} messages and {MAX_PROMPT_BYTES} bytes",
                        messages.len()
                    )));
                }
                if messages.is_empty() {
                    return Err(Error::InvalidParams("a chat needs at least one message".into()));
                }
                if let Some(m) = messages
                    .iter()
                    .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
                {
                    return Err(Error::InvalidParams(format!(
                        "message role `{}`; roles are system, user and assistant",
                        m.role
                    )));
                }
                let messages: Vec<ChatMessage> = messages
                    .into_iter()
                    .map(|m| ChatMessage {
                        role: m.role,
                        content: m.content,
                    })
                    .collect();
                llm.encode_chat(&messages)
            }
        }
        .map_err(|e| self.model_error(e))?;

        let mut sampling = sampling(params, llm.max_tokens_cap()).map_err(Error::InvalidParams)?;
        if let Some(left) = self.budget_left() {
            let prompt = ids.len() as u64;
            if prompt >= left {
                return Err(Error::OverQuota(format!(
                    "the tenant's token quota or budget allows {left} more tokens; this prompt alone is {prompt}"
                )));
            }
            // The generation stops at the budget, as if at max-tokens.
            sampling.max_tokens = sampling.max_tokens.min((left - prompt) as usize);
        }
        if std::time::Instant::now() >= self.deadline {
            return Err(Error::Timeout("the invocation's deadline has passed".into()));
        }
        let prompt_tokens = ids.len() as u64;
        let max_tokens = sampling.max_tokens as u64;
        let (events, progress) = llm
            .generate_metered(&self.tenant, ids, sampling, self.deadline)
            .map_err(engine_error)?;
        let meter = self.meter(model_name, progress, prompt_tokens + max_tokens);
        Ok(GenerationHandle {
            model: model_name.to_owned(),
            events,
            meter,
            finished: None,
        })
    }

    /// The next piece of text, `None` at the end.
    async fn next_text(&mut self, generation: &mut GenerationHandle) -> Result<Option<String>, Error> {
        if generation.finished.is_some() {
            return Ok(None);
        }
        loop {
            match generation.events.recv().await {
                Some(GenEvent::Text { text, .. }) => {
                    if !text.is_empty() {
                        return Ok(Some(text));
                    }
                }
                Some(GenEvent::Done { finish, usage }) => {
                    self.settle(generation.meter);
                    generation.finished = Some((finish, usage));
                    return Ok(None);
                }
                Some(GenEvent::Failed { error, usage }) => {
                    self.settle(generation.meter);
                    generation.finished = Some((model::FinishReason::Stop, usage));
                    return Err(engine_error(error));
                }
                None => {
                    self.settle(generation.meter);
                    generation.finished = Some((model::FinishReason::Stop, TokenUsage::default()));
                    return Err(Error::Internal("the model stopped the generation".into()));
                }
            }
        }
    }

    async fn complete(&mut self, model: String, input: Input, params: Params) -> HostResult<Completion> {
        let mut generation = match self.start(&model, input, params) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let mut text = String::new();
        loop {
            match self.next_text(&mut generation).await {
                Ok(Some(piece)) => text.push_str(&piece),
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        let (finish, usage) = generation
            .finished
            .unwrap_or((model::FinishReason::Stop, TokenUsage::default()));
        Ok(Ok(Completion {
            text,
            finish_reason: finish_reason(finish),
            usage: wit_usage(usage),
        }))
    }

    fn open(&mut self, model: String, input: Input, params: Params) -> HostResult<Resource<GenerationHandle>> {
        if self.open >= super::MAX_OPEN_GENERATIONS {
            return Ok(Err(Error::InvalidParams(format!(
                "{} generations are open; drop one first",
                super::MAX_OPEN_GENERATIONS
            ))));
        }
        match self.start(&model, input, params) {
            Ok(generation) => {
                let handle = self.table.push(generation)?;
                self.open += 1;
                Ok(Ok(handle))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

fn sampling(p: Params, cap: u32) -> Result<SamplingParams, String> {
    let d = SamplingParams::default();
    let seed = p.seed.unwrap_or_else(random_seed);
    let params = SamplingParams {
        temperature: p.temperature.unwrap_or(d.temperature),
        top_k: p.top_k.map_or(d.top_k, |k| k as usize),
        top_p: p.top_p.unwrap_or(d.top_p),
        repeat_penalty: p.repeat_penalty.unwrap_or(d.repeat_penalty),
        seed,
        max_tokens: p.max_tokens.unwrap_or(d.max_tokens as u32).min(cap) as usize,
        stop: p.stop,
    };
    params.validate()?;
    Ok(params)
}

/// A seed for requests that give none: different per request.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn engine_error(e: EngineError) -> Error {
    match e {
        EngineError::InvalidParams(m) => Error::InvalidParams(m),
        EngineError::Overloaded(m) => Error::Overloaded(m),
        EngineError::Timeout(m) => Error::Timeout(m),
        EngineError::Internal(m) => Error::Internal(m),
    }
}

fn finish_reason(f: model::FinishReason) -> FinishReason {
    match f {
        model::FinishReason::Stop => FinishReason::Stop,
        model::FinishReason::Length => FinishReason::Length,
    }
}

fn wit_usage(u: TokenUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt,
        completion_tokens: u.completion,
    }
}

impl llm::Host for LlmCtx {
    async fn infer(&mut self, model: String, prompt: String, params: Params) -> HostResult<Completion> {
        self.complete(model, Input::Prompt(prompt), params).await
    }

    async fn chat(&mut self, model: String, messages: Vec<Message>, params: Params) -> HostResult<Completion> {
        self.complete(model, Input::Chat(messages), params).await
    }

    async fn infer_stream(
        &mut self,
        model: String,
        prompt: String,
        params: Params,
    ) -> HostResult<Resource<GenerationHandle>> {
        self.open(model, Input::Prompt(prompt), params)
    }

    async fn chat_stream(
        &mut self,
        model: String,
        messages: Vec<Message>,
        params: Params,
    ) -> HostResult<Resource<GenerationHandle>> {
        self.open(model, Input::Chat(messages), params)
    }
}

impl llm::HostGeneration for LlmCtx {
    async fn next(&mut self, handle: Resource<GenerationHandle>) -> wasmtime::Result<Result<Option<String>, Error>> {
        // Take the handle's state out of the table while waiting, so the
        // context can count usage; put it back before returning. (If the
        // invocation is cancelled meanwhile, the placeholder is what its
        // table drops.)
        let slot = self.table.get_mut(&handle)?;
        let mut generation = std::mem::replace(slot, GenerationHandle::placeholder());
        let result = self.next_text(&mut generation).await;
        *self.table.get_mut(&handle)? = generation;
        Ok(result)
    }

    async fn finish(&mut self, handle: Resource<GenerationHandle>) -> wasmtime::Result<Option<(FinishReason, Usage)>> {
        let generation = self.table.get(&handle)?;
        Ok(generation.finished.map(|(f, u)| (finish_reason(f), wit_usage(u))))
    }

    async fn drop(&mut self, handle: Resource<GenerationHandle>) -> wasmtime::Result<()> {
        // Dropping the receiver cancels the generation at the next step; its
        // meter keeps what it used until then.
        let generation = self.table.delete(handle)?;
        self.settle(generation.meter);
        self.open -= 1;
        Ok(())
    }
}

impl embeddings::Host for LlmCtx {
    async fn embed(&mut self, model: String, texts: Vec<String>) -> HostResult<EmbeddingBatch> {
        if let Err(e) = self.check_allowed(&model) {
            return Ok(Err(e));
        }
        let embedder = match self.models.embedder(&model) {
            Ok(e) => e.clone(),
            Err(e) => return Ok(Err(self.model_error(e))),
        };
        let bytes: usize = texts.iter().map(String::len).sum();
        if texts.len() > MAX_EMBED_TEXTS || bytes > MAX_PROMPT_BYTES {
            return Ok(Err(Error::InvalidParams(format!(
                "{} texts of {bytes} bytes; at most {MAX_EMBED_TEXTS} texts and {MAX_PROMPT_BYTES} bytes per call",
                texts.len()
            ))));
        }
        if texts.is_empty() {
            return Ok(Ok(EmbeddingBatch {
                vectors: Vec::new(),
                prompt_tokens: 0,
            }));
        }
        if let Some(left) = self.budget_left() {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let need: u64 = match embedder.count_tokens(&refs) {
                Ok(counts) => counts.iter().sum::<usize>() as u64,
                Err(e) => return Ok(Err(engine_error(e))),
            };
            if need > left {
                return Ok(Err(Error::OverQuota(format!(
                    "the tenant's token quota or budget allows {left} more tokens; these texts are {need}"
                ))));
            }
        }
        match embedder.embed(texts, self.deadline).await {
            Ok((vectors, tokens)) => {
                let t = tokens as u64;
                self.record_embedding(&model, t);
                Ok(Ok(EmbeddingBatch {
                    vectors,
                    prompt_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
                }))
            }
            Err(e) => Ok(Err(engine_error(e))),
        }
    }
}
