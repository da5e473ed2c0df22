//! Ledger commit cost: records per second at several batch sizes.
//!
//! Run with: cargo run --release -p wafer-runtime --example ledger

use std::time::Instant;
use wafer_runtime::storage::{BillingStore, LedgerRecord, SqliteStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("registry.db"))?;
    let mut next = 0u64;
    for batch in [1usize, 8, 32, 128] {
        let batches = 2000 / batch.min(64) + 10;
        let started = Instant::now();
        for _ in 0..batches {
            let records: Vec<LedgerRecord> = (0..batch)
                .map(|_| {
                    next += 1;
                    LedgerRecord {
                        event_id: format!("{next:026}:0"),
                        invocation_id: format!("{next:026}"),
                        tenant: "default".into(),
                        function: Some("hello".into()),
                        time_ms: 1_795_000_000_000 + next,
                        invocations: 1,
                        wall_ns: 100_000,
                        cpu_ns: 50_000,
                        peak_memory_bytes: 1 << 20,
                        memory_byte_ms: 100,
                        amount_micros: 2,
                        ..LedgerRecord::default()
                    }
                })
                .collect();
            store.append_ledger(&records)?;
        }
        let elapsed = started.elapsed();
        println!(
            "batch {batch:>4}: {:>8.0} records/s, {:>7.1} µs per commit",
            (batches * batch) as f64 / elapsed.as_secs_f64(),
            elapsed.as_micros() as f64 / batches as f64
        );
    }
    Ok(())
}
