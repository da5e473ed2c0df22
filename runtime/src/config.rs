//! The node's `wafer.toml`: where it listens, where it keeps data, and the
//! limits every function runs under.
//!
//! Every limit has a default here, next to the reason for its value, so that
//! nothing is hidden in the code that enforces it.

use crate::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors reading a config file. The message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a bad value.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Where `wafer models pull` puts models and where relative model paths
/// point: `$XDG_CACHE_HOME/wafer/models`, else `~/.cache/wafer/models`.
pub fn default_models_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("wafer").join("models")
}

/// The node configuration (`wafer serve --config wafer.toml`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address to listen on; `--listen` overrides it.
    pub listen: Option<SocketAddr>,
    /// Where the registry, artifacts and compiled cache live; `--data-dir` overrides it.
    pub data_dir: Option<PathBuf>,
    /// Default and maximum limits for functions.
    pub limits: LimitsConfig,
    /// Node-wide capacity.
    pub node: NodeLimits,
    /// Prices, in micro-units of the currency.
    pub pricing: crate::billing::pricing::PriceTable,
    /// Default quotas of every tenant (each may override them).
    pub quotas: crate::billing::quotas::TenantQuotas,
    /// Metering switch.
    pub billing: BillingConfig,
    /// The device pool: which CPUs and GPUs tensors and models run on, and
    /// tensor limits per invocation and tenant.
    pub devices: wafer_host_apis::tensor::PoolConfig,
    /// Models loaded at start, by the name functions use (`[models.NAME]`).
    pub models: std::collections::BTreeMap<String, wafer_host_apis::model::ModelConfig>,
    /// Where relative model paths point; default `~/.cache/wafer/models`
    /// (where `wafer models pull` puts them).
    pub models_dir: Option<PathBuf>,
}

/// Whether invocations are metered into the ledger, and how it commits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// On by default. Off only for a private node that bills nobody, or to
    /// measure what metering costs (`bench/http_hello.py`); budgets and token
    /// quotas then see no spend.
    pub enabled: bool,
    /// The shortest time between two ledger commits (group commit): longer
    /// means fewer fsyncs and more records per commit under load, and that
    /// much more latency per request. Default 2 ms.
    pub commit_interval: HumanDuration,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            commit_interval: HumanDuration(crate::billing::ledger::DEFAULT_COMMIT_INTERVAL),
        }
    }
}

impl NodeConfig {
    /// Reads and validates a node config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a node config from TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that defaults sit inside the maximums.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.memory > l.max_memory {
            return Err(format!(
                "limits.memory ({}) is above limits.max_memory ({})",
                l.memory, l.max_memory
            ));
        }
        if l.timeout > l.max_timeout {
            return Err(format!(
                "limits.timeout ({}) is above limits.max_timeout ({})",
                l.timeout, l.max_timeout
            ));
        }
        if l.max_concurrency == 0 {
            return Err("limits.max_concurrency must be at least 1".into());
        }
        if self.node.max_instances == 0 {
            return Err("node.max_instances must be at least 1".into());
        }
        self.quotas.validate().map_err(|e| format!("quotas: {e}"))?;
        if l.max_concurrency > self.node.max_instances {
            return Err(format!(
                "limits.max_concurrency ({}) is above node.max_instances ({})",
                l.max_concurrency, self.node.max_instances
            ));
        }
        Ok(())
    }
}

/// Function limits: the defaults a manifest gets when it says nothing, and
/// the ceilings a manifest may not exceed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per instance. 128 MiB fits a typical HTTP handler with
    /// room to parse a large JSON body, while 100s of instances fit in RAM.
    pub memory: ByteSize,
    /// The most memory a function may ask for. Also sizes the pooling
    /// allocator's slots, so it bounds what one request can pin.
    pub max_memory: ByteSize,
    /// Wall-clock time per invocation, host waits included. 30 s is long
    /// enough for a model call that generates a few hundred tokens on a CPU.
    pub timeout: HumanDuration,
    /// The longest a function may ask for (streaming generations).
    pub max_timeout: HumanDuration,
    /// Request body size. 10 MiB covers documents and images for embedding
    /// without letting one client fill the node's memory.
    pub max_request_body: ByteSize,
    /// Response body size, counted as it streams. 100 MiB.
    pub max_response_body: ByteSize,
    /// Instances of one function running at once. Keeps one hot function from
    /// taking every slot of the node.
    pub max_concurrency: u32,
    /// Bytes of stdout+stderr kept per invocation; more is cut, with a marker.
    /// 64 KiB holds a few hundred log lines; a chatty guest cannot fill memory.
    pub max_log_bytes: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory: ByteSize::mib(128),
            max_memory: ByteSize::mib(1024),
            timeout: HumanDuration(Duration::from_secs(30)),
            max_timeout: HumanDuration(Duration::from_secs(300)),
            max_request_body: ByteSize::mib(10),
            max_response_body: ByteSize::mib(100),
            max_concurrency: 64,
            max_log_bytes: ByteSize::kib(64),
        }
    }
}

/// Node-wide capacity.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeLimits {
    /// Instances alive at once across all functions; past it requests get 503.
    /// Sizes the pooling allocator: each slot reserves virtual address space
    /// (not RAM), so 256 slots is cheap and still far above what 2–16 cores
    /// can run.
    pub max_instances: u32,
    /// Largest component a deploy may upload. JS components are ~12 MiB.
    pub max_component_size: ByteSize,
    /// Log entries kept per function for `wafer logs`.
    pub log_entries_per_function: usize,
    /// How long the node waits for in-flight requests on shutdown.
    pub shutdown_grace: HumanDuration,
}

impl Default for NodeLimits {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_component_size: ByteSize::mib(64),
            log_entries_per_function: 2000,
            shutdown_grace: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = NodeConfig::parse("").unwrap_or_default();
        assert_eq!(config.limits, LimitsConfig::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = NodeConfig::parse("[limits]\nmemroy = \"1MiB\"\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("memroy"), "{err}");
    }

    #[test]
    fn defaults_above_maximums_are_refused() {
        let err = NodeConfig::parse("[limits]\nmemory = \"2GiB\"\n")
            .err()
            .unwrap_or_default();
        assert!(err.contains("max_memory"), "{err}");
    }
}
