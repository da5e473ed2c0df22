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

use crate::model::{FinishReason, GenEvent, GenProgress, Models, TokenUsage};

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

/// A tenant's token allowance, shared by every invocation of the tenant
/// running at once (the runtime implements it over its quotas). An
/// invocation asks what is left before each generation and says what it
/// holds after each change, so two invocations cannot both spend the same
/// remaining tokens.
pub trait TokenAllowance: Send + Sync {
    /// Tokens the tenant may still use, net of what every invocation holds
    /// (the asking one included); `None` when the tenant has no limit.
    fn left(&self) -> Option<u64>;
    /// What this invocation holds now, replacing what it said before:
    /// running generations at their most (prompt + max tokens), ended ones
    /// and embeddings at what they used, until the ledger has them.
    fn hold(&self, tokens: u64);
}

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
    /// Tokens (prompt + completion + embedding) this invocation may use in
    /// all; `None` when unlimited.
    budget: Option<u64>,
    /// The tenant's allowance, shared with its other invocations.
    allowance: Option<Arc<dyn TokenAllowance>>,
    /// Tokens of work that ended, per model: embeddings, and generations
    /// that finished or were dropped (folded in then, so the state stays
    /// bounded however many generations a guest starts one after another).
    settled: BTreeMap<String, ModelTokens>,
    /// Generations still running, with the scheduler's meter, by meter id:
    /// at most the open streams plus one `infer`/`chat` call.
    running: BTreeMap<u64, Metered>,
    next_meter: u64,
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
            .field("usage", &self.usage())
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
            allowance: None,
            settled: BTreeMap::new(),
            running: BTreeMap::new(),
            next_meter: 0,
            table,
            open: 0,
        }
    }

    /// Limit the tokens this invocation may use, whatever other
    /// invocations do.
    pub fn with_token_budget(mut self, tokens: Option<u64>) -> Self {
        self.budget = tokens;
        self
    }

    /// Draw on the tenant's shared allowance (its quotas), telling it what
    /// this invocation holds as generations start and end.
    pub fn with_allowance(mut self, allowance: Arc<dyn TokenAllowance>) -> Self {
        self.allowance = Some(allowance);
        self
    }

    /// Tokens used so far, per model: what the schedulers fed and sampled
    /// for this invocation's generations (read from their meters, so a
    /// generation cancelled mid-prompt, or dropped with tokens unread,
    /// still counts what it used), and what the encoders were fed.
    pub fn usage(&self) -> BTreeMap<String, ModelTokens> {
        let mut usage = self.settled.clone();
        for g in self.running.values() {
            add_generation(&mut usage, &g.model, g.progress.usage());
        }
        usage
    }

    /// Tokens this invocation may still use: its own budget less what it
    /// holds, and the tenant's allowance (net of what all its invocations
    /// hold). A generation still running holds all it may use (prompt +
    /// max tokens), so generations open at once cannot overshoot together;
    /// once it ends it holds what it used.
    pub fn budget_left(&self) -> Option<u64> {
        let own = self.budget.map(|b| b.saturating_sub(self.held()));
        let shared = self.allowance.as_ref().and_then(|a| a.left());
        match (own, shared) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tokens this invocation holds: what it used, and for running
    /// generations what they may still use.
    fn held(&self) -> u64 {
        let settled: u64 = self
            .settled
            .values()
            .map(|t| t.prompt + t.completion + t.embedding)
            .sum();
        let running: u64 = self
            .running
            .values()
            .map(|g| {
                let t = g.progress.usage();
                (u64::from(t.prompt) + u64::from(t.completion)).max(g.holds)
            })
            .sum();
        settled + running
    }

    /// Tell the tenant's allowance what this invocation holds now.
    fn publish_hold(&self) {
        if let Some(a) = &self.allowance {
            a.hold(self.held());
        }
    }

    fn record_embedding(&mut self, model: &str, tokens: u64) {
        self.settled.entry(model.to_owned()).or_default().embedding += tokens;
        self.publish_hold();
    }

    /// Start metering a generation that may use `holds` tokens; returns
    /// its meter id.
    fn meter(&mut self, model: &str, progress: Arc<GenProgress>, holds: u64) -> u64 {
        let id = self.next_meter;
        self.next_meter += 1;
        self.running.insert(
            id,
            Metered {
                model: model.to_owned(),
                progress,
                holds,
            },
        );
        self.publish_hold();
        id
    }

    /// The generation behind meter `id` ended, or was dropped (which
    /// cancels it at its scheduler's next step; a step already running then
    /// is not counted, as for an API client that leaves). Its tokens move to
    /// the settled totals.
    fn settle(&mut self, id: u64) {
        if let Some(g) = self.running.remove(&id) {
            add_generation(&mut self.settled, &g.model, g.progress.usage());
        }
        self.publish_hold();
    }
}

/// Add a generation's tokens to per-model totals (nothing for one that used none).
fn add_generation(totals: &mut BTreeMap<String, ModelTokens>, model: &str, t: TokenUsage) {
    if t.prompt > 0 || t.completion > 0 {
        let entry = totals.entry(model.to_owned()).or_default();
        entry.prompt += u64::from(t.prompt);
        entry.completion += u64::from(t.completion);
    }
}

/// One generation's meter as the invocation sees it.
#[derive(Debug)]
struct Metered {
    model: String,
    progress: Arc<GenProgress>,
    /// Prompt + max tokens: what it may use at most.
    holds: u64,
}

/// The host side of a guest's `generation` resource.
pub struct GenerationHandle {
    model: String,
    events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
    /// Id of its meter in `LlmCtx::running`.
    meter: u64,
    finished: Option<(FinishReason, TokenUsage)>,
}

impl std::fmt::Debug for GenerationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationHandle")
            .field("model", &self.model)
            .field("meter", &self.meter)
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
            meter: u64::MAX,
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
