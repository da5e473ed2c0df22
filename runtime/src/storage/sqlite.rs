//! The embedded registry: SQLite through `rusqlite`.
//!
//! Why rusqlite: it bundles SQLite (no system library to install), is the
//! most used and best kept SQLite binding, and its synchronous API is a good
//! fit for a registry written rarely and read at start-up; the async callers
//! run it on the blocking pool. WAL mode lets readers proceed during a write.

use super::{FunctionRecord, RegistryStore, StorageError, VersionRecord};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

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
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(db)?;
        connection.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        // A panic while holding the lock leaves SQLite itself consistent (an
        // open transaction is rolled back on drop), so poisoning is ignored.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut connection).map_err(db)
    }
}

fn db(error: rusqlite::Error) -> StorageError {
    StorageError::Database(error.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
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
            let tx = connection.transaction()?;
            let next: Option<u32> = tx
                .query_row("SELECT next_version FROM functions WHERE name = ?1", [function], |r| r.get(0))
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

    fn activate(
        &self,
        function: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StorageError> {
        self.with(|connection| {
            let tx = connection.transaction()?;
            let record = tx
                .query_row(
                    &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE function = ?1 AND version = ?2"),
                    params![function, version],
                    version_from_row,
                )
                .optional()?;
            if record.is_some() {
                tx.execute("UPDATE functions SET active_version = ?2 WHERE name = ?1", params![function, version])?;
            }
            tx.commit()?;
            Ok(record)
        })
    }

    fn delete(&self, function: &str) -> Result<bool, StorageError> {
        self.with(|connection| {
            let tx = connection.transaction()?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
