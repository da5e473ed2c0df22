//! Device usage of one session, for the billing layer.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::backend::DeviceKind;

/// Usage on one kind of device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeviceUsage {
    /// Nanoseconds spent running operations (wall time of the op, the
    /// device synchronised at its end).
    pub device_ns: u64,
    /// Bytes copied from host memory to the device (tensor creation).
    pub bytes_to_device: u64,
    /// Bytes copied from the device back to the host (reads).
    pub bytes_to_host: u64,
    /// Operations run.
    pub ops: u64,
}

/// Usage of one session, per device kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TensorUsage {
    /// On CPU devices.
    pub cpu: DeviceUsage,
    /// On CUDA devices.
    pub cuda: DeviceUsage,
}

impl TensorUsage {
    /// The usage on `kind`.
    pub fn of(&self, kind: DeviceKind) -> &DeviceUsage {
        match kind {
            DeviceKind::Cpu => &self.cpu,
            DeviceKind::Cuda => &self.cuda,
        }
    }
}

/// Accumulates usage; shared by a session and its ops.
#[derive(Debug, Default)]
pub(crate) struct UsageMeter(Mutex<TensorUsage>);

impl UsageMeter {
    pub(crate) fn record(&self, kind: DeviceKind, time: Duration, to_device: u64, to_host: u64) {
        let mut u = match self.0.lock() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        let d = match kind {
            DeviceKind::Cpu => &mut u.cpu,
            DeviceKind::Cuda => &mut u.cuda,
        };
        d.device_ns = d
            .device_ns
            .saturating_add(u64::try_from(time.as_nanos()).unwrap_or(u64::MAX));
        d.bytes_to_device = d.bytes_to_device.saturating_add(to_device);
        d.bytes_to_host = d.bytes_to_host.saturating_add(to_host);
        d.ops = d.ops.saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> TensorUsage {
        match self.0.lock() {
            Ok(u) => *u,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}
