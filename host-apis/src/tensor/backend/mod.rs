//! Compute backends behind one trait.
//!
//! A [`Backend`] owns one device's buffers and runs every kernel on them.
//! Front-end code ([`super::ops`]) validates shapes and dtypes, computes the
//! output shape and reserves its memory before it calls a backend, so a
//! backend only sees well-formed, in-bounds requests; it still returns
//! errors rather than panicking when it finds one that is not.

use std::fmt;

use super::dtype::DType;
use super::error::{Result, TensorError};
use super::shape::Shape;

pub mod cpu;
pub mod cuda;

pub use cpu::CpuStorage;
pub use cuda::CudaStorage;

/// The kind of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Host CPU threads.
    Cpu,
    /// An NVIDIA GPU through the CUDA driver.
    Cuda,
}

impl DeviceKind {
    /// `cpu` or `cuda`.
    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// A device's identity: its kind and ordinal, shown as `cpu:0` or `cuda:1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    /// CPU or CUDA.
    pub kind: DeviceKind,
    /// Index among devices of this kind.
    pub ordinal: usize,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.ordinal)
    }
}

/// Element-wise binary operations (with broadcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b` (integers wrap).
    Add,
    /// `a - b` (integers wrap).
    Sub,
    /// `a * b` (integers wrap).
    Mul,
    /// `a / b`; integer division truncates and `x / 0` is 0 on every device.
    Div,
}

/// Element-wise unary float operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `max(x, 0)`.
    Relu,
    /// GELU, tanh approximation:
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (as GPT-2 and most
    /// inference engines use; within 1e-3 of the erf form).
    Gelu,
    /// `x·sigmoid(x)`.
    Silu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `e^x`.
    Exp,
}

/// Reductions along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum (integers wrap in their own dtype).
    Sum,
    /// Arithmetic mean (floats only).
    Mean,
    /// Largest element (NaNs are skipped unless all are NaN).
    Max,
    /// Index of the first largest element, as `i64`.
    ArgMax,
}

/// Normalisations over the last axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormOp {
    /// `(x - mean) / sqrt(var + eps) · weight + bias`.
    Layer {
        /// Added to the variance.
        eps: f32,
    },
    /// `x / sqrt(mean(x²) + eps) · weight`.
    Rms {
        /// Added to the mean square.
        eps: f32,
    },
}

/// A matmul's shape after broadcasting of its batch dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatmulPlan {
    /// Rows of each output matrix.
    pub m: usize,
    /// Columns of each output matrix.
    pub n: usize,
    /// The shared dimension.
    pub k: usize,
    /// Element offset of each batch's left matrix.
    pub lhs_offsets: Vec<usize>,
    /// Element offset of each batch's right matrix.
    pub rhs_offsets: Vec<usize>,
}

impl MatmulPlan {
    /// Number of matrix products.
    pub fn batch(&self) -> usize {
        self.lhs_offsets.len()
    }

    /// If every batch is laid out with a constant stride (the common case:
    /// no broadcasting, or one side broadcast entirely), those strides.
    pub fn uniform_strides(&self) -> Option<(usize, usize)> {
        fn stride(o: &[usize]) -> Option<usize> {
            let s = match o {
                [a, b, ..] => b.checked_sub(*a)?,
                _ => 0,
            };
            o.windows(2).all(|w| w[1].checked_sub(w[0]) == Some(s)).then_some(s)
        }
        Some((stride(&self.lhs_offsets)?, stride(&self.rhs_offsets)?))
    }
}

/// A device buffer: the variant matches the device that owns it.
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// CUDA device memory.
    Cuda(CudaStorage),
}

impl Storage {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
}

/// One device's kernels. Every method takes and returns contiguous
/// row-major buffers; the shapes it gets are already validated.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The device this backend runs on.
    fn id(&self) -> DeviceId;

    /// A human-readable description, e.g. `CPU (16 threads)`.
    fn name(&self) -> String {
        self.id().to_string()
    }

    /// Copies little-endian host bytes (exactly `len * dtype.size()`) in.
    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<Storage>;

    /// Copies a buffer out as little-endian bytes.
    fn download(&self, x: &Storage) -> Result<Vec<u8>>;

    /// `op(a, b)` where `a` and `b` are read through broadcast strides for
    /// `out`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        a_strides: &[usize],
        b: &Storage,
        b_strides: &[usize],
        out: &Shape,
    ) -> Result<Storage>;

    /// `op(x)` element-wise (floats).
    fn unary(&self, op: UnaryOp, x: &Storage) -> Result<Storage>;

    /// Batched `lhs[m,k] · rhs[k,n]` (floats).
    fn matmul(&self, lhs: &Storage, rhs: &Storage, plan: &MatmulPlan) -> Result<Storage>;

    /// Softmax (or log-softmax) along the middle of `(outer, len, inner)`.
    fn softmax(&self, x: &Storage, dims: (usize, usize, usize), log: bool) -> Result<Storage>;

    /// Normalises each row of `cols` elements; `weight` and `bias` have
    /// `cols` elements and the dtype of `x`.
    fn norm(
        &self,
        op: NormOp,
        x: &Storage,
        cols: usize,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
    ) -> Result<Storage>;

    /// Reduces the middle of `(outer, len, inner)`; `len` is at least 1 for
    /// `Max` and `ArgMax`.
    fn reduce(&self, op: ReduceOp, x: &Storage, dims: (usize, usize, usize)) -> Result<Storage>;

    /// Copies `x` read at `offset` with `strides` into a new buffer of
    /// shape `out` (permute, slice, broadcast).
    fn copy_strided(&self, x: &Storage, offset: usize, strides: &[usize], out: &Shape) -> Result<Storage>;

    /// Joins `outer` blocks: block `i` of the output is block `i` of each
    /// part in turn, each part's block `block_len` elements long.
    fn concat(&self, parts: &[(&Storage, usize)], outer: usize) -> Result<Storage>;

    /// Rows of `table` (`row_len` elements each, `rows` of them) picked by
    /// integer `indices`; an index outside `0..rows` is an invalid argument.
    fn gather(&self, table: &Storage, rows: usize, row_len: usize, indices: &Storage) -> Result<Storage>;

    /// The `k` largest of each row of `len` (descending, ties by lower
    /// index) as (values, `i64` indices).
    fn top_k(&self, x: &Storage, rows: usize, len: usize, k: usize) -> Result<(Storage, Storage)>;

    /// Converts to `to` (float to int truncates and saturates, NaN is 0).
    fn cast(&self, x: &Storage, to: DType) -> Result<Storage>;

    /// Waits for queued work (device time is measured around it).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn wrong_device(id: DeviceId) -> TensorError {
    TensorError::Device(format!("buffer does not belong to {id}"))
}
