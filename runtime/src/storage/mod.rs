//! Durable registry state behind one trait: SQLite embedded by default; a
//! PostgreSQL-compatible server can implement the same trait when several
//! nodes share one registry.

mod sqlite;

pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};

/// Storage failures. Callers log the detail and answer with a generic error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("registry database: {0}")]
    Database(String),
    /// A stored record could not be decoded.
    #[error("registry record is corrupt: {0}")]
    Corrupt(String),
}

/// One immutable version of a function.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    /// Function name.
    pub function: String,
    /// Version number, from 1, never reused for a function name.
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// The deployed spec, as JSON.
    pub spec_json: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// A function and the version it currently serves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionRecord {
    /// Function name.
    pub name: String,
    /// The owning tenant (every function belongs to `default` until tenants arrive).
    pub tenant: String,
    /// The active version.
    pub active: VersionRecord,
}

/// The registry's durable store. Methods block: call them off the async
/// runtime (`spawn_blocking`).
pub trait RegistryStore: Send + Sync + 'static {
    /// Stores a new version (numbered after the highest ever stored for the
    /// name) and makes it active, in one transaction.
    fn add_version(
        &self,
        tenant: &str,
        function: &str,
        digest: &str,
        size: u64,
        spec_json: &str,
    ) -> Result<VersionRecord, StorageError>;
    /// Makes an existing version active; `None` when it does not exist.
    fn activate(&self, function: &str, version: u32)
    -> Result<Option<VersionRecord>, StorageError>;
    /// Removes a function and its versions; false when it did not exist.
    fn delete(&self, function: &str) -> Result<bool, StorageError>;
    /// Every function with its active version.
    fn functions(&self) -> Result<Vec<FunctionRecord>, StorageError>;
    /// Every version of a function, oldest first.
    fn versions(&self, function: &str) -> Result<Vec<VersionRecord>, StorageError>;
}
