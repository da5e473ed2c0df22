//! A node: everything one `wafer serve` process holds, built from its config.

use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::auth::{AuthError, Authenticator};
use crate::billing::{Billing, BillingError};
use crate::config::NodeConfig;
use crate::engine::WaferEngine;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::registry::{DeployError, Registry};
use crate::storage::{SqliteStore, StorageError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config is inconsistent.
    #[error("invalid node config: {0}")]
    Config(String),
    /// The data dir cannot be used.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The engine could not be built.
    #[error("engine: {0}")]
    Engine(String),
    /// Credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Registry database.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Artifact store.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// Loading the registry.
    #[error(transparent)]
    Registry(#[from] DeployError),
    /// Billing.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The device pool could not start (e.g. `cuda = "required"` and no GPU).
    #[error("devices: {0}")]
    Devices(String),
    /// A configured model could not be loaded.
    #[error("models: {0}")]
    Models(String),
}

/// The shared state of a running node.
pub struct Node {
    /// The node's configuration.
    pub config: NodeConfig,
    /// Where its state lives.
    pub data_dir: PathBuf,
    /// The wasmtime engine and linker.
    pub engine: WaferEngine,
    /// Functions and routes.
    pub registry: Registry,
    /// Function logs.
    pub logs: LogStore,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Token checks.
    pub auth: Authenticator,
    /// Instance slots across all functions (`node.max_instances`).
    pub instances: Arc<Semaphore>,
    /// Artifacts and compiled-cache counters.
    pub artifacts: Arc<ArtifactStore>,
    /// Tenants, keys, prices, quotas and the ledger.
    pub billing: Billing,
    /// CPUs and GPUs for tensors and models.
    pub devices: wafer_host_apis::tensor::DevicePool,
    /// Models resident on the node, shared by every function.
    pub models: wafer_host_apis::model::Models,
    /// The models' memory on their device, held while the node runs.
    pub model_placements: Vec<wafer_host_apis::tensor::pool::ModelPlacement>,
    /// When the node started, Unix seconds (the `created` of its models).
    pub started_unix_secs: u64,
}

impl Node {
    /// Opens a node on `data_dir`. Returns the admin token too when it was
    /// made just now (first start), so the caller can print it once.
    pub async fn open(config: NodeConfig, data_dir: &Path) -> Result<(Arc<Self>, Option<String>), NodeError> {
        config.validate().map_err(NodeError::Config)?;
        create_private_dir(data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let engine = WaferEngine::new(&config).map_err(|e| NodeError::Engine(format!("{e:#}")))?;
        let devices =
            wafer_host_apis::tensor::DevicePool::new(&config.devices).map_err(|e| NodeError::Devices(e.to_string()))?;
        tracing::info!(devices = ?devices.devices().iter().map(ToString::to_string).collect::<Vec<_>>(), cuda = devices.cuda_status(), "device pool ready");
        let models = load_models(&config)?;
        let model_placements = place_models(&devices, &models)?;
        let (auth, new_token) = Authenticator::load_or_create(data_dir)?;
        let db = data_dir.join("registry.db");
        let store = Arc::new(SqliteStore::open(&db)?);
        let billing = Billing::open(
            &db,
            config.pricing.clone(),
            config.quotas.clone(),
            auth.keys(),
            config.billing.commit_interval.0,
        )?;
        let artifacts = Arc::new(ArtifactStore::open(data_dir, engine.fingerprint())?);
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::open(
            engine.clone(),
            store,
            artifacts.clone(),
            config.limits.clone(),
            config.node.max_component_size,
            metrics.clone(),
        )
        .await?;
        let node = Self {
            logs: LogStore::new(config.node.log_entries_per_function),
            instances: Arc::new(Semaphore::new(config.node.max_instances as usize)),
            data_dir: data_dir.to_owned(),
            config,
            engine,
            registry,
            metrics,
            auth,
            artifacts,
            billing,
            devices,
            models,
            model_placements,
            started_unix_secs: crate::units::now_ms() / 1000,
        };
        Ok((Arc::new(node), new_token))
    }
}

/// Loads `[models.*]`, with relative paths under the models folder.
fn load_models(config: &NodeConfig) -> Result<wafer_host_apis::model::Models, NodeError> {
    let dir = config
        .models_dir
        .clone()
        .unwrap_or_else(crate::config::default_models_dir);
    let configs = config
        .models
        .iter()
        .map(|(name, model)| {
            let mut model = model.clone();
            if model.path.is_relative() {
                model.path = dir.join(&model.path);
            }
            (name.clone(), model)
        })
        .collect();
    let models = wafer_host_apis::model::Models::load(&configs, None).map_err(|e| NodeError::Models(e.to_string()))?;
    if !config.models.is_empty() {
        tracing::info!(models = ?models.names().collect::<Vec<_>>(), "models loaded");
    }
    Ok(models)
}

/// Accounts each model's memory on the CPU device, where models run, so
/// `GET /v1/devices` shows it and tensors cannot claim it. Fails when the
/// models do not fit the device's share for models (`model_memory_percent`).
fn place_models(
    devices: &wafer_host_apis::tensor::DevicePool,
    models: &wafer_host_apis::model::Models,
) -> Result<Vec<wafer_host_apis::tensor::pool::ModelPlacement>, NodeError> {
    let Some(cpu) = devices
        .devices()
        .into_iter()
        .find(|d| d.kind == wafer_host_apis::tensor::DeviceKind::Cpu)
    else {
        return Ok(Vec::new());
    };
    models
        .list()
        .into_iter()
        .map(|info| {
            devices.place_model_on(cpu, &info.name, info.memory_bytes).map_err(|e| {
                NodeError::Models(format!(
                    "model `{}` ({} bytes) does not fit on {cpu}: {e}",
                    info.name, info.memory_bytes
                ))
            })
        })
        .collect()
}

/// The data dir holds the admin token and every tenant's code: owner only.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
