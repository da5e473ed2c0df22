//! One generation of the API, metered and billed exactly once.
//!
//! A spawned task owns the scheduler's event receiver and the tenant's
//! concurrency permit. It forwards text to the HTTP side through a small
//! channel. Tokens are the scheduler's own count (the generation's meter,
//! never the text). When the HTTP side goes away (the client disconnected,
//! so hyper dropped the response body, or the handler's future), the task
//! drops the receiver, which cancels the sequence at its next step, and
//! bills what the meter shows: the prompt tokens fed so far (also when the
//! client left during the prompt) and the tokens sampled. Tokens the
//! scheduler samples after that are sent nowhere and are not billed. The
//! ledger write happens in the task, so it completes after the client is
//! gone, and before the response's last chunk otherwise: the `usage` a
//! client reads is what the ledger holds.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::error::OpenAiError;
use crate::allowance::TenantHold;
use crate::billing::{InvocationUsage, ModelUsage};
use crate::node::Node;
use wafer_host_apis::model::{EngineError, FinishReason, GenEvent, GenProgress, TokenUsage};

/// Text pieces waiting for a slow client: beyond this the task waits, while
/// the scheduler keeps generating into its (bounded by `max_tokens`) queue.
const PIECES_BUFFERED: usize = 64;

/// What the HTTP side receives.
#[derive(Debug)]
pub enum Piece {
    /// More text.
    Text(String),
    /// The end, after the ledger write: why it ended and what was billed,
    /// or the error that stopped it (what it used is billed too).
    End(Result<(FinishReason, TokenUsage), OpenAiError>),
}

/// Who pays for a generation, and for what.
pub struct Meter {
    /// The node (billing, config).
    pub node: Arc<Node>,
    /// The paying tenant.
    pub tenant: String,
    /// The ledger's invocation id (a ULID).
    pub invocation_id: String,
    /// The model's name (the price table's key).
    pub model: String,
    /// The scheduler's count of what the generation used.
    pub progress: Arc<GenProgress>,
    /// The tenant's concurrency slot, held until the ledger write.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The request's hold on the tenant's tokens, until the ledger write.
    pub token_hold: Option<Arc<TenantHold>>,
    /// When the request arrived.
    pub started: Instant,
}

/// What one event means for the HTTP side.
fn step(event: GenEvent) -> Step {
    match event {
        GenEvent::Text { text, .. } => Step::Text(text),
        GenEvent::Done { finish, .. } => Step::Done(finish),
        GenEvent::Failed { error, .. } => Step::Failed(error),
    }
}

enum Step {
    Text(String),
    Done(FinishReason),
    Failed(EngineError),
}

/// Starts the task for `events`; the receiver it returns yields text, then
/// exactly one [`Piece::End`] (unless it is dropped first).
pub fn spawn(meter: Meter, mut events: UnboundedReceiver<GenEvent>) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel(PIECES_BUFFERED);
    tokio::spawn(async move {
        // `None`: the client went away.
        let end: Option<Result<FinishReason, OpenAiError>> = loop {
            let event = tokio::select! {
                biased;
                event = events.recv() => event,
                () = tx.closed() => break None,
            };
            let Some(event) = event else {
                break Some(Err(OpenAiError::internal("the model's scheduler dropped a generation")));
            };
            match step(event) {
                Step::Text(text) if text.is_empty() => {}
                Step::Text(text) => {
                    if tx.send(Piece::Text(text)).await.is_err() {
                        break None;
                    }
                }
                Step::Done(finish) => break Some(Ok(finish)),
                Step::Failed(error) => break Some(Err(error.into())),
            }
        };
        // Cancels the sequence (if it still runs) at its next step.
        drop(events);
        let usage = meter.progress.usage();
        let billed = record(&meter, usage).await;
        drop(meter.permit);
        drop(meter.token_hold);
        if let Some(end) = end {
            let piece = match (end, billed) {
                (Ok(finish), Ok(())) => Ok((finish, usage)),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            };
            let _ = tx.send(Piece::End(piece)).await;
        }
    });
    rx
}

/// Writes the request's usage to the ledger (durably), once.
pub async fn record_tokens(
    node: &Node,
    tenant: &str,
    invocation_id: &str,
    started: Instant,
    usage: ModelUsage,
) -> Result<(), OpenAiError> {
    if !node.config.billing.enabled {
        return Ok(());
    }
    let usage = InvocationUsage {
        wall_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        models: vec![usage],
        ..InvocationUsage::default()
    };
    node.billing
        .record(tenant, None, invocation_id, &usage)
        .await
        .map(|_| ())
        .map_err(|e| OpenAiError::internal(format!("cannot record usage of {invocation_id}: {e}")))
}

async fn record(meter: &Meter, usage: TokenUsage) -> Result<(), OpenAiError> {
    record_tokens(
        &meter.node,
        &meter.tenant,
        &meter.invocation_id,
        meter.started,
        ModelUsage {
            model: meter.model.clone(),
            tokens_in: u64::from(usage.prompt),
            tokens_out: u64::from(usage.completion),
            ..ModelUsage::default()
        },
    )
    .await
}
