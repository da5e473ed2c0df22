//! One invocation's tensors, behind handles.
//!
//! The WIT host binding maps each guest `tensor` resource to a [`TensorId`]
//! and calls these methods; the table is bounded by
//! [`TensorLimits::max_live_tensors`], and every tensor (and so its memory)
//! is released when the guest drops it or the session ends.

use std::collections::HashMap;

use super::backend::{BinaryOp, DeviceId, ReduceOp, UnaryOp};
use super::dtype::{DType, Element};
use super::error::{Result, TensorError};
use super::ops::Exec;
use super::pool::DeviceLease;
use super::shape::Shape;
use super::usage::TensorUsage;
use super::{Tensor, TensorLimits};

/// A handle to a tensor in a [`TensorSession`]. Never reused within a
/// session, so a stale handle cannot reach a newer tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u64);

/// An invocation's tensor context: a device lease, the ops context and a
/// bounded table of live tensors.
#[derive(Debug)]
pub struct TensorSession {
    exec: Exec,
    tensors: HashMap<u64, Tensor>,
    next: u64,
    // Dropped after the tensors (fields drop in order), so the lease's
    // memory meters see every byte returned before the lease ends.
    _lease: Option<DeviceLease>,
}

impl TensorSession {
    /// A session on a device leased from the pool.
    pub fn new(lease: DeviceLease) -> Self {
        let exec = lease.exec();
        TensorSession {
            exec,
            tensors: HashMap::new(),
            next: 1,
            _lease: Some(lease),
        }
    }

    /// A session over a bare context (tests, tools).
    pub fn from_exec(exec: Exec) -> Self {
        TensorSession {
            exec,
            tensors: HashMap::new(),
            next: 1,
            _lease: None,
        }
    }

    /// The ops context, for callers that work on [`Tensor`]s directly.
    pub fn exec(&self) -> &Exec {
        &self.exec
    }

    /// The device this session runs on.
    pub fn device(&self) -> DeviceId {
        self.exec.device().id()
    }

    /// The limits in force.
    pub fn limits(&self) -> &TensorLimits {
        self.exec.limits()
    }

    /// Usage so far, for billing.
    pub fn usage(&self) -> TensorUsage {
        self.exec.usage()
    }

    /// Tensor bytes held now.
    pub fn memory_used(&self) -> u64 {
        self.exec.memory().used()
    }

    /// Live tensors.
    pub fn live(&self) -> usize {
        self.tensors.len()
    }

    /// The tensor behind a handle.
    pub fn get(&self, id: TensorId) -> Result<&Tensor> {
        self.tensors
            .get(&id.0)
            .ok_or_else(|| TensorError::invalid(format!("no tensor with handle {}", id.0)))
    }

    /// Adds a tensor to the table (checked against the live-tensor limit).
    pub fn insert(&mut self, t: Tensor) -> Result<TensorId> {
        self.check_room(1)?;
        let id = self.next;
        self.next += 1;
        self.tensors.insert(id, t);
        Ok(TensorId(id))
    }

    fn check_room(&self, n: usize) -> Result<()> {
        let max = self.exec.limits().max_live_tensors;
        if self.tensors.len().saturating_add(n) > max {
            return Err(TensorError::OverQuota {
                what: "live tensors per invocation (tensor.max_live_tensors)",
                limit: max as u64,
                used: self.tensors.len() as u64,
                requested: n as u64,
            });
        }
        Ok(())
    }

    /// Frees a tensor (the guest dropped its handle).
    pub fn remove(&mut self, id: TensorId) -> Result<()> {
        self.tensors
            .remove(&id.0)
            .map(drop)
            .ok_or_else(|| TensorError::invalid(format!("no tensor with handle {}", id.0)))
    }

    fn unary_op(&mut self, x: TensorId, f: impl FnOnce(&Exec, &Tensor) -> Result<Tensor>) -> Result<TensorId> {
        self.check_room(1)?;
        let t = f(&self.exec, self.get(x)?)?;
        self.insert(t)
    }

    fn binary_op(
        &mut self,
        a: TensorId,
        b: TensorId,
        f: impl FnOnce(&Exec, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<TensorId> {
        self.check_room(1)?;
        let t = f(&self.exec, self.get(a)?, self.get(b)?)?;
        self.insert(t)
    }

    // ---- the WIT surface --------------------------------------------------

    /// `tensor.create(dims, dtype, data)`.
    pub fn create(&mut self, dims: &[usize], dtype: DType, bytes: &[u8]) -> Result<TensorId> {
        self.check_room(1)?;
        let t = self.exec.from_bytes(dims, dtype, bytes)?;
        self.insert(t)
    }

    /// `tensor.from-f32(shape, data)` and the like: `data` must hold
    /// exactly one value per element of `dims`.
    pub fn create_from<T: Element>(&mut self, dims: &[usize], data: &[T]) -> Result<TensorId> {
        self.check_room(1)?;
        let shape = Shape::new(dims.to_vec())?;
        if shape.numel() != data.len() {
            return Err(TensorError::invalid(format!(
                "shape {dims:?} holds {} {} values, got {}",
                shape.numel(),
                T::DTYPE,
                data.len()
            )));
        }
        // Refuse before the copy into bytes, not after.
        self.exec.limits().check_tensor(dims)?;
        let t = self.exec.from_slice(dims, data)?;
        self.insert(t)
    }

    /// `tensor.scalar(dtype, value)`.
    pub fn scalar(&mut self, dtype: DType, value: f64) -> Result<TensorId> {
        self.check_room(1)?;
        let t = self.exec.scalar(dtype, value)?;
        self.insert(t)
    }

    /// `tensor.dims()`.
    pub fn dims(&self, x: TensorId) -> Result<Vec<usize>> {
        Ok(self.get(x)?.dims().to_vec())
    }

    /// `tensor.dtype()`.
    pub fn dtype(&self, x: TensorId) -> Result<DType> {
        Ok(self.get(x)?.dtype())
    }

    /// `tensor.data()`: the contents as little-endian bytes.
    pub fn read(&self, x: TensorId) -> Result<Vec<u8>> {
        self.exec.to_bytes(self.get(x)?)
    }

    /// `tensor.to-f32()`: the contents converted to `f32`.
    pub fn read_f32(&self, x: TensorId) -> Result<Vec<f32>> {
        let t = self.get(x)?;
        if t.dtype() == DType::F32 {
            return self.exec.to_vec(t);
        }
        // The converted copy is charged to the budget while it lives.
        self.exec.to_vec(&self.exec.cast(t, DType::F32)?)
    }

    /// `matmul(a, b)`.
    pub fn matmul(&mut self, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.binary_op(a, b, Exec::matmul)
    }

    /// `add`/`sub`/`mul`/`div` with broadcasting.
    pub fn binary(&mut self, op: BinaryOp, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.binary_op(a, b, |e, a, b| e.binary(op, a, b))
    }

    /// `add`/`sub`/`mul`/`div` by a scalar.
    pub fn binary_scalar(&mut self, op: BinaryOp, x: TensorId, value: f64) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.binary_scalar(op, x, value))
    }

    /// `relu`, `gelu`, `silu`, `sigmoid`, `tanh`, `exp`.
    pub fn unary(&mut self, op: UnaryOp, x: TensorId) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.unary(op, x))
    }

    /// `softmax(x, axis)` or `log-softmax(x, axis)`.
    pub fn softmax(&mut self, x: TensorId, axis: i64, log: bool) -> Result<TensorId> {
        self.unary_op(x, |e, x| {
            if log {
                e.log_softmax(x, axis)
            } else {
                e.softmax(x, axis)
            }
        })
    }

    /// `layer-norm(x, weight?, bias?, eps)`.
    pub fn layer_norm(
        &mut self,
        x: TensorId,
        weight: Option<TensorId>,
        bias: Option<TensorId>,
        eps: f32,
    ) -> Result<TensorId> {
        self.check_room(1)?;
        let w = weight.map(|w| self.get(w)).transpose()?;
        let b = bias.map(|b| self.get(b)).transpose()?;
        let t = self.exec.layer_norm(self.get(x)?, w, b, eps)?;
        self.insert(t)
    }

    /// `rms-norm(x, weight?, eps)`.
    pub fn rms_norm(&mut self, x: TensorId, weight: Option<TensorId>, eps: f32) -> Result<TensorId> {
        self.check_room(1)?;
        let w = weight.map(|w| self.get(w)).transpose()?;
        let t = self.exec.rms_norm(self.get(x)?, w, eps)?;
        self.insert(t)
    }

    /// `reshape(x, dims)`.
    pub fn reshape(&mut self, x: TensorId, dims: &[usize]) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.reshape(x, dims))
    }

    /// `permute(x, perm)`.
    pub fn permute(&mut self, x: TensorId, perm: &[usize]) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.permute(x, perm))
    }

    /// `transpose(x, a, b)`.
    pub fn transpose(&mut self, x: TensorId, a: i64, b: i64) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.transpose(x, a, b))
    }

    /// `slice(x, axis, start, end)`.
    pub fn slice(&mut self, x: TensorId, axis: i64, start: usize, end: usize) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.slice(x, axis, start, end))
    }

    /// `concat(xs, axis)`.
    pub fn concat(&mut self, xs: &[TensorId], axis: i64) -> Result<TensorId> {
        self.check_room(1)?;
        let ts = xs.iter().map(|&x| self.get(x)).collect::<Result<Vec<_>>>()?;
        let t = self.exec.concat(&ts, axis)?;
        self.insert(t)
    }

    /// `gather(table, indices)`.
    pub fn gather(&mut self, table: TensorId, indices: TensorId) -> Result<TensorId> {
        self.binary_op(table, indices, Exec::gather)
    }

    /// `sum`/`mean`/`max`/`argmax` along an axis.
    pub fn reduce(&mut self, op: ReduceOp, x: TensorId, axis: i64, keep_dims: bool) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.reduce(op, x, axis, keep_dims))
    }

    /// `top-k(x, k)` along the last axis: (values, indices).
    pub fn top_k(&mut self, x: TensorId, k: usize) -> Result<(TensorId, TensorId)> {
        self.check_room(2)?;
        let (v, i) = self.exec.top_k(self.get(x)?, k)?;
        Ok((self.insert(v)?, self.insert(i)?))
    }

    /// `cast(x, dtype)`.
    pub fn cast(&mut self, x: TensorId, dtype: DType) -> Result<TensorId> {
        self.unary_op(x, |e, x| e.cast(x, dtype))
    }
}
