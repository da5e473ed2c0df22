//! The embedding worker: one thread per loaded encoder, which drains every
//! request waiting and embeds all their texts in one batch, so concurrent
//! callers share each pass through the model.

use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::bert::BertModel;
use super::scheduler::EngineError;

/// Vectors in input order and the tokens fed.
pub type EmbedResult = Result<(Vec<Vec<f32>>, usize), EngineError>;

struct Job {
    texts: Vec<String>,
    deadline: Instant,
    reply: oneshot::Sender<EmbedResult>,
}

/// Texts embedded in one pass: larger batches gain little on a CPU and
/// delay the first caller.
const MAX_BATCH_TEXTS: usize = 64;

/// Handle to an encoder's worker thread.
#[derive(Clone)]
pub struct Embedder {
    tx: SyncSender<Job>,
    model: Arc<BertModel>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dim", &self.model.dim()).finish()
    }
}

impl Embedder {
    /// Start the worker.
    pub fn start(
        name: &str,
        model: Arc<BertModel>,
        pool: Arc<rayon::ThreadPool>,
        queue_depth: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue_depth.max(1));
        let worker_model = model.clone();
        std::thread::Builder::new()
            .name(format!("wafer-embed-{name}"))
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    let mut count = jobs[0].texts.len();
                    while count < MAX_BATCH_TEXTS {
                        match rx.try_recv() {
                            Ok(job) => {
                                count += job.texts.len();
                                jobs.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    let now = Instant::now();
                    jobs.retain(|j| {
                        if j.reply.is_closed() {
                            return false;
                        }
                        if now >= j.deadline {
                            // The receiver may be gone already; nothing to do then.
                            return false;
                        }
                        true
                    });
                    run_batch(&worker_model, &pool, jobs);
                }
            })?;
        Ok(Embedder { tx, model })
    }

    /// The vector width.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// Tokens per text the model reads (longer texts are truncated).
    pub fn max_tokens(&self) -> usize {
        self.model.max_tokens()
    }

    /// Tokens each text uses, counted without running the model.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>, EngineError> {
        self.model
            .count_tokens(texts)
            .map_err(|e| EngineError::InvalidParams(e.to_string()))
    }

    /// Embed `texts`; waits for the batch it joins.
    pub async fn embed(&self, texts: Vec<String>, deadline: Instant) -> EmbedResult {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { texts, deadline, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(EngineError::Overloaded("the model's queue is full; retry later".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(EngineError::Internal("the model's worker has stopped".into()));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(EngineError::Timeout("the deadline passed before the model ran".into())))
    }
}

fn run_batch(model: &BertModel, pool: &rayon::ThreadPool, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let texts: Vec<&str> = jobs.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.embed_counted(&texts, pool)));
    match result {
        Ok(Ok((vectors, counts))) => {
            let mut vectors = vectors.into_iter();
            let mut counts = counts.into_iter();
            for job in jobs {
                let n = job.texts.len();
                let mine: Vec<Vec<f32>> = vectors.by_ref().take(n).collect();
                // Each caller is billed for its own texts' tokens only.
                let tokens = counts.by_ref().take(n).sum();
                let _ = job.reply.send(Ok((mine, tokens)));
            }
        }
        Ok(Err(e)) => {
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::InvalidParams(e.to_string())));
            }
        }
        Err(_) => {
            tracing::error!("embedding batch panicked");
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::Internal("the model failed".into())));
            }
        }
    }
}
