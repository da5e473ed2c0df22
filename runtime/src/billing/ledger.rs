//! The usage ledger's writer: append-only, durable, with group commit.
//!
//! Every invocation hands its records to one writer thread and waits for the
//! commit. The writer takes everything queued into one transaction (one
//! fsync), so throughput does not fall to one fsync per request under load.
//! Commits start at most once per commit interval (`billing.commit_interval`,
//! default [`DEFAULT_COMMIT_INTERVAL`]): an idle node commits at once, a busy
//! one gathers the records of that interval into one fsync.

use crate::storage::{BillingStore, LedgerRecord, StorageError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Records queued before callers wait for room: bounds memory under a
/// burst while the disk catches up.
const QUEUE: usize = 4096;
/// Records in one transaction at most.
const MAX_BATCH: usize = 4096;
/// The shortest time between two commit starts. A commit here costs
/// ~0.3–0.7 ms of device time and CPU; bounding commits to 500/s keeps their
/// cost flat as load grows, for at most 2 ms more latency under load.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

type Ack = oneshot::Sender<Result<(), String>>;

/// Errors writing usage.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The writer stopped (the node is shutting down).
    #[error("the ledger writer has stopped")]
    Stopped,
    /// The database refused the write.
    #[error("ledger write failed: {0}")]
    Write(String),
}

/// A handle to the ledger writer.
#[derive(Clone)]
pub struct Ledger {
    queue: mpsc::Sender<(Vec<LedgerRecord>, Ack)>,
    alive: Arc<()>,
}

impl Ledger {
    /// Starts the writer on its own thread over `store` (its own connection).
    pub fn start(store: Arc<dyn BillingStore>, commit_interval: Duration) -> std::io::Result<Self> {
        let (queue, mut receiver) = mpsc::channel::<(Vec<LedgerRecord>, Ack)>(QUEUE);
        std::thread::Builder::new().name("wafer-ledger".into()).spawn(move || {
            let mut last_commit = Instant::now().checked_sub(commit_interval).unwrap_or_else(Instant::now);
            while let Some(first) = receiver.blocking_recv() {
                let since = last_commit.elapsed();
                if since < commit_interval {
                    std::thread::sleep(commit_interval - since);
                }
                last_commit = Instant::now();
                let mut batch = vec![first];
                let mut count = batch[0].0.len();
                while count < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => {
                            count += next.0.len();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let records: Vec<LedgerRecord> = batch.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
                let started = Instant::now();
                let result = store
                    .append_ledger(&records)
                    .map(|_| ())
                    .map_err(|e: StorageError| e.to_string());
                tracing::debug!(
                    records = records.len(),
                    commit_us = started.elapsed().as_micros() as u64,
                    "ledger commit"
                );
                if let Err(error) = &result {
                    tracing::error!(%error, records = records.len(), "ledger write failed");
                }
                for (_, ack) in batch {
                    let _ = ack.send(result.clone());
                }
            }
        })?;
        Ok(Self {
            queue,
            alive: Arc::new(()),
        })
    }

    /// A weak handle that dies with the last clone of this ledger (helper
    /// threads stop then).
    pub fn liveness(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.alive)
    }

    /// Appends records and returns once they are durable.
    pub async fn append(&self, records: Vec<LedgerRecord>) -> Result<(), LedgerError> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send((records, ack))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        done.await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Write)
    }
}
