//! Continuous batching: one scheduler thread per loaded decoder replica.
//!
//! Requests from any invocation or tenant queue here. Every step the
//! scheduler admits waiting requests (round-robin across tenants, while the
//! batch has room and the cache has blocks for the request's whole budget),
//! then runs one forward pass over every running sequence: one token for
//! each sequence that is decoding, and prompt chunks for those still in
//! prefill, within a per-step token budget so a long prompt never stalls
//! the others for more than one chunk. A request joins the batch at the
//! next step; a sequence leaves as soon as it ends, is cancelled (its
//! receiver was dropped: the invocation ended, timed out, or its client
//! went away) or passes its deadline.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::kv_cache::{KvCache, SeqBlocks};
use super::llama::{Llama, SeqStep};
use super::sampler::{self, Rng, SamplingParams, StopMatcher};
use super::tokenizer::{TextStream, Tokenizer};

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-turn token or stop string.
    Stop,
    /// Max tokens or the context length.
    Length,
}

/// Tokens used by one request, as the host counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens fed (the prompt, template included).
    pub prompt: u32,
    /// Tokens sampled.
    pub completion: u32,
}

/// A request the engine refused or failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// Bad sampling parameters or input.
    #[error("{0}")]
    InvalidParams(String),
    /// The queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// Waited or ran past the deadline.
    #[error("{0}")]
    Timeout(String),
    /// The engine failed.
    #[error("{0}")]
    Internal(String),
}

/// What a generation sends back, in order: text pieces, then exactly one
/// `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text; `completion_tokens` counts every token sampled so far.
    Text {
        /// The text (may be empty when a token completed nothing yet).
        text: String,
        /// Tokens sampled so far.
        completion_tokens: u32,
    },
    /// The generation ended.
    Done {
        /// Why.
        finish: FinishReason,
        /// What it used.
        usage: TokenUsage,
    },
    /// The generation failed; `usage` counts what was sampled before.
    Failed {
        /// Why.
        error: EngineError,
        /// What it used.
        usage: TokenUsage,
    },
}

/// What one generation has used so far, counted by its scheduler as it
/// feeds prompt tokens and samples new ones, and read by whoever bills it.
///
/// Events carry the same numbers, but a receiver that is gone (the
/// invocation ended, the client left) reads no more events: the meter still
/// shows the prompt tokens a cancelled prefill fed and the tokens sampled
/// before the cancel was seen. It is updated before the event that shows a
/// change is sent, so it never lags an event.
#[derive(Debug, Default)]
pub struct GenProgress {
    prompt_fed: AtomicU32,
    completion: AtomicU32,
}

impl GenProgress {
    /// Tokens fed and sampled until now.
    pub fn usage(&self) -> TokenUsage {
        TokenUsage {
            prompt: self.prompt_fed.load(Ordering::Acquire),
            completion: self.completion.load(Ordering::Acquire),
        }
    }
}

/// One generation request.
#[derive(Debug)]
pub struct GenRequest {
    /// For fairness between tenants.
    pub tenant: String,
    /// Prompt token ids (BOS and template included).
    pub prompt: Vec<u32>,
    /// Sampling parameters, validated and capped.
    pub params: SamplingParams,
    /// Past this the request fails with `Timeout`, waiting or running.
    pub deadline: Instant,
    /// Where events go; dropping the receiver cancels the generation.
    pub events: UnboundedSender<GenEvent>,
    /// The meter the scheduler keeps up to date.
    pub progress: Arc<GenProgress>,
}

/// Limits of one scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Sequences decoding together.
    pub max_batch: usize,
    /// Tokens fed in one step (decode tokens plus prompt chunks).
    pub step_tokens: usize,
    /// Requests waiting; more are refused as overloaded.
    pub queue_depth: usize,
    /// Bytes of key/value cache.
    pub kv_cache_bytes: usize,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            // 16 sequences: enough to turn decode from memory-bound to
            // compute-bound on a CPU; more only adds latency.
            max_batch: 16,
            // One step of 128 tokens takes ~0.2 s on two cores for a 135M
            // model: the most a prefill may delay the decoding sequences.
            step_tokens: 128,
            queue_depth: 256,
            kv_cache_bytes: 256 << 20,
            queue_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of one scheduler (all replicas of a model add theirs up).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Forward steps run.
    pub steps: AtomicU64,
    /// Prompt tokens fed.
    pub prompt_tokens: AtomicU64,
    /// Tokens sampled.
    pub generated_tokens: AtomicU64,
    /// Sequences in the batch now.
    pub running: AtomicUsize,
    /// Requests waiting now.
    pub waiting: AtomicUsize,
    /// Largest batch seen.
    pub max_batch_seen: AtomicUsize,
    /// Sequence-steps summed over steps (mean batch = this / steps).
    pub batch_sum: AtomicU64,
    /// Nanoseconds spent in forward steps (sampling included).
    pub step_ns: AtomicU64,
}

/// The handle to one replica's scheduler thread.
#[derive(Clone)]
pub struct Scheduler {
    tx: SyncSender<GenRequest>,
    stats: Arc<SchedulerStats>,
    max_positions: usize,
    capacity_tokens: usize,
    queue_depth: usize,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("stats", &self.stats).finish()
    }
}

impl Scheduler {
    /// Start the thread for one replica.
    pub fn start(
        name: &str,
        model: Arc<Llama>,
        tokenizer: Arc<Tokenizer>,
        pool: Arc<rayon::ThreadPool>,
        config: SchedulerConfig,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(config.queue_depth.max(1));
        let kv = model.new_cache(config.kv_cache_bytes);
        let stats = Arc::new(SchedulerStats::default());
        let handle = Scheduler {
            tx,
            stats: stats.clone(),
            max_positions: model.max_positions(),
            capacity_tokens: kv.capacity_tokens(),
            queue_depth: config.queue_depth.max(1),
        };
        let worker = Worker {
            model,
            tokenizer,
            pool,
            config,
            kv,
            stats,
            waiting: BTreeMap::new(),
            cursor: None,
            running: Vec::new(),
        };
        std::thread::Builder::new()
            .name(format!("wafer-llm-{name}"))
            .spawn(move || worker.run(rx))?;
        Ok(handle)
    }

    /// Longest sequence (prompt + generation) a request may ask for.
    pub fn max_sequence(&self) -> usize {
        self.max_positions.min(self.capacity_tokens)
    }

    /// Counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Queue a request. The prompt must fit `max_sequence()` with at least
    /// one token to spare; `max_tokens` is cut to what fits.
    pub fn submit(&self, mut request: GenRequest) -> Result<(), EngineError> {
        let limit = self.max_sequence();
        if request.prompt.is_empty() {
            return Err(EngineError::InvalidParams("the prompt is empty".into()));
        }
        if request.prompt.len() >= limit {
            return Err(EngineError::InvalidParams(format!(
                "the prompt is {} tokens; this model serves at most {} tokens per sequence (prompt + completion)",
                request.prompt.len(),
                limit
            )));
        }
        request.params.max_tokens = request.params.max_tokens.min(limit - request.prompt.len());
        // `waiting` counts requests from here until the worker admits or
        // drops them, so it bounds the worker's queue too, not only the channel.
        if self.stats.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue_depth {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::Overloaded(format!(
                "{} requests are already waiting for this model (queue_depth); retry later",
                self.queue_depth
            )));
        }
        match self.tx.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(EngineError::Overloaded("the model's queue is full; retry later".into()))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(EngineError::Internal("the model's scheduler has stopped".into()))
            }
        }
    }

    /// Requests waiting plus running: the least-loaded replica gets the next.
    pub fn load(&self) -> usize {
        self.stats.waiting.load(Ordering::Relaxed) + self.stats.running.load(Ordering::Relaxed)
    }
}

struct Sequence {
    request: GenRequest,
    blocks: SeqBlocks,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    /// Positions already in the cache.
    fed: usize,
    generated: u32,
    text: TextStream,
    stop: StopMatcher,
    rng: Rng,
}

impl Sequence {
    /// Prompt tokens fed so far (all of them once decoding started) and
    /// tokens sampled.
    fn usage(&self) -> TokenUsage {
        TokenUsage {
            prompt: self.fed.min(self.request.prompt.len()) as u32,
            completion: self.generated,
        }
    }
}

struct Worker {
    model: Arc<Llama>,
    tokenizer: Arc<Tokenizer>,
    pool: Arc<rayon::ThreadPool>,
    config: SchedulerConfig,
    kv: KvCache,
    stats: Arc<SchedulerStats>,
    /// Per tenant, oldest first.
    waiting: BTreeMap<String, VecDeque<(Instant, GenRequest)>>,
    /// The tenant admitted last, for round-robin.
    cursor: Option<String>,
    running: Vec<Sequence>,
}

/// How often an idle scheduler wakes to expire waiting requests.
const IDLE_TICK: Duration = Duration::from_millis(100);

impl Worker {
    fn run(mut self, rx: Receiver<GenRequest>) {
        loop {
            if self.running.is_empty() {
                // Nothing can run until a request arrives or frees room.
                match rx.recv_timeout(IDLE_TICK) {
                    Ok(r) => self.enqueue(r),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) if self.waiting.is_empty() => return,
                    Err(RecvTimeoutError::Disconnected) => {}
                }
            }
            while let Ok(r) = rx.try_recv() {
                self.enqueue(r);
            }
            self.expire_waiting();
            self.admit();
            if !self.running.is_empty() {
                self.step();
            }
            self.publish_gauges();
        }
    }

    fn enqueue(&mut self, request: GenRequest) {
        self.waiting
            .entry(request.tenant.clone())
            .or_default()
            .push_back((Instant::now(), request));
    }

    fn waiting_len(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    fn publish_gauges(&self) {
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
    }

    /// Drop cancelled requests and fail the ones past their deadline.
    fn expire_waiting(&mut self) {
        let now = Instant::now();
        let queue_timeout = self.config.queue_timeout;
        let before = self.waiting_len();
        for queue in self.waiting.values_mut() {
            queue.retain(|(queued, r)| {
                if r.events.is_closed() {
                    return false;
                }
                let message = if now >= r.deadline {
                    "the request's deadline passed while it waited for the model".to_owned()
                } else if now.duration_since(*queued) >= queue_timeout {
                    format!(
                        "waited {} s for the model (the queue timeout); the model is busy",
                        queue_timeout.as_secs()
                    )
                } else {
                    return true;
                };
                let _ = r.events.send(GenEvent::Failed {
                    error: EngineError::Timeout(message),
                    usage: TokenUsage::default(),
                });
                false
            });
        }
        self.waiting.retain(|_, q| !q.is_empty());
        let dropped = before - self.waiting_len();
        self.stats.waiting.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Admit waiting requests round-robin across tenants while the batch
    /// has room and the cache has blocks for each whole request.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_batch && !self.waiting.is_empty() {
            // The first tenant after the one admitted last.
            let tenant = match &self.cursor {
                Some(c) => self
                    .waiting
                    .range::<String, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .next(),
                None => None,
            }
            .or_else(|| self.waiting.iter().next())
            .map(|(t, _)| t.clone());
            let Some(tenant) = tenant else { return };
            let Some(queue) = self.waiting.get_mut(&tenant) else {
                return;
            };
            let Some((_, front)) = queue.front() else { return };
            let need = front.prompt.len() + front.params.max_tokens;
            let Some(blocks) = self.kv.reserve(need) else {
                // Wait for running sequences to free blocks; admitting a
                // smaller request first would starve this one.
                return;
            };
            let Some((_, request)) = queue.pop_front() else { return };
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            if queue.is_empty() {
                self.waiting.remove(&tenant);
            }
            self.cursor = Some(tenant);
            let rng = Rng::new(request.params.seed);
            let stop = StopMatcher::new(request.params.stop.clone());
            self.running.push(Sequence {
                tokens: request.prompt.clone(),
                request,
                blocks,
                fed: 0,
                generated: 0,
                text: TextStream::default(),
                stop,
                rng,
            });
        }
    }

    /// One forward pass over the batch, then sampling.
    fn step(&mut self) {
        let now = Instant::now();
        // Leave out (and free) sequences nobody waits for any more.
        let mut i = 0;
        while i < self.running.len() {
            let seq = &self.running[i];
            if seq.request.events.is_closed() {
                let seq = self.running.swap_remove(i);
                self.kv.release(seq.blocks);
            } else if now >= seq.request.deadline {
                let seq = self.running.swap_remove(i);
                let _ = seq.request.events.send(GenEvent::Failed {
                    error: EngineError::Timeout("the request's deadline passed during generation".into()),
                    usage: seq.usage(),
                });
                self.kv.release(seq.blocks);
            } else {
                i += 1;
            }
        }
        if self.running.is_empty() {
            return;
        }
        // Decode tokens first (one each), then prompt chunks in the budget
        // that is left, oldest sequence first.
        let decoding = self.running.iter().filter(|s| s.fed >= s.request.prompt.len()).count();
        let mut budget = self.config.step_tokens.saturating_sub(decoding).max(1);
        let mut plan: Vec<(usize, usize)> = Vec::with_capacity(self.running.len());
        for (i, seq) in self.running.iter().enumerate() {
            let pending = seq.tokens.len() - seq.fed;
            if seq.fed >= seq.request.prompt.len() {
                plan.push((i, pending));
            } else if budget > 0 {
                let n = pending.min(budget);
                budget -= n;
                plan.push((i, n));
            }
        }
        let steps: Vec<SeqStep<'_>> = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.running[i];
                SeqStep {
                    blocks: &s.blocks,
                    start: s.fed,
                    tokens: &s.tokens[s.fed..s.fed + n],
                    logits: s.fed + n == s.tokens.len(),
                }
            })
            .collect();
        // The whole pass runs inside the pool: each matrix product's parallel
        // region then costs ~10 µs instead of ~30 µs from outside it, and a
        // decode step has ~150 of them.
        let step_started = Instant::now();
        let (model, kv, pool) = (&self.model, &mut self.kv, &self.pool);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| pool.install(|| model.forward(kv, &steps, pool))));
        drop(steps);
        let logits = match result {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => return self.fail_all(format!("the model failed: {e}")),
            Err(_) => return self.fail_all("the model failed (panic in a forward step)".into()),
        };
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.batch_sum.fetch_add(plan.len() as u64, Ordering::Relaxed);
        self.stats.max_batch_seen.fetch_max(plan.len(), Ordering::Relaxed);
        let prompt_fed: usize = plan
            .iter()
            .map(|&(i, n)| {
                let s = &self.running[i];
                s.request.prompt.len().saturating_sub(s.fed).min(n)
            })
            .sum();
        self.stats.prompt_tokens.fetch_add(prompt_fed as u64, Ordering::Relaxed);

        let mut logits = logits.into_iter();
        let mut finished = Vec::new();
        for &(i, n) in &plan {
            let seq = &mut self.running[i];
            seq.fed += n;
            let fed = seq.fed.min(seq.request.prompt.len()) as u32;
            seq.request.progress.prompt_fed.store(fed, Ordering::Release);
            if seq.fed < seq.tokens.len() {
                continue; // still in prefill
            }
            let Some(mut row) = logits.next() else {
                finished.push((
                    i,
                    Err(EngineError::Internal("a forward step returned too few logits".into())),
                ));
                continue;
            };
            let token = sampler::sample(&mut row, &seq.request.params, &seq.tokens, &mut seq.rng);
            seq.generated += 1;
            seq.request.progress.completion.store(seq.generated, Ordering::Release);
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            if self.tokenizer.ends_generation(token) {
                finished.push((i, Ok(FinishReason::Stop)));
                continue;
            }
            seq.tokens.push(token);
            let piece = match seq.text.push(&self.tokenizer, token) {
                Ok(p) => p,
                Err(e) => {
                    finished.push((i, Err(EngineError::Internal(e.to_string()))));
                    continue;
                }
            };
            let (text, stopped) = seq.stop.push(&piece);
            let _ = seq.request.events.send(GenEvent::Text {
                text,
                completion_tokens: seq.generated,
            });
            if stopped {
                finished.push((i, Ok(FinishReason::Stop)));
            } else if seq.generated as usize >= seq.request.params.max_tokens {
                finished.push((i, Ok(FinishReason::Length)));
            }
        }
        let step_ns = u64::try_from(step_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.step_ns.fetch_add(step_ns, Ordering::Relaxed);
        // Highest index first so swap_remove leaves the others in place.
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, outcome) in finished {
            let mut seq = self.running.swap_remove(i);
            let usage = seq.usage();
            let event = match outcome {
                Ok(finish) => {
                    let tail = if finish == FinishReason::Length {
                        seq.stop.finish()
                    } else {
                        String::new()
                    };
                    if !tail.is_empty() {
                        let _ = seq.request.events.send(GenEvent::Text {
                            text: tail,
                            completion_tokens: seq.generated,
                        });
                    }
                    GenEvent::Done { finish, usage }
                }
                Err(error) => GenEvent::Failed { error, usage },
            };
            let _ = seq.request.events.send(event);
            self.kv.release(seq.blocks);
        }
    }

    fn fail_all(&mut self, message: String) {
        tracing::error!(%message, "forward step failed; failing the batch");
        for seq in self.running.drain(..) {
            let _ = seq.request.events.send(GenEvent::Failed {
                error: EngineError::Internal(message.clone()),
                usage: seq.usage(),
            });
            self.kv.release(seq.blocks);
        }
    }
}

/// A finished generation collected from its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// All text.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// What it used.
    pub usage: TokenUsage,
}

/// Shared by tests and callers that want the whole text: drain events.
pub async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
) -> Result<Collected, (EngineError, TokenUsage)> {
    let mut text = String::new();
    let mut completion = 0;
    while let Some(event) = rx.recv().await {
        match event {
            GenEvent::Text {
                text: t,
                completion_tokens,
            } => {
                text.push_str(&t);
                completion = completion_tokens;
            }
            GenEvent::Done { finish, usage } => return Ok(Collected { text, finish, usage }),
            GenEvent::Failed { error, usage } => return Err((error, usage)),
        }
    }
    Err((
        EngineError::Internal("the scheduler dropped the request".into()),
        TokenUsage { prompt: 0, completion },
    ))
}
