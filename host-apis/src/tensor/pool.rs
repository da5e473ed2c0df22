//! The device pool: which devices this node computes on, how much memory
//! each has and who holds it, and where new work goes.
//!
//! Each device has a capacity split in two meters: tensors (invocations)
//! may use at most `100 - model_memory_percent` percent of it, models may
//! use whatever tensors do not hold. Work is placed on the least-loaded
//! device of the preferred kind (CUDA when there is one); a model's
//! replica stays on the device it was placed on, and invocations that use
//! it lease that device.
//!
//! ```toml
//! [pool]
//! cuda = "auto"              # "auto" | "required" | "off"
//! cuda_devices = [0, 1]      # ordinals to use; absent: all
//! model_memory_percent = 60
//! [[pool.cpu]]
//! threads = 0                # 0: one per core
//! memory_bytes = 8589934592  # absent: half the machine's memory
//! [pool.tensor]
//! max_live_tensors = 4096
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::backend::{DeviceId, DeviceKind, cuda};
use super::error::{Result, TensorError};
use super::limits::TensorLimits;
use super::memory::{Budget, MemoryMeter, MeterKind, Reservation};
use super::ops::Exec;
use super::{Device, Tensor};

/// Whether to use CUDA GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CudaMode {
    /// Use GPUs when a driver and a device are found, else the CPU (with a
    /// warning that says why).
    #[default]
    Auto,
    /// Refuse to start without a GPU.
    Required,
    /// Never touch the CUDA libraries.
    Off,
}

/// One CPU device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuDeviceConfig {
    /// Worker threads; 0 (the default) is one per core.
    pub threads: usize,
    /// Memory budget in bytes. Default: half the machine's memory, leaving
    /// the rest to the runtime, wasm instances and the page cache.
    pub memory_bytes: Option<u64>,
}

/// The `[pool]` table of `wafer.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Whether to use CUDA GPUs. Default `auto`.
    pub cuda: CudaMode,
    /// The CUDA ordinals to use; absent (the default) uses every GPU.
    pub cuda_devices: Option<Vec<usize>>,
    /// CPU devices. Default: one using every core. Several are useful to
    /// split a large machine, and in tests of placement.
    pub cpu: Vec<CpuDeviceConfig>,
    /// Percent of each device's memory only models may use. Default 60:
    /// model weights are what a GPU is for, and invocations' tensors are
    /// short-lived; 40% still leaves a 80 GiB GPU 32 GiB for tensors.
    pub model_memory_percent: u8,
    /// Per-invocation and per-tenant tensor limits.
    pub tensor: TensorLimits,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            cuda: CudaMode::Auto,
            cuda_devices: None,
            cpu: vec![CpuDeviceConfig::default()],
            model_memory_percent: 60,
            tensor: TensorLimits::default(),
        }
    }
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `cuda = "required"` and no GPU could be used.
    #[error("cuda = \"required\" but {0}")]
    CudaRequired(String),
    /// The configuration is inconsistent.
    #[error("invalid pool config: {0}")]
    Config(String),
    /// A device failed to start.
    #[error(transparent)]
    Device(#[from] TensorError),
}

/// Memory and load of one device, as reported by [`DevicePool::stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStats {
    /// `cpu:0`, `cuda:1`.
    pub id: String,
    /// Human-readable device name.
    pub name: String,
    /// Bytes the pool may use on it.
    pub capacity: u64,
    /// Bytes held by models.
    pub models: u64,
    /// Bytes held by invocations' tensors.
    pub invocations: u64,
    /// Sessions holding a lease now.
    pub leases: usize,
}

struct Slot {
    device: Device,
    name: String,
    capacity: u64,
    /// Everything on the device (models and tensors).
    total: Arc<MemoryMeter>,
    /// Models' share (for reporting; the limit is the capacity).
    models: Arc<MemoryMeter>,
    /// Tensors' share, capped at the part not reserved for models.
    tensors: Arc<MemoryMeter>,
    leases: AtomicUsize,
}

impl Slot {
    fn new(device: Device, name: String, capacity: u64, model_percent: u8) -> Slot {
        let id = device.id().to_string();
        let tensor_cap = capacity / 100 * u64::from(100 - model_percent.min(100))
            + capacity % 100 * u64::from(100 - model_percent.min(100)) / 100;
        Slot {
            device,
            name,
            capacity,
            total: MemoryMeter::new(MeterKind::Device(id.clone()), capacity),
            models: MemoryMeter::new(MeterKind::Device(id.clone()), capacity),
            tensors: MemoryMeter::new(MeterKind::Device(id), tensor_cap),
            leases: AtomicUsize::new(0),
        }
    }

    fn load(&self) -> (usize, u64) {
        (self.leases.load(Ordering::Acquire), self.total.used())
    }
}

struct Inner {
    slots: Vec<Slot>,
    /// Slots new work prefers: the GPUs when there are any, else the CPUs.
    preferred: Vec<usize>,
    limits: TensorLimits,
    tenants: Mutex<HashMap<String, Weak<MemoryMeter>>>,
    cuda_status: String,
}

/// The devices of this node. Cheap to clone.
#[derive(Clone)]
pub struct DevicePool(Arc<Inner>);

impl std::fmt::Debug for DevicePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePool")
            .field(
                "devices",
                &self.0.slots.iter().map(|s| s.device.id()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn machine_memory() -> u64 {
    // /proc/meminfo's MemTotal, in kB; 16 GiB where it cannot be read.
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(16 << 30, |kb| kb.saturating_mul(1024))
}

impl DevicePool {
    /// Discovers devices per `config`.
    pub fn new(config: &PoolConfig) -> Result<Self, PoolError> {
        config.tensor.validate()?;
        if config.model_memory_percent > 100 {
            return Err(PoolError::Config(format!(
                "model_memory_percent = {} is over 100",
                config.model_memory_percent
            )));
        }
        let mut slots = Vec::new();
        let percent = config.model_memory_percent;

        let cuda_status = match config.cuda {
            CudaMode::Off => "CUDA disabled by config (cuda = \"off\")".to_string(),
            mode => match cuda::probe() {
                Ok(found) => {
                    let wanted: Vec<_> = found
                        .into_iter()
                        .filter(|d| config.cuda_devices.as_ref().is_none_or(|w| w.contains(&d.ordinal)))
                        .collect();
                    if let Some(w) = &config.cuda_devices
                        && let Some(missing) = w.iter().find(|o| !wanted.iter().any(|d| d.ordinal == **o))
                    {
                        return Err(PoolError::Config(format!(
                            "cuda_devices names GPU {missing}, which does not exist"
                        )));
                    }
                    let n = wanted.len();
                    for info in wanted {
                        match cuda::CudaDevice::new(info.ordinal) {
                            Ok(dev) => {
                                slots.push(Slot::new(Device::new(Arc::new(dev)), info.name, info.memory, percent))
                            }
                            Err(e) if mode == CudaMode::Required => {
                                return Err(PoolError::CudaRequired(e.to_string()));
                            }
                            Err(e) => tracing::warn!(ordinal = info.ordinal, "skipping GPU: {e}"),
                        }
                    }
                    format!("{n} CUDA device(s)")
                }
                Err(why) => {
                    if mode == CudaMode::Required {
                        return Err(PoolError::CudaRequired(why));
                    }
                    tracing::warn!("{why}; tensors run on the CPU");
                    why
                }
            },
        };
        if mode_required_without_gpu(config.cuda, &slots) {
            return Err(PoolError::CudaRequired("no usable CUDA device".into()));
        }
        let gpus: Vec<usize> = (0..slots.len()).collect();

        let cpus = config.cpu.len();
        let default_mem = machine_memory() / 2 / (cpus.max(1) as u64);
        for (i, c) in config.cpu.iter().enumerate() {
            let dev = Device::cpu(i, c.threads)?;
            let name = dev.backend().name();
            slots.push(Slot::new(dev, name, c.memory_bytes.unwrap_or(default_mem), percent));
        }
        if slots.is_empty() {
            return Err(PoolError::Config(
                "no devices: [pool] has no cpu and no GPU was found".into(),
            ));
        }
        let preferred = if gpus.is_empty() {
            (0..slots.len()).collect()
        } else {
            gpus
        };
        Ok(DevicePool(Arc::new(Inner {
            slots,
            preferred,
            limits: config.tensor.clone(),
            tenants: Mutex::default(),
            cuda_status,
        })))
    }

    /// What CUDA discovery found, e.g. "no CUDA driver found (libcuda...)".
    pub fn cuda_status(&self) -> &str {
        &self.0.cuda_status
    }

    /// The devices, in order (GPUs first).
    pub fn devices(&self) -> Vec<DeviceId> {
        self.0.slots.iter().map(|s| s.device.id()).collect()
    }

    /// Memory and load of every device.
    pub fn stats(&self) -> Vec<DeviceStats> {
        self.0
            .slots
            .iter()
            .map(|s| DeviceStats {
                id: s.device.id().to_string(),
                name: s.name.clone(),
                capacity: s.capacity,
                models: s.models.used(),
                invocations: s.tensors.used(),
                leases: s.leases.load(Ordering::Acquire),
            })
            .collect()
    }

    fn slot_of(&self, id: DeviceId) -> Result<usize> {
        self.0
            .slots
            .iter()
            .position(|s| s.device.id() == id)
            .ok_or_else(|| TensorError::invalid(format!("no device {id} in the pool")))
    }

    fn least_loaded(&self) -> usize {
        let slots = &self.0.slots;
        self.0
            .preferred
            .iter()
            .copied()
            .min_by_key(|&i| slots.get(i).map(Slot::load))
            .unwrap_or(0)
    }

    fn tenant_meter(&self, tenant: &str) -> Arc<MemoryMeter> {
        let mut map = match self.0.tenants.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(m) = map.get(tenant).and_then(Weak::upgrade) {
            return m;
        }
        // Forget tenants with no live session, so the map stays as small
        // as the set of tenants running now.
        map.retain(|_, w| w.strong_count() > 0);
        let m = MemoryMeter::new(
            MeterKind::Quota("tensor memory per tenant (tensor.max_bytes_per_tenant)"),
            self.0.limits.max_bytes_per_tenant,
        );
        map.insert(tenant.to_string(), Arc::downgrade(&m));
        m
    }

    /// Leases the least-loaded device for an invocation of `tenant`.
    pub fn lease(&self, tenant: &str) -> DeviceLease {
        self.lease_slot(self.least_loaded(), tenant)
    }

    /// Leases a given device (the one holding a model the work needs).
    pub fn lease_on(&self, device: DeviceId, tenant: &str) -> Result<DeviceLease> {
        Ok(self.lease_slot(self.slot_of(device)?, tenant))
    }

    fn lease_slot(&self, i: usize, tenant: &str) -> DeviceLease {
        let slot = &self.0.slots[i.min(self.0.slots.len() - 1)];
        slot.leases.fetch_add(1, Ordering::AcqRel);
        let invocation = MemoryMeter::new(
            MeterKind::Quota("tensor memory per invocation (tensor.max_bytes_per_invocation)"),
            self.0.limits.max_bytes_per_invocation,
        );
        let budget = Budget::new(vec![
            invocation,
            self.tenant_meter(tenant),
            Arc::clone(&slot.tensors),
            Arc::clone(&slot.total),
        ]);
        DeviceLease {
            pool: self.clone(),
            slot: i,
            exec: Exec::new(slot.device.clone(), budget, self.0.limits.clone()),
        }
    }

    /// Places a model replica of `bytes` on the device with the most free
    /// memory (of the preferred kind) and holds that memory until the
    /// placement is dropped.
    pub fn place_model(&self, name: &str, bytes: u64) -> Result<ModelPlacement> {
        let slots = &self.0.slots;
        let mut order = self.0.preferred.clone();
        order
            .sort_by_key(|&i| std::cmp::Reverse(slots.get(i).map_or(0, |s| s.capacity.saturating_sub(s.total.used()))));
        let mut last = None;
        for i in order {
            match self.place_model_on_slot(i, name, bytes) {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TensorError::invalid("no device to place a model on")))
    }

    /// Places a model replica on a given device.
    pub fn place_model_on(&self, device: DeviceId, name: &str, bytes: u64) -> Result<ModelPlacement> {
        self.place_model_on_slot(self.slot_of(device)?, name, bytes)
    }

    fn place_model_on_slot(&self, i: usize, name: &str, bytes: u64) -> Result<ModelPlacement> {
        let slot = self
            .0
            .slots
            .get(i)
            .ok_or_else(|| TensorError::invalid("no such device"))?;
        let memory = Budget::new(vec![Arc::clone(&slot.models), Arc::clone(&slot.total)]).reserve(bytes)?;
        Ok(ModelPlacement {
            device: slot.device.id(),
            name: name.to_string(),
            _memory: memory,
        })
    }
}

fn mode_required_without_gpu(mode: CudaMode, slots: &[Slot]) -> bool {
    mode == CudaMode::Required && !slots.iter().any(|s| s.device.id().kind == DeviceKind::Cuda)
}

/// A model replica's memory on one device; freed on drop.
#[derive(Debug)]
pub struct ModelPlacement {
    device: DeviceId,
    name: String,
    _memory: Reservation,
}

impl ModelPlacement {
    /// The device holding the replica: lease this one to use it.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One invocation's hold on a device; released on drop.
pub struct DeviceLease {
    pool: DevicePool,
    slot: usize,
    exec: Exec,
}

impl std::fmt::Debug for DeviceLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceLease({})", self.exec.device().id())
    }
}

impl DeviceLease {
    /// The leased device.
    pub fn device(&self) -> DeviceId {
        self.exec.device().id()
    }

    /// An ops context on the device, charged to this lease's budget.
    pub fn exec(&self) -> Exec {
        self.exec.clone()
    }

    /// Whether `t` lives on the leased device.
    pub fn holds(&self, t: &Tensor) -> bool {
        t.device().id() == self.device()
    }
}

impl Drop for DeviceLease {
    fn drop(&mut self) {
        if let Some(s) = self.pool.0.slots.get(self.slot) {
            s.leases.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
