//! The tensor host API: the compute behind `wafer:ai/tensor`.
//!
//! ```
//! use wafer_host_apis::tensor::{DType, Exec};
//!
//! let exec = Exec::cpu()?;
//! let a = exec.from_slice(&[2, 3], &[1f32, 2., 3., 4., 5., 6.])?;
//! let b = exec.from_slice(&[3, 1], &[1f32, 0., -1.])?;
//! let c = exec.matmul(&a, &b)?;
//! assert_eq!(c.dims(), &[2, 1]);
//! assert_eq!(exec.to_vec::<f32>(&c)?, vec![-2., -2.]);
//! # Ok::<(), wafer_host_apis::tensor::TensorError>(())
//! ```
//!
//! Layers, bottom up: [`DType`] and [`Shape`]; a [`Backend`] per device kind
//! (`cpu`, `cuda`); [`Exec`], which validates every op, checks
//! [`TensorLimits`], reserves memory and records [`TensorUsage`] before it
//! calls the backend; [`TensorSession`], an invocation's handle table over
//! an `Exec`; [`TensorCtx`], the host side of the WIT interface
//! ([`TENSOR_INTERFACE`], added to a linker by [`add_to_linker`]), which
//! leases a session's device on the guest's first tensor; and the
//! [`DevicePool`] that places sessions and models on devices.

use std::fmt;
use std::sync::Arc;

pub mod backend;
pub mod bindings;
mod dtype;
mod error;
mod host;
mod limits;
mod memory;
mod ops;
pub mod pool;
mod session;
mod shape;
mod usage;

pub use backend::{Backend, BinaryOp, DeviceId, DeviceKind, NormOp, ReduceOp, UnaryOp};
pub use dtype::{DType, Element};
pub use error::{Result, TensorError};
pub use host::{TensorCtx, TensorHandle, add_to_linker};
pub use limits::TensorLimits;
pub use memory::{Budget, MemoryMeter, MeterKind, Reservation};
pub use ops::Exec;
pub use pool::{DeviceLease, DevicePool, PoolConfig};
pub use session::{TensorId, TensorSession};
pub use shape::{MAX_RANK, Shape};
pub use usage::{DeviceUsage, TensorUsage};

use backend::Storage;

/// The WIT interface [`add_to_linker`] provides.
pub const TENSOR_INTERFACE: &str = "wafer:ai/tensor@0.1.0";

/// A handle to one device's backend; cheap to clone.
#[derive(Clone)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Device(backend)
    }

    /// A CPU device with `threads` workers (0: one per core).
    pub fn cpu(ordinal: usize, threads: usize) -> Result<Self> {
        Ok(Device(Arc::new(backend::cpu::CpuDevice::new(ordinal, threads)?)))
    }

    /// The device's identity.
    pub fn id(&self) -> DeviceId {
        self.0.id()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id())
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

/// The memory of a tensor: immutable once written, shared by reshapes.
struct Buffer {
    storage: Storage,
    device: Device,
    _memory: Reservation,
}

/// An n-dimensional array on one device. Contiguous and row-major;
/// immutable (every op makes a new tensor); clones share the buffer.
#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    dtype: DType,
    buf: Arc<Buffer>,
}

impl Tensor {
    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device holding the data.
    pub fn device(&self) -> &Device {
        &self.buf.device
    }

    /// Bytes of device memory the data takes (shared between reshapes).
    pub fn byte_size(&self) -> u64 {
        self.buf._memory.bytes()
    }

    fn storage(&self) -> &Storage {
        &self.buf.storage
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {}, {})", self.shape, self.dtype, self.device().id())
    }
}
