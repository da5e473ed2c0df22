//! The embedded registry: SQLite through `rusqlite`.
//!
//! Why rusqlite: it bundles SQLite (no system library to install), is the
//! most used and best kept SQLite binding, and its synchronous API is a good
//! fit for a registry written rarely and read at start-up; the async callers
//! run it on the blocking pool. WAL mode lets readers proceed during a write.

use super::{
    BillingStore, FunctionRecord, KeyRecord, LedgerRecord, RegistryStore, StorageError, TenantRecord, UsageFilter,
    UsageGrouping, UsageRow, VersionRecord,
};
use crate::units::now_ms;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    active_version INTEGER NOT NULL,
    next_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (function, version)
);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    quotas_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    scope TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS price_tables (
    version INTEGER PRIMARY KEY,
    table_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    event_id TEXT PRIMARY KEY,
    invocation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    function TEXT,
    model TEXT,
    time_ms INTEGER NOT NULL,
    day TEXT NOT NULL,
    price_version INTEGER NOT NULL,
    invocations INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,
    cpu_ns INTEGER NOT NULL,
    peak_memory_bytes INTEGER NOT NULL,
    memory_byte_ms TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    embedding_tokens INTEGER NOT NULL,
    device_ns INTEGER NOT NULL,
    device_bytes INTEGER NOT NULL DEFAULT 0,
    amount_micros INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_tenant_time ON ledger (tenant, time_ms);
";

/// The SQLite registry store.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the registry database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let connection = Connection::open(path).map_err(db)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .map_err(db)?;
        connection.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// Opens a connection for the ledger writer. It never checkpoints the
    /// write-ahead log itself: a checkpoint copies the log into the database
    /// and fsyncs it, which inside a commit stalls every request waiting on
    /// it. [`SqliteStore::checkpoint`] does that work from another thread.
    pub fn open_for_appends(path: &Path) -> Result<Self, StorageError> {
        let store = Self::open(path)?;
        store.with(|c| c.execute_batch("PRAGMA wal_autocheckpoint = 0;"))?;
        Ok(store)
    }

    /// Copies committed log pages into the database without blocking the
    /// writer (`PASSIVE`), so the log restarts from its beginning instead of
    /// growing.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.with(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StorageError> {
        // A panic while holding the lock leaves SQLite itself consistent (an
        // open transaction is rolled back on drop), so poisoning is ignored.
        let mut connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut connection).map_err(db)
    }
}

fn db(error: rusqlite::Error) -> StorageError {
    StorageError::Database(error.to_string())
}

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    Ok(VersionRecord {
        function: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        size: row.get(3)?,
        spec_json: row.get(4)?,
        created_ms: row.get(5)?,
    })
}

const VERSION_COLUMNS: &str = "function, version, digest, size, spec_json, created_ms";

impl RegistryStore for SqliteStore {
    fn add_version(
        &self,
        tenant: &str,
        function: &str,
        digest: &str,
        size: u64,
        spec_json: &str,
    ) -> Result<VersionRecord, StorageError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let next: Option<u32> = tx
                .query_row("SELECT next_version FROM functions WHERE name = ?1", [function], |r| {
                    r.get(0)
                })
                .optional()?;
            let version = next.unwrap_or(1);
            let record = VersionRecord {
                function: function.to_owned(),
                version,
                digest: digest.to_owned(),
                size,
                spec_json: spec_json.to_owned(),
                created_ms: now_ms(),
            };
            tx.execute(
                &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![function, version, digest, size, spec_json, record.created_ms],
            )?;
            tx.execute(
                "INSERT INTO functions (name, tenant, active_version, next_version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET active_version = ?3, next_version = ?4",
                params![function, tenant, version, version + 1],
            )?;
            tx.commit()?;
            Ok(record)
        })
    }

    fn activate(&self, function: &str, version: u32) -> Result<Option<VersionRecord>, StorageError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let record = tx
                .query_row(
                    &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE function = ?1 AND version = ?2"),
                    params![function, version],
                    version_from_row,
                )
                .optional()?;
            if record.is_some() {
                tx.execute(
                    "UPDATE functions SET active_version = ?2 WHERE name = ?1",
                    params![function, version],
                )?;
            }
            tx.commit()?;
            Ok(record)
        })
    }

    fn delete(&self, function: &str) -> Result<bool, StorageError> {
        self.with(|connection| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let removed = tx.execute("DELETE FROM functions WHERE name = ?1", [function])?;
            tx.execute("DELETE FROM versions WHERE function = ?1", [function])?;
            tx.commit()?;
            Ok(removed > 0)
        })
    }

    fn functions(&self) -> Result<Vec<FunctionRecord>, StorageError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT f.tenant, v.function, v.version, v.digest, v.size, v.spec_json, v.created_ms
                 FROM functions f JOIN versions v ON v.function = f.name AND v.version = f.active_version
                 ORDER BY f.name",
            )?;
            let rows = statement.query_map([], |row| {
                let tenant: String = row.get(0)?;
                let active = VersionRecord {
                    function: row.get(1)?,
                    version: row.get(2)?,
                    digest: row.get(3)?,
                    size: row.get(4)?,
                    spec_json: row.get(5)?,
                    created_ms: row.get(6)?,
                };
                Ok(FunctionRecord {
                    name: active.function.clone(),
                    tenant,
                    active,
                })
            })?;
            rows.collect()
        })
    }

    fn versions(&self, function: &str) -> Result<Vec<VersionRecord>, StorageError> {
        self.with(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE function = ?1 ORDER BY version"
            ))?;
            let rows = statement.query_map([function], version_from_row)?;
            rows.collect()
        })
    }
}

const LEDGER_COLUMNS: &str = "event_id, invocation_id, seq, tenant, function, model, time_ms, price_version, \
     invocations, wall_ns, cpu_ns, peak_memory_bytes, memory_byte_ms, tokens_in, tokens_out, embedding_tokens, \
     device_ns, device_bytes, amount_micros";

/// UTC day `YYYY-MM-DD` of a time in ms since the epoch. On the ledger's
/// hot path, so plain arithmetic (Howard Hinnant's `civil_from_days`)
/// instead of a date formatter.
pub fn utc_day(time_ms: u64) -> String {
    let days = (time_ms / 86_400_000) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn ledger_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerRecord> {
    let memory: String = row.get(12)?;
    Ok(LedgerRecord {
        event_id: row.get(0)?,
        invocation_id: row.get(1)?,
        seq: row.get(2)?,
        tenant: row.get(3)?,
        function: row.get(4)?,
        model: row.get(5)?,
        time_ms: row.get(6)?,
        price_version: row.get(7)?,
        invocations: row.get(8)?,
        wall_ns: row.get(9)?,
        cpu_ns: row.get(10)?,
        peak_memory_bytes: row.get(11)?,
        memory_byte_ms: memory.parse().unwrap_or_default(),
        tokens_in: row.get(13)?,
        tokens_out: row.get(14)?,
        embedding_tokens: row.get(15)?,
        device_ns: row.get(16)?,
        device_bytes: row.get(17)?,
        amount_micros: row.get(18)?,
    })
}

fn filter_sql(filter: &UsageFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = vec!["1 = 1".to_owned()];
    let mut values = Vec::new();
    if let Some(tenant) = &filter.tenant {
        clauses.push(format!("tenant = ?{}", values.len() + 1));
        values.push(Value::Text(tenant.clone()));
    }
    if let Some(since) = filter.since_ms {
        clauses.push(format!("time_ms >= ?{}", values.len() + 1));
        values.push(Value::Integer(since as i64));
    }
    if let Some(until) = filter.until_ms {
        clauses.push(format!("time_ms < ?{}", values.len() + 1));
        values.push(Value::Integer(until as i64));
    }
    (clauses.join(" AND "), values)
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.get(0)?,
        tenant: row.get(1)?,
        scope: row.get(2)?,
        secret_hash: row.get(3)?,
        created_ms: row.get(4)?,
        revoked_ms: row.get(5)?,
    })
}

impl BillingStore for SqliteStore {
    fn create_tenant(&self, name: &str, quotas_json: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            let added = c.execute(
                "INSERT OR IGNORE INTO tenants (name, quotas_json, created_ms) VALUES (?1, ?2, ?3)",
                params![name, quotas_json, now_ms()],
            )?;
            Ok(added > 0)
        })
    }

    fn set_tenant_quotas(&self, name: &str, quotas_json: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE tenants SET quotas_json = ?2 WHERE name = ?1",
                params![name, quotas_json],
            )?;
            Ok(changed > 0)
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, StorageError> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT name, quotas_json, created_ms FROM tenants ORDER BY name")?;
            let rows = statement.query_map([], |row| {
                Ok(TenantRecord {
                    name: row.get(0)?,
                    quotas_json: row.get(1)?,
                    created_ms: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn add_key(&self, key: &KeyRecord) -> Result<(), StorageError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, tenant, scope, secret_hash, created_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.id, key.tenant, key.scope, key.secret_hash, key.created_ms, key.revoked_ms],
            )?;
            Ok(())
        })
    }

    fn revoke_key(&self, id: &str, tenant: Option<&str>) -> Result<bool, StorageError> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE api_keys SET revoked_ms = ?3 WHERE id = ?1 AND revoked_ms IS NULL AND (?2 IS NULL OR tenant = ?2)",
                params![id, tenant, now_ms()],
            )?;
            Ok(changed > 0)
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StorageError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT id, tenant, scope, secret_hash, created_ms, revoked_ms FROM api_keys ORDER BY tenant, created_ms",
            )?;
            let rows = statement.query_map([], key_from_row)?;
            rows.collect()
        })
    }

    fn add_price_table(&self, table_json: &str) -> Result<u32, StorageError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let next: u32 = tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM price_tables", [], |r| {
                r.get(0)
            })?;
            tx.execute(
                "INSERT INTO price_tables (version, table_json, created_ms) VALUES (?1, ?2, ?3)",
                params![next, table_json, now_ms()],
            )?;
            tx.commit()?;
            Ok(next)
        })
    }

    fn latest_price_table(&self) -> Result<Option<(u32, String)>, StorageError> {
        self.with(|c| {
            c.query_row(
                "SELECT version, table_json FROM price_tables ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    fn append_ledger(&self, records: &[LedgerRecord]) -> Result<usize, StorageError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut added = 0;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO ledger ({LEDGER_COLUMNS}, day) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
                ))?;
                for r in records {
                    added += insert.execute(params![
                        r.event_id,
                        r.invocation_id,
                        r.seq,
                        r.tenant,
                        r.function,
                        r.model,
                        r.time_ms,
                        r.price_version,
                        r.invocations,
                        r.wall_ns,
                        r.cpu_ns,
                        r.peak_memory_bytes,
                        r.memory_byte_ms.to_string(),
                        r.tokens_in,
                        r.tokens_out,
                        r.embedding_tokens,
                        r.device_ns,
                        r.device_bytes,
                        r.amount_micros,
                        utc_day(r.time_ms),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(added)
        })
    }

    fn ledger(&self, filter: &UsageFilter) -> Result<Vec<LedgerRecord>, StorageError> {
        let (clause, values) = filter_sql(filter);
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {LEDGER_COLUMNS} FROM ledger WHERE {clause} ORDER BY time_ms, event_id"
            ))?;
            let rows = statement.query_map(rusqlite::params_from_iter(values), ledger_from_row)?;
            rows.collect()
        })
    }

    fn usage(&self, filter: &UsageFilter, grouping: UsageGrouping) -> Result<Vec<UsageRow>, StorageError> {
        // Summed in Rust from the matching rows: memory_byte_ms is a u128
        // and SQLite integers stop at i64.
        let records = self.ledger(filter)?;
        let mut groups: std::collections::BTreeMap<(String, Option<String>), (UsageRow, u128)> = Default::default();
        for r in records {
            let key = match grouping {
                UsageGrouping::Tenant => None,
                UsageGrouping::Function => Some(r.function.clone().unwrap_or_else(|| "(api)".into())),
                UsageGrouping::Model => Some(r.model.clone().unwrap_or_else(|| "(none)".into())),
                UsageGrouping::Day => Some(utc_day(r.time_ms)),
            };
            let (row, memory) = groups.entry((r.tenant.clone(), key.clone())).or_insert_with(|| {
                (
                    UsageRow {
                        tenant: r.tenant.clone(),
                        key,
                        ..UsageRow::default()
                    },
                    0,
                )
            });
            row.invocations += r.invocations;
            row.wall_ns += r.wall_ns;
            row.cpu_ns += r.cpu_ns;
            row.tokens_in += r.tokens_in;
            row.tokens_out += r.tokens_out;
            row.embedding_tokens += r.embedding_tokens;
            row.device_ns += r.device_ns;
            row.amount_micros += r.amount_micros;
            *memory += r.memory_byte_ms;
        }
        Ok(groups
            .into_values()
            .map(|(mut row, memory)| {
                let gib_seconds = memory as f64 / (1u64 << 30) as f64 / 1000.0;
                row.gb_seconds = (gib_seconds * 1e6).round() / 1e6;
                row
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days_match_a_date_formatter() {
        for ms in [
            0u64,
            951_782_400_000,
            1_700_000_000_000,
            1_795_478_400_000,
            4_102_444_800_000,
            1_709_164_800_123,
        ] {
            let expected =
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                    .to_string();
            assert_eq!(utc_day(ms), expected[..10], "{ms}");
        }
    }

    #[test]
    fn versions_are_numbered_and_activated() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Database(e.to_string()))?;
        let store = SqliteStore::open(&dir.path().join("registry.db"))?;
        assert_eq!(store.add_version("default", "f", "aa", 1, "{}")?.version, 1);
        assert_eq!(store.add_version("default", "f", "bb", 2, "{}")?.version, 2);
        assert_eq!(store.functions()?[0].active.digest, "bb");
        assert_eq!(store.activate("f", 1)?.map(|v| v.digest), Some("aa".into()));
        assert_eq!(store.functions()?[0].active.version, 1);
        assert_eq!(store.activate("f", 9)?, None);
        assert_eq!(store.versions("f")?.len(), 2);
        // Reopening sees the same state: it is durable.
        drop(store);
        let store = SqliteStore::open(&dir.path().join("registry.db"))?;
        assert_eq!(store.functions()?[0].active.version, 1);
        assert!(store.delete("f")?);
        assert!(!store.delete("f")?);
        assert!(store.functions()?.is_empty());
        // A deleted name starts over.
        assert_eq!(store.add_version("default", "f", "cc", 3, "{}")?.version, 1);
        Ok(())
    }
}
