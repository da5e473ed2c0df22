//! The operations, device-independent: each validates its operands, works
//! out the output shape, checks limits and reserves memory, and only then
//! asks the backend to compute.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::backend::{BinaryOp, MatmulPlan, NormOp, ReduceOp, Storage, UnaryOp};
use super::dtype::{DType, Element};
use super::error::{Result, TensorError};
use super::limits::TensorLimits;
use super::memory::{Budget, Reservation};
use super::shape::{Shape, broadcast, broadcast_strides};
use super::usage::{TensorUsage, UsageMeter};
use super::{Buffer, Device, Tensor};

/// Runs tensor operations on one device, within limits and a memory meter,
/// recording usage. Cheap to clone (clones share the meters).
#[derive(Clone)]
pub struct Exec {
    device: Device,
    memory: Budget,
    limits: TensorLimits,
    usage: Arc<UsageMeter>,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("device", &self.device)
            .field("memory_used", &self.memory.used())
            .finish()
    }
}

fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(TensorError::invalid(format!(
            "{op}: operands are on {} and {}; tensors stay on their device",
            a.device().id(),
            b.device().id()
        )));
    }
    Ok(())
}

fn same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype != b.dtype {
        return Err(TensorError::invalid(format!(
            "{op}: dtypes {} and {} differ; cast one first",
            a.dtype, b.dtype
        )));
    }
    Ok(())
}

fn float_only(op: &'static str, x: &Tensor) -> Result<()> {
    if !x.dtype.is_float() {
        return Err(TensorError::dtype(op, x.dtype));
    }
    Ok(())
}

impl Exec {
    /// Runs on `device`, charging tensor bytes to `memory`.
    pub fn new(device: Device, memory: Budget, limits: TensorLimits) -> Self {
        Exec {
            device,
            memory,
            limits,
            usage: Arc::default(),
        }
    }

    /// A CPU device with one thread per core, default limits, no memory
    /// quota (tests, tools).
    pub fn cpu() -> Result<Self> {
        Ok(Self::new(
            Device::cpu(0, 0)?,
            Budget::unlimited(),
            TensorLimits::default(),
        ))
    }

    /// The device ops run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The limits in force.
    pub fn limits(&self) -> &TensorLimits {
        &self.limits
    }

    /// The memory budget tensors are charged to.
    pub fn memory(&self) -> &Budget {
        &self.memory
    }

    /// Usage so far.
    pub fn usage(&self) -> TensorUsage {
        self.usage.snapshot()
    }

    fn reserve(&self, shape: &Shape, dtype: DType) -> Result<Reservation> {
        self.limits.check_tensor(shape.dims())?;
        self.memory.reserve(shape.byte_size(dtype)?)
    }

    /// Runs `f` on the backend, timed, with a panic turned into an error as
    /// a last line of defence (a backend bug must not take the host down).
    fn run<T>(
        &self,
        op: &'static str,
        moved: (u64, u64),
        f: impl FnOnce(&dyn super::Backend) -> Result<T>,
    ) -> Result<T> {
        let backend = self.device.backend();
        let start = Instant::now();
        let out = catch_unwind(AssertUnwindSafe(|| {
            let r = f(backend)?;
            backend.synchronize()?;
            Ok(r)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(op, device = %backend.id(), "tensor backend panicked");
            Err(TensorError::Device(format!("internal error in {op}")))
        });
        self.usage.record(backend.id().kind, start.elapsed(), moved.0, moved.1);
        out
    }

    fn wrap(&self, shape: Shape, dtype: DType, storage: Storage, memory: Reservation) -> Result<Tensor> {
        if storage.len() != shape.numel() || storage.dtype() != dtype {
            return Err(TensorError::Device(format!(
                "backend returned {} {} elements for {:?} {dtype}",
                storage.len(),
                storage.dtype(),
                shape
            )));
        }
        Ok(Tensor {
            shape,
            dtype,
            buf: Arc::new(Buffer {
                storage,
                device: self.device.clone(),
                _memory: memory,
            }),
        })
    }

    /// Runs an op with one output of `shape` and `dtype`.
    fn op(
        &self,
        name: &'static str,
        shape: Shape,
        dtype: DType,
        f: impl FnOnce(&dyn super::Backend) -> Result<Storage>,
    ) -> Result<Tensor> {
        let memory = self.reserve(&shape, dtype)?;
        let storage = self.run(name, (0, 0), f)?;
        self.wrap(shape, dtype, storage, memory)
    }

    fn check_mine(&self, op: &'static str, x: &Tensor) -> Result<()> {
        if x.device() != &self.device {
            return Err(TensorError::invalid(format!(
                "{op}: tensor is on {}, this context runs on {}",
                x.device().id(),
                self.device.id()
            )));
        }
        Ok(())
    }

    // ---- creation and reading -------------------------------------------

    /// A tensor from little-endian bytes; `bytes` must hold exactly
    /// `numel(dims) * dtype.size()` bytes.
    pub fn from_bytes(&self, dims: &[usize], dtype: DType, bytes: &[u8]) -> Result<Tensor> {
        let shape = Shape::new(dims.to_vec())?;
        let want = shape.byte_size(dtype)?;
        if bytes.len() as u64 != want {
            return Err(TensorError::invalid(format!(
                "shape {dims:?} of {dtype} needs {want} bytes, got {}",
                bytes.len()
            )));
        }
        let memory = self.reserve(&shape, dtype)?;
        let storage = self.run("create", (want, 0), |b| b.upload(dtype, bytes))?;
        self.wrap(shape, dtype, storage, memory)
    }

    /// A tensor from typed values.
    pub fn from_slice<T: Element>(&self, dims: &[usize], data: &[T]) -> Result<Tensor> {
        let mut bytes = Vec::with_capacity(data.len().saturating_mul(T::DTYPE.size()));
        for &x in data {
            x.write_le(&mut bytes);
        }
        self.from_bytes(dims, T::DTYPE, &bytes)
    }

    /// The data as little-endian bytes.
    pub fn to_bytes(&self, x: &Tensor) -> Result<Vec<u8>> {
        self.check_mine("read", x)?;
        self.run("read", (0, x.byte_size()), |b| b.download(x.storage()))
    }

    /// The data as `T` (which must match the dtype).
    pub fn to_vec<T: Element>(&self, x: &Tensor) -> Result<Vec<T>> {
        if x.dtype != T::DTYPE {
            return Err(TensorError::invalid(format!(
                "read as {}: tensor is {}",
                T::DTYPE,
                x.dtype
            )));
        }
        let bytes = self.to_bytes(x)?;
        Ok(bytes.chunks_exact(T::DTYPE.size()).map(T::read_le).collect())
    }

    /// The data widened to `f64`, whatever the dtype (tests).
    pub fn to_f64(&self, x: &Tensor) -> Result<Vec<f64>> {
        let bytes = self.to_bytes(x)?;
        fn read<T: Element>(b: &[u8]) -> Vec<f64> {
            b.chunks_exact(T::DTYPE.size())
                .map(|c| T::read_le(c).to_f64())
                .collect()
        }
        Ok(match x.dtype {
            DType::F32 => read::<f32>(&bytes),
            DType::F16 => read::<half::f16>(&bytes),
            DType::Bf16 => read::<half::bf16>(&bytes),
            DType::I32 => read::<i32>(&bytes),
            DType::I64 => read::<i64>(&bytes),
            DType::U8 => read::<u8>(&bytes),
        })
    }

    /// A scalar tensor holding `value` as `dtype` (rounded or saturated).
    pub fn scalar(&self, dtype: DType, value: f64) -> Result<Tensor> {
        let mut bytes = Vec::with_capacity(8);
        match dtype {
            DType::F32 => f32::from_f64(value).write_le(&mut bytes),
            DType::F16 => half::f16::from_f64(value).write_le(&mut bytes),
            DType::Bf16 => half::bf16::from_f64(value).write_le(&mut bytes),
            DType::I32 => i32::from_f64(value).write_le(&mut bytes),
            DType::I64 => i64::from_f64(value).write_le(&mut bytes),
            DType::U8 => u8::from_f64(value).write_le(&mut bytes),
        }
        self.from_bytes(&[], dtype, &bytes)
    }

    // ---- element-wise ---------------------------------------------------

    /// `op(a, b)` with NumPy broadcasting; both operands of one dtype.
    pub fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let name = match op {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        };
        self.check_mine(name, a)?;
        same_device(name, a, b)?;
        same_dtype(name, a, b)?;
        let out = broadcast(name, &a.shape, &b.shape)?;
        let (sa, sb) = (broadcast_strides(&a.shape, &out), broadcast_strides(&b.shape, &out));
        self.op(name, out.clone(), a.dtype, |be| {
            be.binary(op, a.storage(), &sa, b.storage(), &sb, &out)
        })
    }

    /// `a + b`.
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a - b`.
    pub fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a * b`.
    pub fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b`.
    pub fn div(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `op(x, value)`, `value` converted to the dtype of `x`.
    pub fn binary_scalar(&self, op: BinaryOp, x: &Tensor, value: f64) -> Result<Tensor> {
        self.check_mine("scalar op", x)?;
        let s = self.scalar(x.dtype, value)?;
        self.binary(op, x, &s)
    }

    /// `op(x)` element-wise (float dtypes).
    pub fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        self.check_mine("unary op", x)?;
        float_only("unary op", x)?;
        self.op("unary", x.shape.clone(), x.dtype, |be| be.unary(op, x.storage()))
    }

    // ---- matrix product ---------------------------------------------------

    /// `a · b` over the last two axes, batch axes broadcast
    /// (`[..., m, k] · [..., k, n] → [..., m, n]`); both of rank ≥ 2, one
    /// float dtype.
    pub fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.check_mine("matmul", a)?;
        same_device("matmul", a, b)?;
        same_dtype("matmul", a, b)?;
        float_only("matmul", a)?;
        let (ad, bd) = (a.dims(), b.dims());
        let (Some((&[m, k], a_batch)), Some((&[k2, n], b_batch))) = (
            ad.split_last_chunk::<2>().map(|(x, y)| (y, x)),
            bd.split_last_chunk::<2>().map(|(x, y)| (y, x)),
        ) else {
            return Err(TensorError::shape("matmul (needs rank >= 2)", ad, bd));
        };
        if k != k2 {
            return Err(TensorError::shape("matmul", ad, bd));
        }
        let (a_batch, b_batch) = (Shape::new(a_batch.to_vec())?, Shape::new(b_batch.to_vec())?);
        let batch = broadcast("matmul", &a_batch, &b_batch).map_err(|_| TensorError::shape("matmul", ad, bd))?;
        let mut out_dims = batch.dims().to_vec();
        out_dims.extend([m, n]);
        let out = Shape::new(out_dims)?;
        self.limits.check_matmul(batch.numel(), m, n, k)?;
        let memory = self.reserve(&out, a.dtype)?;
        // Offsets only when there is output: a zero-sized matrix may sit
        // under a batch count far too large to enumerate.
        let (mut lhs_offsets, mut rhs_offsets) = (Vec::new(), Vec::new());
        if out.numel() > 0 {
            let (sa, sb) = (broadcast_strides(&a_batch, &batch), broadcast_strides(&b_batch, &batch));
            let bdims = batch.dims();
            for i in 0..batch.numel() {
                let (mut r, mut oa, mut ob) = (i, 0usize, 0usize);
                for d in (0..bdims.len()).rev() {
                    let idx = r % bdims[d];
                    r /= bdims[d];
                    oa += idx * sa[d];
                    ob += idx * sb[d];
                }
                lhs_offsets.push(oa * m * k);
                rhs_offsets.push(ob * k * n);
            }
        } else {
            lhs_offsets.push(0);
            rhs_offsets.push(0);
        }
        let plan = MatmulPlan {
            m,
            n,
            k,
            lhs_offsets,
            rhs_offsets,
        };
        if out.numel() == 0 {
            let storage = self.run("matmul", (0, 0), |be| be.upload(a.dtype, &[]))?;
            return self.wrap(out, a.dtype, storage, memory);
        }
        let storage = self.run("matmul", (0, 0), |be| be.matmul(a.storage(), b.storage(), &plan))?;
        self.wrap(out, a.dtype, storage, memory)
    }

    // ---- rows -------------------------------------------------------------

    /// Softmax along `axis` (negative counts from the end).
    pub fn softmax(&self, x: &Tensor, axis: i64) -> Result<Tensor> {
        self.softmax_impl(x, axis, false)
    }

    /// Log-softmax along `axis`.
    pub fn log_softmax(&self, x: &Tensor, axis: i64) -> Result<Tensor> {
        self.softmax_impl(x, axis, true)
    }

    fn softmax_impl(&self, x: &Tensor, axis: i64, log: bool) -> Result<Tensor> {
        self.check_mine("softmax", x)?;
        float_only("softmax", x)?;
        let axis = x.shape.axis("softmax", axis)?;
        let dims = x.shape.around(axis);
        self.op("softmax", x.shape.clone(), x.dtype, |be| {
            be.softmax(x.storage(), dims, log)
        })
    }

    fn norm_impl(&self, op: NormOp, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>) -> Result<Tensor> {
        self.check_mine("norm", x)?;
        float_only("norm", x)?;
        let cols = *x
            .dims()
            .last()
            .ok_or_else(|| TensorError::invalid("norm of a scalar"))?;
        for p in [weight, bias].into_iter().flatten() {
            same_device("norm", x, p)?;
            same_dtype("norm", x, p)?;
            if p.dims() != [cols] {
                return Err(TensorError::shape(
                    "norm (weight and bias are [last dim])",
                    x.dims(),
                    p.dims(),
                ));
            }
        }
        self.op("norm", x.shape.clone(), x.dtype, |be| {
            be.norm(
                op,
                x.storage(),
                cols,
                weight.map(Tensor::storage),
                bias.map(Tensor::storage),
            )
        })
    }

    /// Layer norm over the last axis, with optional `[last]` weight and bias.
    pub fn layer_norm(&self, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        self.norm_impl(NormOp::Layer { eps }, x, weight, bias)
    }

    /// RMS norm over the last axis, with optional `[last]` weight.
    pub fn rms_norm(&self, x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        self.norm_impl(NormOp::Rms { eps }, x, weight, None)
    }

    /// Reduces `axis` (`keep_dims`: leave it as length 1). `Mean` needs a
    /// float dtype; `Max` and `ArgMax` need a non-empty axis; `ArgMax`
    /// returns `i64`.
    pub fn reduce(&self, op: ReduceOp, x: &Tensor, axis: i64, keep_dims: bool) -> Result<Tensor> {
        self.check_mine("reduce", x)?;
        let axis = x.shape.axis("reduce", axis)?;
        let dims = x.shape.around(axis);
        if op == ReduceOp::Mean && !x.dtype.is_float() {
            return Err(TensorError::dtype("mean", x.dtype));
        }
        if matches!(op, ReduceOp::Max | ReduceOp::ArgMax) && dims.1 == 0 {
            return Err(TensorError::invalid(format!("max of an empty axis {axis}")));
        }
        let out = x.shape.with_axis(axis, 1, keep_dims)?;
        let dtype = if op == ReduceOp::ArgMax { DType::I64 } else { x.dtype };
        self.op("reduce", out, dtype, |be| be.reduce(op, x.storage(), dims))
    }

    /// Sum along `axis`.
    pub fn sum(&self, x: &Tensor, axis: i64, keep_dims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, x, axis, keep_dims)
    }

    /// Mean along `axis`.
    pub fn mean(&self, x: &Tensor, axis: i64, keep_dims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, x, axis, keep_dims)
    }

    /// Max along `axis`.
    pub fn max(&self, x: &Tensor, axis: i64, keep_dims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, x, axis, keep_dims)
    }

    /// Argmax along `axis` (`i64`).
    pub fn argmax(&self, x: &Tensor, axis: i64, keep_dims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::ArgMax, x, axis, keep_dims)
    }

    /// The `k` largest along the last axis, descending (ties: lower index
    /// first), as (values, `i64` indices), both of shape `[..., k]`.
    pub fn top_k(&self, x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
        self.check_mine("top_k", x)?;
        let len = *x
            .dims()
            .last()
            .ok_or_else(|| TensorError::invalid("top_k of a scalar"))?;
        if k > len {
            return Err(TensorError::invalid(format!(
                "top_k: k = {k} but the last axis has {len}"
            )));
        }
        let out = x.shape.with_axis(x.shape.rank() - 1, k, true)?;
        let rows = x.shape.numel().checked_div(len).unwrap_or(0);
        let rows = if len == 0 {
            out.numel().checked_div(k).unwrap_or(0)
        } else {
            rows
        };
        let vm = self.reserve(&out, x.dtype)?;
        let im = self.reserve(&out, DType::I64)?;
        if out.numel() == 0 {
            let (v, i) = self.run("top_k", (0, 0), |be| {
                Ok((be.upload(x.dtype, &[])?, be.upload(DType::I64, &[])?))
            })?;
            return Ok((
                self.wrap(out.clone(), x.dtype, v, vm)?,
                self.wrap(out, DType::I64, i, im)?,
            ));
        }
        let (v, i) = self.run("top_k", (0, 0), |be| be.top_k(x.storage(), rows, len, k))?;
        Ok((
            self.wrap(out.clone(), x.dtype, v, vm)?,
            self.wrap(out, DType::I64, i, im)?,
        ))
    }

    // ---- layout -----------------------------------------------------------

    /// The same data under new dimensions (same element count); shares the
    /// buffer, so it costs no memory.
    pub fn reshape(&self, x: &Tensor, dims: &[usize]) -> Result<Tensor> {
        self.check_mine("reshape", x)?;
        let shape = Shape::new(dims.to_vec())?;
        self.limits.check_tensor(shape.dims())?;
        if shape.numel() != x.shape.numel() {
            return Err(TensorError::shape("reshape", x.dims(), dims));
        }
        Ok(Tensor {
            shape,
            dtype: x.dtype,
            buf: Arc::clone(&x.buf),
        })
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        self.check_mine("permute", x)?;
        let rank = x.shape.rank();
        let mut seen = [false; super::MAX_RANK];
        let valid = perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(TensorError::invalid(format!(
                "permute: {perm:?} is not a permutation of the {rank} axes"
            )));
        }
        let strides = x.shape.strides();
        let out = Shape::new(perm.iter().map(|&p| x.dims()[p]).collect::<Vec<_>>())?;
        let src: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
        self.op("permute", out.clone(), x.dtype, |be| {
            be.copy_strided(x.storage(), 0, &src, &out)
        })
    }

    /// Swaps two axes.
    pub fn transpose(&self, x: &Tensor, a: i64, b: i64) -> Result<Tensor> {
        let (a, b) = (x.shape.axis("transpose", a)?, x.shape.axis("transpose", b)?);
        let mut perm: Vec<usize> = (0..x.shape.rank()).collect();
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// Elements `start..end` of `axis`.
    pub fn slice(&self, x: &Tensor, axis: i64, start: usize, end: usize) -> Result<Tensor> {
        self.check_mine("slice", x)?;
        let axis = x.shape.axis("slice", axis)?;
        let len = x.dims()[axis];
        if start > end || end > len {
            return Err(TensorError::invalid(format!(
                "slice: {start}..{end} out of range for axis {axis} of length {len}"
            )));
        }
        let out = x.shape.with_axis(axis, end - start, true)?;
        let strides = x.shape.strides();
        let offset = if out.numel() == 0 { 0 } else { start * strides[axis] };
        self.op("slice", out.clone(), x.dtype, |be| {
            be.copy_strided(x.storage(), offset, &strides, &out)
        })
    }

    /// Joins tensors along `axis`; all other axes must match.
    pub fn concat(&self, xs: &[&Tensor], axis: i64) -> Result<Tensor> {
        let first = *xs.first().ok_or_else(|| TensorError::invalid("concat of no tensors"))?;
        self.check_mine("concat", first)?;
        let axis = first.shape.axis("concat", axis)?;
        let mut total = 0usize;
        for x in xs {
            same_device("concat", first, x)?;
            same_dtype("concat", first, x)?;
            let fits = x.shape.rank() == first.shape.rank()
                && x.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !fits {
                return Err(TensorError::shape("concat", first.dims(), x.dims()));
            }
            total = total
                .checked_add(x.dims()[axis])
                .ok_or_else(|| TensorError::invalid("concat: length overflows"))?;
        }
        let out = first.shape.with_axis(axis, total, true)?;
        let (outer, _, inner) = first.shape.around(axis);
        let parts: Vec<(&Storage, usize)> = xs.iter().map(|x| (x.storage(), x.dims()[axis] * inner)).collect();
        if out.numel() == 0 {
            return self.op("concat", out, first.dtype, |be| be.upload(first.dtype, &[]));
        }
        self.op("concat", out, first.dtype, |be| be.concat(&parts, outer))
    }

    /// Rows of `table` (axis 0) picked by the integer `indices` (`i32` or
    /// `i64`): shape `indices.dims ++ table.dims[1..]`. An embedding lookup.
    pub fn gather(&self, table: &Tensor, indices: &Tensor) -> Result<Tensor> {
        self.check_mine("gather", table)?;
        same_device("gather", table, indices)?;
        if !matches!(indices.dtype, DType::I32 | DType::I64) {
            return Err(TensorError::dtype("gather indices", indices.dtype));
        }
        let (&rows, row) = table
            .dims()
            .split_first()
            .ok_or_else(|| TensorError::invalid("gather from a scalar"))?;
        let row_len = row.iter().product();
        let mut dims = indices.dims().to_vec();
        dims.extend_from_slice(row);
        let out = Shape::new(dims)?;
        if out.numel() == 0 {
            return self.op("gather", out, table.dtype, |be| be.upload(table.dtype, &[]));
        }
        self.op("gather", out, table.dtype, |be| {
            be.gather(table.storage(), rows, row_len, indices.storage())
        })
    }

    /// Converts to `dtype` (float → int truncates toward zero and saturates,
    /// NaN → 0; int → int wraps; to `f16`/`bf16` rounds to nearest even).
    pub fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        self.check_mine("cast", x)?;
        self.op("cast", x.shape.clone(), dtype, |be| be.cast(x.storage(), dtype))
    }
}
