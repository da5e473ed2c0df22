//! The host side of `wafer:ai/tensor`: [`TensorCtx`], one invocation's
//! tensor state, and the generated host traits implemented on it.
//!
//! ```
//! use wafer_host_apis::tensor::{DevicePool, PoolConfig, TensorCtx};
//! use wasmtime::component::Linker;
//!
//! struct Store {
//!     tensor: TensorCtx,
//! }
//!
//! # fn main() -> wasmtime::Result<()> {
//! let pool = DevicePool::new(&PoolConfig::default())?;
//! let engine = wasmtime::Engine::default();
//! let mut linker = Linker::<Store>::new(&engine);
//! wafer_host_apis::tensor::add_to_linker(&mut linker, |s| &mut s.tensor)?;
//! // One per invocation, in the store data; nothing is leased yet.
//! let data = Store { tensor: TensorCtx::new(pool, "tenant-a") };
//! assert_eq!(data.tensor.usage().cpu.ops, 0);
//! # Ok(())
//! # }
//! ```
//!
//! Guest handles live in a [`ResourceTable`] owned by the context, each
//! entry a [`TensorHandle`] naming a tensor of the invocation's
//! [`TensorSession`]; dropping the handle frees the tensor and its memory,
//! and dropping the context frees everything and ends the device lease.
//!
//! Errors: a guest mistake (shapes, dtypes, arguments, limits, memory) is
//! the WIT `error` the guest gets back; a handle the table does not know, a
//! table out of step with the session, or a device fault is the host's
//! problem and traps.

use std::fmt;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::bindings::{self, BinaryOp, Dtype, Error, ReduceOp, UnaryOp};
use super::{DType, DevicePool, TensorError, TensorId, TensorSession, TensorUsage, backend};

/// One invocation's tensor state: a lazily leased device and its session.
pub struct TensorCtx {
    pool: DevicePool,
    tenant: String,
    /// Made by the first tensor: an invocation that never touches one holds
    /// no lease and no device memory.
    session: Option<TensorSession>,
    /// The guest's handles. Bounded by the session's
    /// `tensor.max_live_tensors`: every entry has a live tensor behind it.
    table: ResourceTable,
}

impl fmt::Debug for TensorCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorCtx")
            .field("tenant", &self.tenant)
            .field("device", &self.session.as_ref().map(|s| s.device().to_string()))
            .field("live", &self.session.as_ref().map_or(0, TensorSession::live))
            .finish()
    }
}

/// The host side of a guest's `tensor` resource: the tensor it names in
/// the invocation's session.
#[derive(Debug)]
pub struct TensorHandle {
    id: TensorId,
}

impl TensorHandle {
    /// The tensor in the session.
    pub fn id(&self) -> TensorId {
        self.id
    }
}

impl TensorCtx {
    /// Nothing is leased until the guest makes its first tensor.
    pub fn new(pool: DevicePool, tenant: impl Into<String>) -> Self {
        TensorCtx {
            pool,
            tenant: tenant.into(),
            session: None,
            table: ResourceTable::new(),
        }
    }

    /// What this invocation used so far (zero if it never touched a tensor).
    pub fn usage(&self) -> TensorUsage {
        self.session.as_ref().map(TensorSession::usage).unwrap_or_default()
    }

    /// The session, leasing a device on first use.
    fn session(&mut self) -> &mut TensorSession {
        let (pool, tenant) = (&self.pool, &self.tenant);
        self.session
            .get_or_insert_with(|| TensorSession::new(pool.lease(tenant)))
    }

    /// The session a handle's tensor lives in. A handle without one is a
    /// host bug: handles are only made after the session.
    fn live_session(&mut self) -> wasmtime::Result<&mut TensorSession> {
        self.session
            .as_mut()
            .ok_or_else(|| wasmtime::Error::msg("tensor handle used before any tensor was made"))
    }

    /// The tensor behind a guest handle; an unknown handle traps.
    fn id(&self, handle: &Resource<TensorHandle>) -> wasmtime::Result<TensorId> {
        Ok(self.table.get(handle)?.id)
    }

    fn ids(&self, handles: &[Resource<TensorHandle>]) -> wasmtime::Result<Vec<TensorId>> {
        handles.iter().map(|h| self.id(h)).collect()
    }

    /// Gives the guest a handle to a new tensor of the session.
    fn handle(&mut self, id: TensorId) -> HostResult<Resource<TensorHandle>> {
        // The WIT reports shapes as `list<u32>`: refuse a result with a
        // longer axis (only a zero-sized `concat` can make one) rather than
        // hand out a tensor whose shape cannot be told.
        let session = self.live_session()?;
        if let Some(d) = session
            .dims(id)
            .map_err(trap)?
            .into_iter()
            .find(|&d| u32::try_from(d).is_err())
        {
            session.remove(id).map_err(trap)?;
            return Ok(Err(Error::InvalidArgument(format!(
                "the result would have an axis of {d} elements; axes hold at most {}",
                u32::MAX
            ))));
        }
        match self.table.push(TensorHandle { id }) {
            Ok(handle) => Ok(Ok(handle)),
            Err(e) => {
                self.live_session()?.remove(id).map_err(trap)?;
                Err(e.into())
            }
        }
    }

    /// Hands out the tensor an operation made, or the guest's error.
    fn made(&mut self, made: Result<TensorId, TensorError>) -> HostResult<Resource<TensorHandle>> {
        match made {
            Ok(id) => self.handle(id),
            Err(e) => guest(e),
        }
    }

    /// Runs an op on one or more handles' tensors in the live session.
    fn op(
        &mut self,
        f: impl FnOnce(&mut TensorSession) -> Result<TensorId, TensorError>,
    ) -> HostResult<Resource<TensorHandle>> {
        let made = f(self.live_session()?);
        self.made(made)
    }
}

/// A host function's result: the outer error traps, the inner one is the
/// guest's.
type HostResult<T> = wasmtime::Result<Result<T, Error>>;

/// A guest's mistake as the WIT error, with a message that says what to
/// fix; a device fault traps instead (it is not the guest's to handle).
fn guest<T>(e: TensorError) -> HostResult<T> {
    let msg = e.to_string();
    Ok(Err(match e {
        TensorError::ShapeMismatch { .. } => Error::ShapeMismatch(msg),
        TensorError::UnsupportedDtype { .. } => Error::UnsupportedDtype(msg),
        TensorError::OutOfMemory { .. } => Error::OutOfMemory(msg),
        TensorError::OverQuota { .. } => Error::OverQuota(msg),
        TensorError::InvalidArgument(m) => Error::InvalidArgument(m),
        TensorError::Device(_) => return Err(trap(e)),
    }))
}

/// A tensor error where none can be the guest's (a handle the table knows
/// but the session does not, a device fault): trap, and log it.
fn trap(e: TensorError) -> wasmtime::Error {
    tracing::error!(error = %e, "tensor host call failed; trapping the guest");
    wasmtime::Error::msg(format!("wafer:ai/tensor: {e}"))
}

/// The value of a call that cannot fail as the guest's mistake.
fn value<T>(r: Result<T, TensorError>) -> HostResult<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => guest(e),
    }
}

fn dims(shape: &[u32]) -> Result<Vec<usize>, TensorError> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| TensorError::invalid(format!("axis of {d} elements"))))
        .collect()
}

fn to_index(v: u32) -> usize {
    // wasmtime hosts are 64-bit (and at least 32-bit): a u32 always fits.
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl From<Dtype> for DType {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::Bf16 => DType::Bf16,
            Dtype::I32 => DType::I32,
            Dtype::I64 => DType::I64,
            Dtype::U8 => DType::U8,
        }
    }
}

impl From<DType> for Dtype {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::Bf16 => Dtype::Bf16,
            DType::I32 => Dtype::I32,
            DType::I64 => Dtype::I64,
            DType::U8 => Dtype::U8,
        }
    }
}

impl From<UnaryOp> for backend::UnaryOp {
    fn from(op: UnaryOp) -> Self {
        match op {
            UnaryOp::Relu => backend::UnaryOp::Relu,
            UnaryOp::Gelu => backend::UnaryOp::Gelu,
            UnaryOp::Silu => backend::UnaryOp::Silu,
            UnaryOp::Sigmoid => backend::UnaryOp::Sigmoid,
            UnaryOp::Tanh => backend::UnaryOp::Tanh,
            UnaryOp::Exp => backend::UnaryOp::Exp,
        }
    }
}

impl From<BinaryOp> for backend::BinaryOp {
    fn from(op: BinaryOp) -> Self {
        match op {
            BinaryOp::Add => backend::BinaryOp::Add,
            BinaryOp::Sub => backend::BinaryOp::Sub,
            BinaryOp::Mul => backend::BinaryOp::Mul,
            BinaryOp::Div => backend::BinaryOp::Div,
        }
    }
}

impl From<ReduceOp> for backend::ReduceOp {
    fn from(op: ReduceOp) -> Self {
        match op {
            ReduceOp::Sum => backend::ReduceOp::Sum,
            ReduceOp::Mean => backend::ReduceOp::Mean,
            ReduceOp::Max => backend::ReduceOp::Max,
            ReduceOp::Argmax => backend::ReduceOp::ArgMax,
        }
    }
}

/// Adds `wafer:ai/tensor` to a linker. The store data gives its TensorCtx.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut TensorCtx,
) -> wasmtime::Result<()> {
    bindings::add_to_linker::<T, HasTensor>(linker, get)
}

struct HasTensor;

impl HasData for HasTensor {
    type Data<'a> = &'a mut TensorCtx;
}

impl bindings::HostTensor for TensorCtx {
    fn from_bytes(&mut self, shape: Vec<u32>, dtype: Dtype, data: Vec<u8>) -> HostResult<Resource<TensorHandle>> {
        let made = dims(&shape).and_then(|d| self.session().create(&d, dtype.into(), &data));
        self.made(made)
    }

    fn from_f32(&mut self, shape: Vec<u32>, data: Vec<f32>) -> HostResult<Resource<TensorHandle>> {
        let made = dims(&shape).and_then(|d| self.session().create_from(&d, &data));
        self.made(made)
    }

    fn from_i64(&mut self, shape: Vec<u32>, data: Vec<i64>) -> HostResult<Resource<TensorHandle>> {
        let made = dims(&shape).and_then(|d| self.session().create_from(&d, &data));
        self.made(made)
    }

    fn scalar(&mut self, dtype: Dtype, value: f64) -> HostResult<Resource<TensorHandle>> {
        let made = self.session().scalar(dtype.into(), value);
        self.made(made)
    }

    fn shape(&mut self, x: Resource<TensorHandle>) -> wasmtime::Result<Vec<u32>> {
        let id = self.id(&x)?;
        let dims = self.live_session()?.dims(id).map_err(trap)?;
        // `handle` let no tensor with a longer axis out.
        dims.into_iter()
            .map(|d| u32::try_from(d).map_err(|_| wasmtime::Error::msg(format!("tensor axis of {d} elements"))))
            .collect()
    }

    fn dtype(&mut self, x: Resource<TensorHandle>) -> wasmtime::Result<Dtype> {
        let id = self.id(&x)?;
        Ok(self.live_session()?.dtype(id).map_err(trap)?.into())
    }

    fn device(&mut self, x: Resource<TensorHandle>) -> wasmtime::Result<String> {
        self.id(&x)?;
        Ok(self.live_session()?.device().to_string())
    }

    fn to_bytes(&mut self, x: Resource<TensorHandle>) -> HostResult<Vec<u8>> {
        let id = self.id(&x)?;
        value(self.live_session()?.read(id))
    }

    fn to_f32(&mut self, x: Resource<TensorHandle>) -> HostResult<Vec<f32>> {
        let id = self.id(&x)?;
        value(self.live_session()?.read_f32(id))
    }

    fn drop(&mut self, x: Resource<TensorHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(x)?;
        self.live_session()?.remove(handle.id).map_err(trap)
    }
}

impl bindings::Host for TensorCtx {
    fn matmul(&mut self, a: Resource<TensorHandle>, b: Resource<TensorHandle>) -> HostResult<Resource<TensorHandle>> {
        let (a, b) = (self.id(&a)?, self.id(&b)?);
        self.op(|s| s.matmul(a, b))
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        a: Resource<TensorHandle>,
        b: Resource<TensorHandle>,
    ) -> HostResult<Resource<TensorHandle>> {
        let (a, b) = (self.id(&a)?, self.id(&b)?);
        self.op(|s| s.binary(op.into(), a, b))
    }

    fn binary_scalar(&mut self, op: BinaryOp, x: Resource<TensorHandle>, v: f64) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.binary_scalar(op.into(), x, v))
    }

    fn unary(&mut self, op: UnaryOp, x: Resource<TensorHandle>) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.unary(op.into(), x))
    }

    fn softmax(&mut self, x: Resource<TensorHandle>, axis: i32) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.softmax(x, axis.into(), false))
    }

    fn log_softmax(&mut self, x: Resource<TensorHandle>, axis: i32) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.softmax(x, axis.into(), true))
    }

    fn layer_norm(
        &mut self,
        x: Resource<TensorHandle>,
        weight: Option<Resource<TensorHandle>>,
        bias: Option<Resource<TensorHandle>>,
        eps: f32,
    ) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        let weight = weight.map(|w| self.id(&w)).transpose()?;
        let bias = bias.map(|b| self.id(&b)).transpose()?;
        self.op(|s| s.layer_norm(x, weight, bias, eps))
    }

    fn rms_norm(
        &mut self,
        x: Resource<TensorHandle>,
        weight: Option<Resource<TensorHandle>>,
        eps: f32,
    ) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        let weight = weight.map(|w| self.id(&w)).transpose()?;
        self.op(|s| s.rms_norm(x, weight, eps))
    }

    fn reshape(&mut self, x: Resource<TensorHandle>, shape: Vec<u32>) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.reshape(x, &dims(&shape)?))
    }

    fn permute(&mut self, x: Resource<TensorHandle>, perm: Vec<u32>) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        let perm: Vec<usize> = perm.into_iter().map(to_index).collect();
        self.op(|s| s.permute(x, &perm))
    }

    fn transpose(&mut self, x: Resource<TensorHandle>, a: i32, b: i32) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.transpose(x, a.into(), b.into()))
    }

    fn slice(
        &mut self,
        x: Resource<TensorHandle>,
        axis: i32,
        start: u32,
        end: u32,
    ) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.slice(x, axis.into(), to_index(start), to_index(end)))
    }

    fn concat(&mut self, xs: Vec<Resource<TensorHandle>>, axis: i32) -> HostResult<Resource<TensorHandle>> {
        let xs = self.ids(&xs)?;
        if xs.is_empty() {
            // No tensor, so maybe no session yet: answer before looking.
            return Ok(Err(Error::InvalidArgument("concat of no tensors".into())));
        }
        self.op(|s| s.concat(&xs, axis.into()))
    }

    fn gather(
        &mut self,
        table: Resource<TensorHandle>,
        indices: Resource<TensorHandle>,
    ) -> HostResult<Resource<TensorHandle>> {
        let (table, indices) = (self.id(&table)?, self.id(&indices)?);
        self.op(|s| s.gather(table, indices))
    }

    fn reduce(
        &mut self,
        op: ReduceOp,
        x: Resource<TensorHandle>,
        axis: i32,
        keep_dims: bool,
    ) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.reduce(op.into(), x, axis.into(), keep_dims))
    }

    fn top_k(
        &mut self,
        x: Resource<TensorHandle>,
        k: u32,
    ) -> HostResult<(Resource<TensorHandle>, Resource<TensorHandle>)> {
        let x = self.id(&x)?;
        let (values, indices) = match self.live_session()?.top_k(x, to_index(k)) {
            Ok(made) => made,
            Err(e) => return guest(e),
        };
        let values = match self.handle(values)? {
            Ok(h) => h,
            Err(e) => {
                self.live_session()?.remove(indices).map_err(trap)?;
                return Ok(Err(e));
            }
        };
        match self.handle(indices)? {
            Ok(indices) => Ok(Ok((values, indices))),
            Err(e) => {
                bindings::HostTensor::drop(self, values)?;
                Ok(Err(e))
            }
        }
    }

    fn cast(&mut self, x: Resource<TensorHandle>, dtype: Dtype) -> HostResult<Resource<TensorHandle>> {
        let x = self.id(&x)?;
        self.op(|s| s.cast(x, dtype.into()))
    }
}
