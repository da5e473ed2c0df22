//! Functions and their versions: deploy, roll back, delete, and the routing
//! snapshot requests are served from.
//!
//! A deploy compiles and validates outside any lock, then, under the write
//! lock, checks routes, records the version durably and swaps the routing
//! snapshot. A request holds an `Arc<Deployment>` for its whole life, so
//! in-flight requests finish on the version they started with.

use crate::artifacts::{self, ArtifactError, ArtifactStore};
use crate::capabilities;
use crate::config::LimitsConfig;
use crate::engine::WaferEngine;
use crate::instance::InvocationState;
use crate::manifest::{EffectiveLimits, FunctionSpec, validate_name};
use crate::metrics::Metrics;
use crate::outbound::OutboundPolicy;
use crate::routes::{Route, RoutingTable};
use crate::storage::{FunctionRecord, RegistryStore, StorageError, VersionRecord};
use crate::units::ByteSize;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Why a deploy, rollback or delete was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The name or spec is malformed.
    #[error("{0}")]
    InvalidSpec(String),
    /// The upload is larger than the node accepts.
    #[error("component is {size} bytes; this node accepts at most {max}")]
    TooLarge {
        /// Upload size.
        size: usize,
        /// The node's maximum.
        max: ByteSize,
    },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (no `\\0asm` header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build with `cargo build --target wasm32-wasip2` (or `wafer build`), or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Wasmtime refused the component.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component imports interfaces the node does not provide.
    #[error("the component imports interfaces this node does not provide: {}", .0.join(", "))]
    MissingImports(Vec<String>),
    /// The component does not export an HTTP handler.
    #[error("the component does not export `wasi:http/incoming-handler@0.2.x`, so it cannot serve HTTP: {0}")]
    NotHttpHandler(String),
    /// Another function already serves one of the routes.
    #[error("route `{route}` is already served by {function}")]
    RouteConflict {
        /// The route.
        route: String,
        /// Who has it.
        function: String,
    },
    /// No such function or version.
    #[error("{0}")]
    NotFound(String),
    /// Storage failure (internal).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Artifact store failure (internal).
    #[error("artifact store: {0}")]
    Artifacts(String),
}

impl From<ArtifactError> for DeployError {
    fn from(error: ArtifactError) -> Self {
        match error {
            ArtifactError::Compile(message) => Self::InvalidComponent(message),
            ArtifactError::Io(io) => Self::Artifacts(io.to_string()),
        }
    }
}

/// One active function version, ready to instantiate.
pub struct Deployment {
    /// Function name.
    pub name: String,
    /// Owning tenant.
    pub tenant: String,
    /// The stored version record.
    pub record: VersionRecord,
    /// The spec it was deployed with.
    pub spec: FunctionSpec,
    /// Limits after node defaults.
    pub limits: EffectiveLimits,
    /// Parsed routes.
    pub routes: Vec<Route>,
    /// The pre-instantiated component.
    pub pre: ProxyPre<InvocationState>,
    /// Environment passed to every instance (the spec's config).
    pub env: Vec<(String, String)>,
    /// The same config for `wasi:config/store`.
    pub config_vars: Arc<WasiConfigVariables>,
    /// Outbound HTTP allow-list.
    pub outbound: OutboundPolicy,
    /// Bounds instances of this function alive at once.
    pub concurrency: Arc<Semaphore>,
    /// `spec.models`, shared by every invocation's `LlmCtx` without a copy.
    pub models: Arc<[String]>,
}

/// A function as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct FunctionInfo {
    /// Name.
    pub name: String,
    /// Active version.
    pub version: u32,
    /// SHA-256 of the component.
    pub digest: String,
    /// Component size in bytes.
    pub size: u64,
    /// Routes.
    pub routes: Vec<String>,
    /// Effective limits.
    pub limits: EffectiveLimits,
    /// When the active version was deployed (ms since the epoch).
    pub created_ms: u64,
}

impl Deployment {
    /// The admin view of this deployment.
    pub fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.name.clone(),
            version: self.record.version,
            digest: self.record.digest.clone(),
            size: self.record.size,
            routes: self.routes.iter().map(Route::to_string).collect(),
            limits: self.limits.clone(),
            created_ms: self.record.created_ms,
        }
    }
}

type Table = RoutingTable<Arc<Deployment>>;

/// The registry of a node.
pub struct Registry {
    engine: WaferEngine,
    store: Arc<dyn RegistryStore>,
    artifacts: Arc<ArtifactStore>,
    limits: LimitsConfig,
    max_component_size: ByteSize,
    metrics: Arc<Metrics>,
    active: DashMap<String, Arc<Deployment>>,
    routes: ArcSwap<Table>,
    write_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens the registry and loads every function's active version (from
    /// the compiled cache when possible). A function that fails to load is
    /// logged and left out, so one bad artifact cannot keep a node down.
    pub async fn open(
        engine: WaferEngine,
        store: Arc<dyn RegistryStore>,
        artifacts: Arc<ArtifactStore>,
        limits: LimitsConfig,
        max_component_size: ByteSize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DeployError> {
        let registry = Self {
            engine,
            store,
            artifacts,
            limits,
            max_component_size,
            metrics,
            active: DashMap::new(),
            routes: ArcSwap::from_pointee(Table::default()),
            write_lock: tokio::sync::Mutex::new(()),
        };
        let records = registry
            .blocking({
                let store = registry.store.clone();
                move || store.functions()
            })
            .await?;
        for record in records {
            let name = record.name.clone();
            match registry.load_record(record).await {
                Ok(deployment) => {
                    registry.active.insert(name, Arc::new(deployment));
                }
                Err(error) => {
                    tracing::error!(function = %name, %error, "cannot load function; it is not served")
                }
            }
        }
        let table = registry.table().map_err(conflict)?;
        registry.routes.store(Arc::new(table));
        Ok(registry)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, DeployError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| DeployError::Artifacts(format!("blocking task failed: {e}")))?
            .map_err(DeployError::from)
    }

    /// The routing snapshot for one request.
    pub fn routes(&self) -> Arc<Table> {
        self.routes.load_full()
    }

    /// The active deployment of a function.
    pub fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.active.get(name).map(|d| d.clone())
    }

    /// Every active function, by name.
    pub fn list(&self) -> Vec<FunctionInfo> {
        let mut list: Vec<_> = self.active.iter().map(|d| d.info()).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Every stored version of a function.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, DeployError> {
        let store = self.store.clone();
        let owned = name.to_owned();
        let versions = self.blocking(move || store.versions(&owned)).await?;
        if versions.is_empty() {
            return Err(DeployError::NotFound(format!("no function named `{name}`")));
        }
        Ok(versions)
    }

    /// Validates, compiles and activates a new version of `name`.
    pub async fn deploy(
        &self,
        tenant: &str,
        name: &str,
        spec: FunctionSpec,
        bytes: Vec<u8>,
    ) -> Result<Arc<Deployment>, DeployError> {
        validate_name(name).map_err(DeployError::InvalidSpec)?;
        spec.check_shape().map_err(DeployError::InvalidSpec)?;
        let limits = spec.effective_limits(&self.limits).map_err(DeployError::InvalidSpec)?;
        if bytes.len() as u64 > self.max_component_size.0 {
            return Err(DeployError::TooLarge {
                size: bytes.len(),
                max: self.max_component_size,
            });
        }
        check_component_header(&bytes)?;
        let digest = artifacts::digest(&bytes);
        // Deploying exactly what is active already is a no-op, so scripts
        // (and `wafer serve --deploy`) can deploy on every run.
        if let Some(active) = self.get(name)
            && active.record.digest == digest
            && active.spec == spec
            && active.tenant == tenant
        {
            return Ok(active);
        }
        let size = bytes.len() as u64;
        let component = self.compile(digest.clone(), bytes).await?;
        let spec_json = serde_json::to_string(&spec).map_err(|e| DeployError::InvalidSpec(e.to_string()))?;
        let record = VersionRecord {
            function: name.to_owned(),
            version: 0,
            digest,
            size,
            spec_json: spec_json.clone(),
            created_ms: 0,
        };
        let mut deployment = self.prepare(tenant, record, spec, limits, &component)?;

        let _guard = self.write_lock.lock().await;
        self.check_routes(&deployment)?;
        let store = self.store.clone();
        let (tenant, function, digest) = (tenant.to_owned(), name.to_owned(), deployment.record.digest.clone());
        deployment.record = self
            .blocking(move || store.add_version(&tenant, &function, &digest, size, &spec_json))
            .await?;
        let deployment = Arc::new(deployment);
        self.install(name, deployment.clone())?;
        self.metrics.deploys.inc();
        tracing::info!(function = %name, version = deployment.record.version, digest = %deployment.record.digest, "deployed");
        Ok(deployment)
    }

    /// Makes an earlier version active again.
    pub async fn rollback(&self, name: &str, version: u32) -> Result<Arc<Deployment>, DeployError> {
        let _guard = self.write_lock.lock().await;
        let current = self
            .get(name)
            .ok_or_else(|| DeployError::NotFound(format!("no function named `{name}`")))?;
        let versions = self.versions(name).await?;
        let record = versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| DeployError::NotFound(format!("function `{name}` has no version {version}")))?;
        let deployment = self
            .load_record(FunctionRecord {
                name: name.to_owned(),
                tenant: current.tenant.clone(),
                active: record,
            })
            .await?;
        self.check_routes(&deployment)?;
        let store = self.store.clone();
        let function = name.to_owned();
        self.blocking(move || store.activate(&function, version))
            .await?
            .ok_or_else(|| DeployError::NotFound(format!("function `{name}` has no version {version}")))?;
        let deployment = Arc::new(deployment);
        self.install(name, deployment.clone())?;
        tracing::info!(function = %name, version, "rolled back");
        Ok(deployment)
    }

    /// Removes a function and all its versions.
    pub async fn delete(&self, name: &str) -> Result<(), DeployError> {
        let _guard = self.write_lock.lock().await;
        let store = self.store.clone();
        let function = name.to_owned();
        if !self.blocking(move || store.delete(&function)).await? {
            return Err(DeployError::NotFound(format!("no function named `{name}`")));
        }
        self.active.remove(name);
        self.routes.store(Arc::new(self.table().map_err(conflict)?));
        tracing::info!(function = %name, "deleted");
        Ok(())
    }

    async fn compile(&self, digest: String, bytes: Vec<u8>) -> Result<Component, DeployError> {
        let artifacts = self.artifacts.clone();
        let engine = self.engine.engine().clone();
        let before = artifacts.stats.compiled.load(Ordering::Relaxed);
        let component = tokio::task::spawn_blocking(move || artifacts.compile_and_store(&engine, &digest, &bytes))
            .await
            .map_err(|e| DeployError::Artifacts(format!("compile task failed: {e}")))??;
        if self.artifacts.stats.compiled.load(Ordering::Relaxed) > before {
            self.metrics.compilations.inc();
        }
        Ok(component)
    }

    async fn load_record(&self, record: FunctionRecord) -> Result<Deployment, DeployError> {
        let spec: FunctionSpec = serde_json::from_str(&record.active.spec_json)
            .map_err(|e| DeployError::Storage(StorageError::Corrupt(e.to_string())))?;
        // The node's limits may have changed since the deploy: clamp rather
        // than refuse, so a restart with a tighter config still serves.
        let limits = spec.effective_limits(&self.limits).unwrap_or_else(|reason| {
            tracing::warn!(function = %record.name, %reason, "stored limits exceed this node's; using node defaults");
            FunctionSpec::default()
                .effective_limits(&self.limits)
                .unwrap_or_else(|_| unreachable_defaults(&self.limits))
        });
        let artifacts = self.artifacts.clone();
        let engine = self.engine.engine().clone();
        let digest = record.active.digest.clone();
        let before = artifacts.stats.compiled.load(Ordering::Relaxed);
        let component = tokio::task::spawn_blocking(move || artifacts.load(&engine, &digest))
            .await
            .map_err(|e| DeployError::Artifacts(format!("load task failed: {e}")))??;
        if self.artifacts.stats.compiled.load(Ordering::Relaxed) > before {
            self.metrics.compilations.inc();
        }
        self.prepare(&record.tenant, record.active, spec, limits, &component)
    }

    fn prepare(
        &self,
        tenant: &str,
        record: VersionRecord,
        spec: FunctionSpec,
        limits: EffectiveLimits,
        component: &Component,
    ) -> Result<Deployment, DeployError> {
        let missing = capabilities::missing_imports(self.engine.engine(), component);
        if !missing.is_empty() {
            return Err(DeployError::MissingImports(missing));
        }
        let instance_pre = self
            .engine
            .linker()
            .instantiate_pre(component)
            .map_err(|e| DeployError::InvalidComponent(format!("{e:#}")))?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| DeployError::NotHttpHandler(format!("{e:#}")))?;
        let routes = spec
            .routes
            .iter()
            .map(|r| Route::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DeployError::InvalidSpec)?;
        let env: Vec<(String, String)> = spec.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let config_vars = Arc::new(WasiConfigVariables::from_iter(
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ));
        let outbound = OutboundPolicy::new(&spec.allowed_outbound_hosts).map_err(DeployError::InvalidSpec)?;
        Ok(Deployment {
            models: spec.models.clone().into(),
            name: record.function.clone(),
            tenant: tenant.to_owned(),
            concurrency: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            record,
            spec,
            limits,
            routes,
            pre,
            env,
            config_vars,
            outbound,
        })
    }

    /// Refuses `new` if another function already serves one of its routes
    /// (or it lists one route twice).
    fn check_routes(&self, new: &Deployment) -> Result<(), DeployError> {
        for (i, route) in new.routes.iter().enumerate() {
            if new.routes[..i].contains(route) {
                return Err(conflict((route.clone(), format!("`{}` (listed twice)", new.name))));
            }
            for other in self.active.iter() {
                if other.key() != &new.name && other.routes.contains(route) {
                    // Another tenant's function name is not revealed.
                    let holder = if other.tenant == new.tenant {
                        format!("function `{}`", other.name)
                    } else {
                        "a function of another tenant".to_owned()
                    };
                    return Err(conflict((route.clone(), holder)));
                }
            }
        }
        Ok(())
    }

    /// Builds the routing snapshot from the active deployments.
    fn table(&self) -> Result<Table, (Route, String)> {
        let entries = self
            .active
            .iter()
            .flat_map(|item| {
                let deployment = item.value().clone();
                item.routes
                    .iter()
                    .map(move |route| (route.clone(), deployment.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        RoutingTable::new(entries).map_err(|route| (route, "another function".to_owned()))
    }

    fn install(&self, name: &str, deployment: Arc<Deployment>) -> Result<(), DeployError> {
        self.active.insert(name.to_owned(), deployment);
        self.routes.store(Arc::new(self.table().map_err(conflict)?));
        Ok(())
    }
}

fn conflict((route, function): (Route, String)) -> DeployError {
    DeployError::RouteConflict {
        route: route.to_string(),
        function,
    }
}

/// Limits from the node defaults alone; those are validated at start-up, so
/// this only runs if that validation is ever bypassed.
fn unreachable_defaults(limits: &LimitsConfig) -> EffectiveLimits {
    EffectiveLimits {
        memory: limits.memory,
        timeout: limits.timeout.0,
        max_request_body: limits.max_request_body,
        max_response_body: limits.max_response_body,
        max_concurrency: limits.max_concurrency,
        max_log_bytes: limits.max_log_bytes,
    }
}

/// Tells garbage and core modules from components by their preamble, so the
/// error says what the bytes are instead of a parser message.
fn check_component_header(bytes: &[u8]) -> Result<(), DeployError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(DeployError::NotWasm);
    }
    // Core modules: version 1, layer 0. Components: layer 1.
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [0, 0]) => Err(DeployError::CoreModule),
        (_, [1, 0]) => Ok(()),
        _ => Err(DeployError::InvalidComponent("unknown WebAssembly binary layer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_garbage_modules_and_components_apart() {
        assert!(matches!(
            check_component_header(b"hello world"),
            Err(DeployError::NotWasm)
        ));
        assert!(matches!(
            check_component_header(b"\0asm\x01\0\0\0"),
            Err(DeployError::CoreModule)
        ));
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
