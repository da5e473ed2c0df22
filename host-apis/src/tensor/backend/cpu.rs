//! The CPU backend: the embedded default, the fallback when no GPU is
//! found, and the reference every other backend is tested against.
//!
//! Matrix products go to the `gemm` crate (packed, AVX2/FMA micro-kernels
//! picked at run time); everything else is plain loops over slices that the
//! compiler vectorises, split across this device's own rayon pool once they
//! are large enough to pay for it. `f16`/`bf16` compute in `f32`.

use std::borrow::Cow;
use std::cmp::Ordering;

use half::{bf16, f16};
use rayon::prelude::*;

use super::{Backend, BinaryOp, DeviceId, DeviceKind, MatmulPlan, NormOp, ReduceOp, Storage, UnaryOp, wrong_device};
use crate::tensor::dtype::{DType, Element};
use crate::tensor::error::{Result, TensorError};
use crate::tensor::shape::Shape;

/// Below this many elements a loop runs on the calling thread: handing work
/// to the pool costs a few microseconds, about what 32k simple ops take.
const PAR_MIN: usize = 1 << 15;

/// A host buffer of one dtype.
#[derive(Clone)]
#[allow(missing_docs)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

/// Runs `$body` with `$v` bound to the typed vector, rewrapping the result
/// in the same variant.
macro_rules! map_storage {
    ($s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F16($v) => CpuStorage::F16($body),
            CpuStorage::Bf16($v) => CpuStorage::Bf16($body),
            CpuStorage::I32($v) => CpuStorage::I32($body),
            CpuStorage::I64($v) => CpuStorage::I64($body),
            CpuStorage::U8($v) => CpuStorage::U8($body),
        }
    };
}

/// Runs `$body` with `$v` bound to the typed vector.
macro_rules! with_storage {
    ($s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => $body,
            CpuStorage::F16($v) => $body,
            CpuStorage::Bf16($v) => $body,
            CpuStorage::I32($v) => $body,
            CpuStorage::I64($v) => $body,
            CpuStorage::U8($v) => $body,
        }
    };
}

impl CpuStorage {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::Bf16(_) => DType::Bf16,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::U8(_) => DType::U8,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_storage!(self, |v| v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn from_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        fn read<T: Element>(bytes: &[u8]) -> Vec<T> {
            bytes.chunks_exact(T::DTYPE.size()).map(T::read_le).collect()
        }
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(TensorError::invalid(format!(
                "{} bytes is not a whole number of {dtype} elements",
                bytes.len()
            )));
        }
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(read(bytes)),
            DType::F16 => CpuStorage::F16(read(bytes)),
            DType::Bf16 => CpuStorage::Bf16(read(bytes)),
            DType::I32 => CpuStorage::I32(read(bytes)),
            DType::I64 => CpuStorage::I64(read(bytes)),
            DType::U8 => CpuStorage::U8(bytes.to_vec()),
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        fn write<T: Element>(v: &[T]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * T::DTYPE.size());
            for &x in v {
                x.write_le(&mut out);
            }
            out
        }
        match self {
            CpuStorage::U8(v) => v.clone(),
            other => with_storage!(other, |v| write(v)),
        }
    }

    /// The elements as `f32` (floats only), borrowed when already `f32`.
    fn as_f32(&self) -> Option<Cow<'_, [f32]>> {
        match self {
            CpuStorage::F32(v) => Some(Cow::Borrowed(v)),
            CpuStorage::F16(v) => Some(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            CpuStorage::Bf16(v) => Some(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            _ => None,
        }
    }

    /// The elements as `i64` (integers only).
    fn as_i64(&self) -> Option<Vec<i64>> {
        match self {
            CpuStorage::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            CpuStorage::I64(v) => Some(v.clone()),
            CpuStorage::U8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            _ => None,
        }
    }

    /// Rounds `f32` results into `dtype` (float dtypes only).
    fn from_f32(dtype: DType, v: Vec<f32>) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(v),
            DType::F16 => CpuStorage::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::Bf16 => CpuStorage::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
            other => return Err(TensorError::dtype("float result", other)),
        })
    }

    /// Narrows `i64` results into `dtype`, wrapping (integer dtypes only).
    fn from_i64(dtype: DType, v: Vec<i64>) -> Result<Self> {
        Ok(match dtype {
            DType::I32 => CpuStorage::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I64 => CpuStorage::I64(v),
            DType::U8 => CpuStorage::U8(v.iter().map(|&x| x as u8).collect()),
            other => return Err(TensorError::dtype("integer result", other)),
        })
    }
}

/// The CPU device: a rayon pool of its own, so a device's thread count is a
/// real limit and two CPU devices do not compete for one pool.
pub struct CpuDevice {
    id: DeviceId,
    threads: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for CpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuDevice")
            .field("id", &self.id)
            .field("threads", &self.threads)
            .finish()
    }
}

impl CpuDevice {
    /// A CPU device with `threads` worker threads (0: one per core).
    pub fn new(ordinal: usize, threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("wafer-cpu{ordinal}-{i}"))
            .build()
            .map_err(|e| TensorError::Device(format!("cannot start CPU threads: {e}")))?;
        Ok(CpuDevice {
            id: DeviceId {
                kind: DeviceKind::Cpu,
                ordinal,
            },
            threads,
            pool,
        })
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn get<'a>(&self, s: &'a Storage) -> Result<&'a CpuStorage> {
        match s {
            Storage::Cpu(c) => Ok(c),
            Storage::Cuda(_) => Err(wrong_device(self.id)),
        }
    }

    /// Runs an op of about `work` element-steps: small ones inline on the
    /// caller's thread (handing a tiny op to the pool costs more than the op:
    /// a wake-up and a cross-thread return, microseconds), large ones on this
    /// device's pool so its parallel loops use its threads.
    fn run<T: Send>(&self, work: usize, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        if work < PAR_MIN { f() } else { self.pool.install(f) }
    }
}

/// Fills `out` row by row (`row` elements each), in parallel when large.
fn fill_rows<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if row == 0 || out.is_empty() {
        return;
    }
    if out.len() < PAR_MIN {
        out.chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        let min = (PAR_MIN / row).max(1);
        out.par_chunks_mut(row)
            .with_min_len(min)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}

/// Element-wise map, in parallel when large.
fn map<T: Sync, U: Send + Default + Clone>(x: &[T], f: impl Fn(&T) -> U + Sync + Send) -> Vec<U> {
    if x.len() < PAR_MIN {
        x.iter().map(f).collect()
    } else {
        x.par_iter().with_min_len(PAR_MIN / 4).map(f).collect()
    }
}

/// Offset of the start of row `row` (all dims but the last) under `strides`.
#[inline]
fn row_offset(dims: &[usize], strides: &[usize], mut row: usize) -> usize {
    let mut off = 0;
    for d in (0..dims.len().saturating_sub(1)).rev() {
        let n = dims[d];
        if n > 0 {
            off += (row % n) * strides[d];
            row /= n;
        }
    }
    off
}

fn broadcast_zip<T: Copy + Send + Sync + Default>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    out: &Shape,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Vec<T>> {
    let n = out.numel();
    let dims = out.dims();
    let mut res = vec![T::default(); n];
    if n == 0 {
        return Ok(res);
    }
    if dims.is_empty() {
        if let (Some(&x), Some(&y), Some(r)) = (a.first(), b.first(), res.first_mut()) {
            *r = f(x, y);
        }
        return Ok(res);
    }
    if a.len() == n && b.len() == n && sa == sb && sa == out.strides().as_slice() {
        fill_rows(&mut res, PAR_MIN, |i, r| {
            let s = i * PAR_MIN;
            for ((o, &x), &y) in r.iter_mut().zip(&a[s..]).zip(&b[s..]) {
                *o = f(x, y);
            }
        });
        return Ok(res);
    }
    let last = dims.len() - 1;
    let (ia, ib) = (sa[last], sb[last]);
    fill_rows(&mut res, dims[last], |row, r| {
        let oa = row_offset(dims, sa, row);
        let ob = row_offset(dims, sb, row);
        match (ia, ib) {
            (1, 1) => {
                for ((o, &x), &y) in r.iter_mut().zip(&a[oa..]).zip(&b[ob..]) {
                    *o = f(x, y);
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (o, &x) in r.iter_mut().zip(&a[oa..]) {
                    *o = f(x, y);
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (o, &y) in r.iter_mut().zip(&b[ob..]) {
                    *o = f(x, y);
                }
            }
            _ => {
                for (j, o) in r.iter_mut().enumerate() {
                    *o = f(a[oa + j * ia], b[ob + j * ib]);
                }
            }
        }
    });
    Ok(res)
}

fn copy_strided_typed<T: Copy + Send + Sync + Default>(
    x: &[T],
    offset: usize,
    strides: &[usize],
    out: &Shape,
) -> Vec<T> {
    let n = out.numel();
    let dims = out.dims();
    let mut res = vec![T::default(); n];
    if n == 0 {
        return res;
    }
    if dims.is_empty() {
        if let (Some(r), Some(&v)) = (res.first_mut(), x.get(offset)) {
            *r = v;
        }
        return res;
    }
    let last = dims.len() - 1;
    let s = strides[last];
    fill_rows(&mut res, dims[last], |row, r| {
        let o = offset + row_offset(dims, strides, row);
        if s == 1 {
            r.copy_from_slice(&x[o..o + r.len()]);
        } else {
            for (j, v) in r.iter_mut().enumerate() {
                *v = x[o + j * s];
            }
        }
    });
    res
}

/// A total order for sorting (floats: IEEE total order, so NaN is largest).
trait TotalOrd: Copy + Send + Sync {
    fn total(&self, other: &Self) -> Ordering;
    fn is_nan(&self) -> bool {
        false
    }
}
macro_rules! total_float {
    ($($t:ty),*) => {$(impl TotalOrd for $t {
        fn total(&self, other: &Self) -> Ordering { self.total_cmp(other) }
        fn is_nan(&self) -> bool { <$t>::is_nan(*self) }
    })*};
}
total_float!(f32, f16, bf16);
macro_rules! total_int {
    ($($t:ty),*) => {$(impl TotalOrd for $t {
        fn total(&self, other: &Self) -> Ordering { self.cmp(other) }
    })*};
}
total_int!(i32, i64, u8);

/// Index of the first largest element, skipping NaNs unless all are NaN.
fn argmax_of<T: TotalOrd + PartialOrd>(v: impl Iterator<Item = T>) -> (usize, Option<T>) {
    let mut best: Option<(usize, T)> = None;
    for (i, x) in v.enumerate() {
        best = match best {
            None => Some((i, x)),
            Some((_, b)) if x > b || (b.is_nan() && !x.is_nan()) => Some((i, x)),
            keep => keep,
        };
    }
    best.map_or((0, None), |(i, x)| (i, Some(x)))
}

fn top_k_typed<T: TotalOrd + Default>(x: &[T], rows: usize, len: usize, k: usize) -> (Vec<T>, Vec<i64>) {
    let mut vals = vec![T::default(); rows * k];
    let mut idx = vec![0i64; rows * k];
    if k == 0 {
        return (vals, idx);
    }
    let desc = |a: &(T, usize), b: &(T, usize)| b.0.total(&a.0).then(a.1.cmp(&b.1));
    vals.par_chunks_mut(k)
        .zip(idx.par_chunks_mut(k))
        .enumerate()
        .for_each(|(r, (vo, io))| {
            let row = &x[r * len..(r + 1) * len];
            let mut pairs: Vec<(T, usize)> = row.iter().copied().zip(0..).collect();
            if k < len {
                pairs.select_nth_unstable_by(k - 1, desc);
                pairs.truncate(k);
            }
            pairs.sort_unstable_by(desc);
            for ((v, i), (pv, pi)) in vo.iter_mut().zip(io.iter_mut()).zip(pairs) {
                *v = pv;
                *i = pi as i64;
            }
        });
    (vals, idx)
}

fn gelu(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `dst[m,n] = lhs[m,k] · rhs[k,n]`, all row-major and contiguous.
fn gemm_into<T: 'static + Copy>(
    dst: &mut [T],
    lhs: &[T],
    rhs: &[T],
    (m, n, k): (usize, usize, usize),
    zero: T,
    one: T,
    par: gemm::Parallelism,
) -> Result<()> {
    if dst.len() < m * n || lhs.len() < m * k || rhs.len() < k * n {
        return Err(TensorError::Device("matmul buffers too small".into()));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    #[allow(unsafe_code)]
    // SAFETY: the three slices hold at least m·n, m·k and k·n elements
    // (checked above), and the strides describe exactly those row-major
    // blocks; `dst` is a unique borrow. `T` is f32 or f16, both supported.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            zero,
            one,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

impl CpuDevice {
    fn matmul_typed<T: 'static + Copy + Send + Sync + Default>(
        &self,
        lhs: &[T],
        rhs: &[T],
        plan: &MatmulPlan,
        zero: T,
        one: T,
    ) -> Result<Vec<T>> {
        let (m, n, k) = (plan.m, plan.n, plan.k);
        let mn = m * n;
        let mut out = vec![T::default(); plan.batch() * mn];
        if mn == 0 || k == 0 {
            return Ok(out);
        }
        let slices = |b: usize| -> Result<(&[T], &[T])> {
            let lo = plan.lhs_offsets.get(b).copied().unwrap_or(0);
            let ro = plan.rhs_offsets.get(b).copied().unwrap_or(0);
            Ok((
                lhs.get(lo..lo + m * k)
                    .ok_or_else(|| TensorError::Device("lhs range".into()))?,
                rhs.get(ro..ro + k * n)
                    .ok_or_else(|| TensorError::Device("rhs range".into()))?,
            ))
        };
        // Small products: one per thread. Large ones: gemm splits each.
        let small = m.saturating_mul(n).saturating_mul(k) < 96 * 96 * 96;
        if small && plan.batch() > 1 {
            out.par_chunks_mut(mn).enumerate().try_for_each(|(b, dst)| {
                let (l, r) = slices(b)?;
                gemm_into(dst, l, r, (m, n, k), zero, one, gemm::Parallelism::None)
            })?;
        } else {
            let par = if self.threads > 1 {
                gemm::Parallelism::Rayon(self.threads)
            } else {
                gemm::Parallelism::None
            };
            for (b, dst) in out.chunks_mut(mn).enumerate() {
                let (l, r) = slices(b)?;
                gemm_into(dst, l, r, (m, n, k), zero, one, par)?;
            }
        }
        Ok(out)
    }
}

impl Backend for CpuDevice {
    fn id(&self) -> DeviceId {
        self.id
    }

    fn name(&self) -> String {
        format!("CPU ({} threads)", self.threads)
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<Storage> {
        Ok(Storage::Cpu(CpuStorage::from_bytes(dtype, bytes)?))
    }

    fn download(&self, x: &Storage) -> Result<Vec<u8>> {
        Ok(self.get(x)?.to_bytes())
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        sa: &[usize],
        b: &Storage,
        sb: &[usize],
        out: &Shape,
    ) -> Result<Storage> {
        let (a, b) = (self.get(a)?, self.get(b)?);
        self.run(out.numel(), || {
            if let (Some(x), Some(y)) = (a.as_f32(), b.as_f32()) {
                let r = match op {
                    BinaryOp::Add => broadcast_zip(&x, sa, &y, sb, out, |x, y| x + y),
                    BinaryOp::Sub => broadcast_zip(&x, sa, &y, sb, out, |x, y| x - y),
                    BinaryOp::Mul => broadcast_zip(&x, sa, &y, sb, out, |x, y| x * y),
                    BinaryOp::Div => broadcast_zip(&x, sa, &y, sb, out, |x, y| x / y),
                }?;
                return Ok(Storage::Cpu(CpuStorage::from_f32(a.dtype(), r)?));
            }
            macro_rules! int_op {
                ($x:expr, $y:expr) => {
                    match op {
                        BinaryOp::Add => broadcast_zip($x, sa, $y, sb, out, |x, y| x.wrapping_add(y)),
                        BinaryOp::Sub => broadcast_zip($x, sa, $y, sb, out, |x, y| x.wrapping_sub(y)),
                        BinaryOp::Mul => broadcast_zip($x, sa, $y, sb, out, |x, y| x.wrapping_mul(y)),
                        BinaryOp::Div => broadcast_zip($x, sa, $y, sb, out, |x, y| {
                            if y == 0 { 0 } else { x.wrapping_div(y) }
                        }),
                    }?
                };
            }
            Ok(Storage::Cpu(match (a, b) {
                (CpuStorage::I32(x), CpuStorage::I32(y)) => CpuStorage::I32(int_op!(x, y)),
                (CpuStorage::I64(x), CpuStorage::I64(y)) => CpuStorage::I64(int_op!(x, y)),
                (CpuStorage::U8(x), CpuStorage::U8(y)) => CpuStorage::U8(int_op!(x, y)),
                _ => return Err(TensorError::dtype("binary op on mixed dtypes", b.dtype())),
            }))
        })
    }

    fn unary(&self, op: UnaryOp, x: &Storage) -> Result<Storage> {
        let x = self.get(x)?;
        let v = x.as_f32().ok_or_else(|| TensorError::dtype("unary op", x.dtype()))?;
        self.run(v.len(), || {
            let r = match op {
                UnaryOp::Relu => map(&v, |&x| x.max(0.0)),
                UnaryOp::Gelu => map(&v, |&x| gelu(x)),
                UnaryOp::Silu => map(&v, |&x| x * sigmoid(x)),
                UnaryOp::Sigmoid => map(&v, |&x| sigmoid(x)),
                UnaryOp::Tanh => map(&v, |&x| x.tanh()),
                UnaryOp::Exp => map(&v, |&x| x.exp()),
            };
            Ok(Storage::Cpu(CpuStorage::from_f32(x.dtype(), r)?))
        })
    }

    fn matmul(&self, lhs: &Storage, rhs: &Storage, plan: &MatmulPlan) -> Result<Storage> {
        let (l, r) = (self.get(lhs)?, self.get(rhs)?);
        let work = plan
            .batch()
            .saturating_mul(plan.m)
            .saturating_mul(plan.n)
            .saturating_mul(plan.k);
        self.run(work, || {
            Ok(Storage::Cpu(match (l, r) {
                (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(self.matmul_typed(a, b, plan, 0.0, 1.0)?),
                (CpuStorage::F16(a), CpuStorage::F16(b)) => {
                    CpuStorage::F16(self.matmul_typed(a, b, plan, f16::ZERO, f16::ONE)?)
                }
                (CpuStorage::Bf16(_), CpuStorage::Bf16(_)) => {
                    let (a, b) = (l.as_f32().unwrap_or_default(), r.as_f32().unwrap_or_default());
                    let out = self.matmul_typed(&a, &b, plan, 0.0, 1.0)?;
                    CpuStorage::from_f32(DType::Bf16, out)?
                }
                _ => return Err(TensorError::dtype("matmul", l.dtype())),
            }))
        })
    }

    fn softmax(&self, x: &Storage, (outer, len, inner): (usize, usize, usize), log: bool) -> Result<Storage> {
        let s = self.get(x)?;
        let v = s.as_f32().ok_or_else(|| TensorError::dtype("softmax", s.dtype()))?;
        self.run(v.len(), || {
            let mut out = vec![0f32; v.len()];
            let block = len * inner;
            fill_rows(&mut out, block, |o, dst| {
                let src = &v[o * block..(o + 1) * block];
                for j in 0..inner {
                    let mut max = f32::NEG_INFINITY;
                    for i in 0..len {
                        max = max.max(src[i * inner + j]);
                    }
                    let mut sum = 0f32;
                    for i in 0..len {
                        let e = (src[i * inner + j] - max).exp();
                        dst[i * inner + j] = e;
                        sum += e;
                    }
                    if log {
                        let ls = sum.ln();
                        for i in 0..len {
                            dst[i * inner + j] = src[i * inner + j] - max - ls;
                        }
                    } else {
                        let inv = 1.0 / sum;
                        for i in 0..len {
                            dst[i * inner + j] *= inv;
                        }
                    }
                }
            });
            let _ = outer;
            Ok(Storage::Cpu(CpuStorage::from_f32(s.dtype(), out)?))
        })
    }

    fn norm(
        &self,
        op: NormOp,
        x: &Storage,
        cols: usize,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
    ) -> Result<Storage> {
        let s = self.get(x)?;
        let v = s.as_f32().ok_or_else(|| TensorError::dtype("norm", s.dtype()))?;
        let w = weight.map(|w| self.get(w)).transpose()?.and_then(|w| w.as_f32());
        let b = bias.map(|b| self.get(b)).transpose()?.and_then(|b| b.as_f32());
        self.run(v.len(), || {
            let mut out = vec![0f32; v.len()];
            let inv_n = 1.0 / cols.max(1) as f32;
            fill_rows(&mut out, cols, |r, dst| {
                let src = &v[r * cols..(r + 1) * cols];
                let (shift, scale) = match op {
                    NormOp::Layer { eps } => {
                        let mean = src.iter().sum::<f32>() * inv_n;
                        let var = src.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() * inv_n;
                        (mean, 1.0 / (var + eps).sqrt())
                    }
                    NormOp::Rms { eps } => {
                        let ms = src.iter().map(|&x| x * x).sum::<f32>() * inv_n;
                        (0.0, 1.0 / (ms + eps).sqrt())
                    }
                };
                for (j, (d, &x)) in dst.iter_mut().zip(src).enumerate() {
                    let mut y = (x - shift) * scale;
                    if let Some(w) = &w {
                        y *= w[j];
                    }
                    if let Some(b) = &b {
                        y += b[j];
                    }
                    *d = y;
                }
            });
            Ok(Storage::Cpu(CpuStorage::from_f32(s.dtype(), out)?))
        })
    }

    fn reduce(&self, op: ReduceOp, x: &Storage, (outer, len, inner): (usize, usize, usize)) -> Result<Storage> {
        let s = self.get(x)?;
        let n = outer * inner;
        self.run(s.len(), || {
            if let Some(v) = s.as_f32() {
                let at = |o: usize, i: usize, j: usize| v[(o * len + i) * inner + j];
                let mut out = vec![0f64; n];
                let mut idx = vec![0i64; if op == ReduceOp::ArgMax { n } else { 0 }];
                fill_rows(&mut out, 1, |p, d| {
                    let (o, j) = (p / inner.max(1), p % inner.max(1));
                    d[0] = match op {
                        ReduceOp::Sum => (0..len).map(|i| at(o, i, j) as f64).sum(),
                        ReduceOp::Mean => (0..len).map(|i| at(o, i, j) as f64).sum::<f64>() / len as f64,
                        ReduceOp::Max | ReduceOp::ArgMax => {
                            let (i, m) = argmax_of((0..len).map(|i| at(o, i, j)));
                            if op == ReduceOp::ArgMax {
                                i as f64
                            } else {
                                m.unwrap_or(f32::NAN) as f64
                            }
                        }
                    };
                });
                if op == ReduceOp::ArgMax {
                    for (d, s) in idx.iter_mut().zip(&out) {
                        *d = *s as i64;
                    }
                    return Ok(Storage::Cpu(CpuStorage::I64(idx)));
                }
                let out = out.into_iter().map(|x| x as f32).collect();
                return Ok(Storage::Cpu(CpuStorage::from_f32(s.dtype(), out)?));
            }
            let v = s.as_i64().ok_or_else(|| TensorError::dtype("reduce", s.dtype()))?;
            let at = |o: usize, i: usize, j: usize| v[(o * len + i) * inner + j];
            let mut out = vec![0i64; n];
            fill_rows(&mut out, 1, |p, d| {
                let (o, j) = (p / inner.max(1), p % inner.max(1));
                d[0] = match op {
                    ReduceOp::Sum => (0..len).fold(0i64, |acc, i| acc.wrapping_add(at(o, i, j))),
                    ReduceOp::Mean => 0,
                    ReduceOp::Max => argmax_of((0..len).map(|i| at(o, i, j))).1.unwrap_or(0),
                    ReduceOp::ArgMax => argmax_of((0..len).map(|i| at(o, i, j))).0 as i64,
                };
            });
            match op {
                ReduceOp::Mean => Err(TensorError::dtype("mean", s.dtype())),
                ReduceOp::ArgMax => Ok(Storage::Cpu(CpuStorage::I64(out))),
                _ => Ok(Storage::Cpu(CpuStorage::from_i64(s.dtype(), out)?)),
            }
        })
    }

    fn copy_strided(&self, x: &Storage, offset: usize, strides: &[usize], out: &Shape) -> Result<Storage> {
        let s = self.get(x)?;
        self.run(out.numel(), || {
            Ok(Storage::Cpu(map_storage!(s, |v| copy_strided_typed(
                v, offset, strides, out
            ))))
        })
    }

    fn concat(&self, parts: &[(&Storage, usize)], outer: usize) -> Result<Storage> {
        let first = parts
            .first()
            .ok_or_else(|| TensorError::invalid("concat of no tensors"))?;
        let first = self.get(first.0)?;
        let parts = parts
            .iter()
            .map(|(s, bl)| Ok((self.get(s)?, *bl)))
            .collect::<Result<Vec<_>>>()?;
        fn join<T: Copy>(parts: &[(&[T], usize)], outer: usize) -> Vec<T> {
            let total: usize = parts.iter().map(|p| p.1).sum();
            let mut out = Vec::with_capacity(total * outer);
            for o in 0..outer {
                for (p, bl) in parts {
                    out.extend_from_slice(&p[o * bl..(o + 1) * bl]);
                }
            }
            out
        }
        macro_rules! typed {
            ($var:ident) => {{
                let typed = parts
                    .iter()
                    .map(|(s, bl)| match s {
                        CpuStorage::$var(v) => Ok((v.as_slice(), *bl)),
                        other => Err(TensorError::dtype("concat of mixed dtypes", other.dtype())),
                    })
                    .collect::<Result<Vec<_>>>()?;
                CpuStorage::$var(join(&typed, outer))
            }};
        }
        Ok(Storage::Cpu(match first {
            CpuStorage::F32(_) => typed!(F32),
            CpuStorage::F16(_) => typed!(F16),
            CpuStorage::Bf16(_) => typed!(Bf16),
            CpuStorage::I32(_) => typed!(I32),
            CpuStorage::I64(_) => typed!(I64),
            CpuStorage::U8(_) => typed!(U8),
        }))
    }

    fn gather(&self, table: &Storage, rows: usize, row_len: usize, indices: &Storage) -> Result<Storage> {
        let t = self.get(table)?;
        let idx = match self.get(indices)? {
            CpuStorage::I32(v) => v.iter().map(|&i| i as i64).collect(),
            CpuStorage::I64(v) => v.clone(),
            other => return Err(TensorError::dtype("gather indices", other.dtype())),
        };
        if let Some(bad) = idx.iter().find(|&&i| i < 0 || i as u64 >= rows as u64) {
            return Err(TensorError::invalid(format!(
                "gather: index {bad} out of range for {rows} rows"
            )));
        }
        self.run(idx.len().saturating_mul(row_len), || {
            Ok(Storage::Cpu(map_storage!(t, |v| {
                let mut out = Vec::with_capacity(idx.len() * row_len);
                for &i in &idx {
                    let s = i as usize * row_len;
                    out.extend_from_slice(&v[s..s + row_len]);
                }
                out
            })))
        })
    }

    fn top_k(&self, x: &Storage, rows: usize, len: usize, k: usize) -> Result<(Storage, Storage)> {
        let s = self.get(x)?;
        self.run(s.len(), || {
            let indices;
            let values = map_storage!(s, |v| {
                let (vals, idx) = top_k_typed(v, rows, len, k);
                indices = idx;
                vals
            });
            let indices = CpuStorage::I64(indices);
            Ok((Storage::Cpu(values), Storage::Cpu(indices)))
        })
    }

    fn cast(&self, x: &Storage, to: DType) -> Result<Storage> {
        let s = self.get(x)?;
        if s.dtype() == to {
            return Ok(Storage::Cpu(s.clone()));
        }
        self.run(s.len(), || {
            Ok(Storage::Cpu(if let Some(v) = s.as_f32() {
                match to {
                    DType::I32 => CpuStorage::I32(map(&v, |&x| x as i32)),
                    DType::I64 => CpuStorage::I64(map(&v, |&x| x as i64)),
                    DType::U8 => CpuStorage::U8(map(&v, |&x| x as u8)),
                    float => CpuStorage::from_f32(float, v.into_owned())?,
                }
            } else {
                let v = s.as_i64().unwrap_or_default();
                match to {
                    DType::F32 => CpuStorage::F32(map(&v, |&x| x as f32)),
                    DType::F16 => CpuStorage::F16(map(&v, |&x| f16::from_f32(x as f32))),
                    DType::Bf16 => CpuStorage::Bf16(map(&v, |&x| bf16::from_f32(x as f32))),
                    int => CpuStorage::from_i64(int, v)?,
                }
            }))
        })
    }
}
