//! The usage ledger's writer: append-only, durable, with group commit.
//!
//! Every invocation hands its records to one writer thread and waits for the
//! commit. The writer takes everything queued into one transaction (one
//! fsync), so throughput does not fall to one fsync per request under load.

use crate::storage::{BillingStore, LedgerRecord, StorageError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Records queued before callers wait for room: bounds memory under a
/// burst while the disk catches up.
const QUEUE: usize = 4096;
/// Records in one transaction at most.
const MAX_BATCH: usize = 1024;

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
}

impl Ledger {
    /// Starts the writer on its own thread over `store` (its own connection).
    pub fn start(store: Arc<dyn BillingStore>) -> std::io::Result<Self> {
        let (queue, mut receiver) = mpsc::channel::<(Vec<LedgerRecord>, Ack)>(QUEUE);
        std::thread::Builder::new().name("wafer-ledger".into()).spawn(move || {
            while let Some(first) = receiver.blocking_recv() {
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
                let result = store
                    .append_ledger(&records)
                    .map(|_| ())
                    .map_err(|e: StorageError| e.to_string());
                if let Err(error) = &result {
                    tracing::error!(%error, records = records.len(), "ledger write failed");
                }
                for (_, ack) in batch {
                    let _ = ack.send(result.clone());
                }
            }
        })?;
        Ok(Self { queue })
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
