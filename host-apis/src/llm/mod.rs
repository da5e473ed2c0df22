//! The host side of `wafer:ai/llm` and `wafer:ai/embeddings`: [`LlmCtx`],
//! one invocation's view of the node's [`Models`], with the function's
//! allow-list, its deadline, a token budget from its tenant's quotas, and
//! the usage the host counts for the ledger.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wafer_host_apis::llm::LlmCtx;
//! use wafer_host_apis::model::Models;
//!
//! let ctx = LlmCtx::new(Models::empty(), vec!["smollm2".into()], "tenant-a", Instant::now() + Duration::from_secs(30));
//! assert!(ctx.usage().is_empty());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::model::{FinishReason, GenEvent, Models, TokenUsage};

mod host;

/// The WIT interfaces [`add_to_linker`] provides.
pub const LLM_INTERFACE: &str = "wafer:ai/llm@0.1.0";
/// See [`LLM_INTERFACE`].
pub const EMBEDDINGS_INTERFACE: &str = "wafer:ai/embeddings@0.1.0";

/// Generations one invocation may hold open at once: each holds a batch
/// slot and cache blocks on the model.
pub const MAX_OPEN_GENERATIONS: usize = 8;
/// Bytes of prompt (or of all messages) per call: far above any context
/// window, and bounds tokenizer work before the token count is known.
pub const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Messages per chat call.
pub const MAX_MESSAGES: usize = 1024;
/// Texts per `embed` call.
pub const MAX_EMBED_TEXTS: usize = 256;

/// Tokens one invocation used on one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTokens {
    /// Prompt tokens fed to a decoder.
    pub prompt: u64,
    /// Tokens sampled.
    pub completion: u64,
    /// Tokens fed to an encoder.
    pub embedding: u64,
}

/// One invocation's model state.
pub struct LlmCtx {
    models: Models,
    allowed: Arc<[String]>,
    tenant: String,
    deadline: Instant,
    /// Tokens (prompt + completion + embedding) this invocation may still
    /// use, from its tenant's quotas; `None` when unlimited.
    budget: Option<u64>,
    usage: BTreeMap<String, ModelTokens>,
    table: ResourceTable,
    /// Generations in `table`.
    open: usize,
}

impl std::fmt::Debug for LlmCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmCtx")
            .field("tenant", &self.tenant)
            .field("allowed", &self.allowed)
            .field("budget", &self.budget)
            .field("usage", &self.usage)
            .finish()
    }
}

impl LlmCtx {
    /// `allowed` names the models the function's manifest lists.
    pub fn new(
        models: Models,
        allowed: impl Into<Arc<[String]>>,
        tenant: impl Into<String>,
        deadline: Instant,
    ) -> Self {
        let table = ResourceTable::new();
        LlmCtx {
            models,
            allowed: allowed.into(),
            tenant: tenant.into(),
            deadline,
            budget: None,
            usage: BTreeMap::new(),
            table,
            open: 0,
        }
    }

    /// Limit the tokens this invocation may use (from quotas and budget).
    pub fn with_token_budget(mut self, tokens: Option<u64>) -> Self {
        self.budget = tokens;
        self
    }

    /// Tokens used so far, per model.
    pub fn usage(&self) -> &BTreeMap<String, ModelTokens> {
        &self.usage
    }

    /// Tokens the budget still allows.
    pub fn budget_left(&self) -> Option<u64> {
        self.budget
    }

    fn record(&mut self, model: &str, f: impl FnOnce(&mut ModelTokens)) {
        f(self.usage.entry(model.to_owned()).or_default());
    }

    fn spend(&mut self, tokens: u64) {
        if let Some(b) = &mut self.budget {
            *b = b.saturating_sub(tokens);
        }
    }
}

/// The host side of a guest's `generation` resource.
pub struct GenerationHandle {
    model: String,
    events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
    prompt_tokens: u32,
    /// Completion tokens already added to the invocation's usage.
    counted: u32,
    prompt_counted: bool,
    finished: Option<(FinishReason, TokenUsage)>,
}

impl std::fmt::Debug for GenerationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationHandle")
            .field("model", &self.model)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("counted", &self.counted)
            .field("finished", &self.finished)
            .finish()
    }
}

impl GenerationHandle {
    /// Stands in for a handle while its state is borrowed out of the table.
    fn placeholder() -> Self {
        let (_, events) = tokio::sync::mpsc::unbounded_channel();
        GenerationHandle {
            model: String::new(),
            events,
            prompt_tokens: 0,
            counted: 0,
            prompt_counted: true,
            finished: None,
        }
    }
}

struct HasLlm;

impl HasData for HasLlm {
    type Data<'a> = &'a mut LlmCtx;
}

/// Add `wafer:ai/llm` and `wafer:ai/embeddings` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LlmCtx,
) -> wasmtime::Result<()> {
    crate::bindings::llm::add_to_linker::<T, HasLlm>(linker, get)?;
    crate::bindings::embeddings::add_to_linker::<T, HasLlm>(linker, get)?;
    Ok(())
}
