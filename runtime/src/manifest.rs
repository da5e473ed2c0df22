//! A function's manifest: the `wafer.toml` in its folder.
//!
//! ```toml
//! name = "hello"
//! component = "target/wasm32-wasip2/release/hello.wasm"
//! routes = ["/hello", "api.example.com/hello"]
//! allowed_outbound_hosts = ["https://api.example.com"]
//!
//! [limits]
//! memory = "64MiB"
//! timeout = "10s"
//! max_request_body = "1MiB"
//! max_response_body = "10MiB"
//! max_concurrency = 16
//!
//! [config]
//! GREETING = "Hello"
//! ```
//!
//! The CLI reads the manifest and uploads a [`FunctionSpec`] (everything but
//! the component path) next to the component bytes; the node checks the spec
//! again, since the admin API can be called without the CLI.

use crate::config::{ConfigError, LimitsConfig};
use crate::routes::Route;
use crate::units::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Config values a function may carry: keys and values are bounded so a
/// manifest cannot make every instantiation expensive.
const MAX_CONFIG_ENTRIES: usize = 256;
const MAX_CONFIG_VALUE_BYTES: usize = 16 * 1024;
const MAX_ROUTES: usize = 32;

/// The manifest file as written by the developer.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Function name: lowercase letters, digits and `-`.
    pub name: String,
    /// Path of the component, relative to the manifest.
    pub component: PathBuf,
    /// Everything the node needs besides the bytes.
    #[serde(flatten)]
    pub spec: FunctionSpec,
}

impl Manifest {
    /// Reads a manifest; the component path is made relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut manifest: Manifest = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        validate_name(&manifest.name).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        manifest.spec.check_shape().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        if let Some(dir) = path.parent() {
            manifest.component = dir.join(&manifest.component);
        }
        Ok(manifest)
    }
}

/// What a deploy uploads besides the component bytes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Routes: `"/prefix"` or `"host/prefix"`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Limits; anything unset takes the node's default.
    #[serde(default)]
    pub limits: FunctionLimits,
    /// Values passed to the guest as environment variables and through
    /// `wasi:config/store`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Origins the guest may call with `wasi:http/outgoing-handler`, such as
    /// `"https://api.example.com"` or `"https://*.example.com:8443"`. Empty:
    /// no outbound HTTP, so a guest cannot reach the node's network.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// `false`: callers need an invoke key of the function's tenant. Public
    /// functions (the default) take anonymous calls, billed to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// Models the function may call through `wafer:ai/llm` and
    /// `wafer:ai/embeddings`, by the node's names for them. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// Per-function limits as written in a manifest.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionLimits {
    /// Linear memory per instance.
    pub memory: Option<ByteSize>,
    /// Wall-clock time per invocation.
    pub timeout: Option<HumanDuration>,
    /// Request body size.
    pub max_request_body: Option<ByteSize>,
    /// Response body size.
    pub max_response_body: Option<ByteSize>,
    /// Instances running at once.
    pub max_concurrency: Option<u32>,
}

/// Limits after the node's defaults and ceilings are applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EffectiveLimits {
    /// Linear memory per instance, in bytes.
    pub memory: ByteSize,
    /// Wall-clock time per invocation.
    pub timeout: Duration,
    /// Request body size.
    pub max_request_body: ByteSize,
    /// Response body size.
    pub max_response_body: ByteSize,
    /// Instances running at once.
    pub max_concurrency: u32,
    /// Log bytes kept per invocation.
    pub max_log_bytes: ByteSize,
}

impl FunctionSpec {
    /// Whether anonymous calls are allowed.
    pub fn is_public(&self) -> bool {
        self.public.unwrap_or(true)
    }

    /// Checks everything that does not depend on the node: routes, config.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.routes.len() > MAX_ROUTES {
            return Err(format!("a function may have at most {MAX_ROUTES} routes"));
        }
        for route in &self.routes {
            Route::parse(route)?;
        }
        if self.config.len() > MAX_CONFIG_ENTRIES {
            return Err(format!("config may have at most {MAX_CONFIG_ENTRIES} entries"));
        }
        for (key, value) in &self.config {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!(
                    "config key `{key}` must be non-empty and contain no `=` or NUL"
                ));
            }
            if value.len() > MAX_CONFIG_VALUE_BYTES || value.contains('\0') {
                return Err(format!(
                    "config value for `{key}` must be at most {MAX_CONFIG_VALUE_BYTES} bytes without NUL"
                ));
            }
        }
        for host in &self.allowed_outbound_hosts {
            crate::outbound::OutboundRule::parse(host)?;
        }
        if self.limits.max_concurrency == Some(0) {
            return Err("limits.max_concurrency must be at least 1".into());
        }
        Ok(())
    }

    /// Applies the node's defaults and refuses values above its ceilings.
    pub fn effective_limits(&self, node: &LimitsConfig) -> Result<EffectiveLimits, String> {
        let l = &self.limits;
        let memory = l.memory.unwrap_or(node.memory);
        if memory > node.max_memory {
            return Err(format!(
                "limits.memory {memory} is above this node's maximum of {}",
                node.max_memory
            ));
        }
        let timeout = l.timeout.unwrap_or(node.timeout);
        if timeout > node.max_timeout {
            return Err(format!(
                "limits.timeout {timeout} is above this node's maximum of {}",
                node.max_timeout
            ));
        }
        if timeout.0.is_zero() {
            return Err("limits.timeout must be above zero".into());
        }
        let max_concurrency = l.max_concurrency.unwrap_or(node.max_concurrency);
        if max_concurrency > node.max_concurrency {
            return Err(format!(
                "limits.max_concurrency {max_concurrency} is above this node's maximum of {}",
                node.max_concurrency
            ));
        }
        let max_request_body = l.max_request_body.unwrap_or(node.max_request_body);
        if max_request_body > node.max_request_body {
            return Err(format!(
                "limits.max_request_body {max_request_body} is above this node's maximum of {}",
                node.max_request_body
            ));
        }
        let max_response_body = l.max_response_body.unwrap_or(node.max_response_body);
        if max_response_body > node.max_response_body {
            return Err(format!(
                "limits.max_response_body {max_response_body} is above this node's maximum of {}",
                node.max_response_body
            ));
        }
        Ok(EffectiveLimits {
            memory,
            timeout: timeout.0,
            max_request_body,
            max_response_body,
            max_concurrency,
            max_log_bytes: node.max_log_bytes,
        })
    }
}

/// Function names appear in URLs, logs and metrics labels: keep them simple.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "function name `{name}` must be 1-63 characters of a-z, 0-9 and `-`, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_resolves_component_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("wafer.toml");
        std::fs::write(
            &path,
            "name = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n[limits]\nmemory = \"64MiB\"\n[config]\nA = \"b\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let manifest = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(manifest.component, dir.path().join("hello.wasm"));
        assert_eq!(manifest.spec.limits.memory, Some(ByteSize::mib(64)));
        assert_eq!(manifest.spec.config.get("A").map(String::as_str), Some("b"));
    }

    #[test]
    fn unknown_manifest_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("wafer.toml");
        std::fs::write(&path, "name = \"x\"\ncomponent = \"x.wasm\"\nroutez = []\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Manifest::load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("routez") && err.contains("wafer.toml"), "{err}");
    }

    #[test]
    fn limits_above_node_ceiling_are_refused() {
        let node = LimitsConfig::default();
        let mut spec = FunctionSpec::default();
        spec.limits.memory = Some(node.max_memory);
        assert!(spec.effective_limits(&node).is_ok());
        spec.limits.memory = Some(ByteSize(node.max_memory.0 + 1));
        assert!(spec.effective_limits(&node).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("hello-2").is_ok());
        for bad in ["", "Hello", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
