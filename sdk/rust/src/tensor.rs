//! Tensors on the platform's devices (`wafer:ai/tensor`).
//!
//! A [`Tensor`] is a handle to data that lives on the host, on the device
//! (CPU or GPU) the invocation was placed on. Operations take handles and
//! return new tensors, so data crosses the wasm boundary only when you create
//! a tensor ([`Tensor::from_f32`], ...) and when you read one back
//! ([`Tensor::to_f32`], ...). A tensor is freed when it is dropped, and every
//! tensor of an invocation when the invocation ends.
//!
//! ```no_run
//! use wafer_sdk::tensor::{Tensor, TensorError};
//!
//! fn dense(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor, TensorError> {
//!     (&x.matmul(w)? + b)?.relu()
//! }
//!
//! let x = Tensor::from_f32(&[1, 2], &[1.0, -2.0])?;
//! let w = Tensor::from_f32(&[2, 2], &[1.0, 0.0, 0.0, 1.0])?;
//! let b = Tensor::from_f32(&[2], &[0.5, 0.5])?;
//! let y = dense(&x, &w, &b)?;
//! assert_eq!(y.shape(), [1, 2]);
//! assert_eq!(y.to_f32()?, [1.5, 0.0]);
//! # Ok::<(), TensorError>(())
//! ```
//!
//! Semantics are the same on every device: shapes broadcast like NumPy, axes
//! may be negative (counted from the end), `gelu` is the tanh approximation,
//! integer add/sub/mul wrap and integer `x / 0` is 0, float-to-integer casts
//! truncate and saturate.
//!
//! Operators work on references and return `Result`s, so they chain with `?`:
//! `(&a + &b)?`, `(&a * 2.0)?`, `(-&a)?`. `*` is element-wise; use
//! [`Tensor::matmul`] for the matrix product.
//!
//! # Limits
//!
//! The host limits the rank, element count, live tensors and memory of each
//! invocation and tenant; going over fails with [`TensorError::OverQuota`],
//! whose message names the limit.
//!
//! # Outside Wafer
//!
//! The tensors live on the host, so they exist only inside a function running
//! on Wafer. In a native build (unit tests) every constructor fails with
//! [`TensorError::Unavailable`]; test the code around your model there, or
//! compute a reference in plain Rust.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Range, Sub};

use crate::bindings::wafer::ai::tensor as wit;

/// Element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float (IEEE half).
    F16,
    /// 16-bit brain float.
    BF16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer (indices).
    I64,
    /// 8-bit unsigned integer.
    U8,
}

impl DType {
    /// The size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::I64 => 8,
            Self::U8 => 1,
        }
    }

    /// The lower-case name (`"f32"`, `"bf16"`, ...), as [`DType::from_name`]
    /// reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::U8 => "u8",
        }
    }

    /// The dtype with this [name](DType::name), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::F32, Self::F16, Self::BF16, Self::I32, Self::I64, Self::U8]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<DType> for wit::Dtype {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => Self::F32,
            DType::F16 => Self::F16,
            DType::BF16 => Self::Bf16,
            DType::I32 => Self::I32,
            DType::I64 => Self::I64,
            DType::U8 => Self::U8,
        }
    }
}

impl From<wit::Dtype> for DType {
    fn from(d: wit::Dtype) -> Self {
        match d {
            wit::Dtype::F32 => Self::F32,
            wit::Dtype::F16 => Self::F16,
            wit::Dtype::Bf16 => Self::BF16,
            wit::Dtype::I32 => Self::I32,
            wit::Dtype::I64 => Self::I64,
            wit::Dtype::U8 => Self::U8,
        }
    }
}

/// A tensor operation that failed because of its arguments or a limit.
///
/// The first five variants mirror the host's `error`; each carries the host's
/// message, which says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    /// Shapes that do not fit together; the message names both.
    ShapeMismatch(String),
    /// The operation does not take this dtype.
    UnsupportedDtype(String),
    /// The device has no memory left.
    OutOfMemory(String),
    /// Over a limit of this invocation or tenant (rank, elements, live
    /// tensors, memory); the message names the limit.
    OverQuota(String),
    /// Anything else wrong with the arguments (axis out of range, data of the
    /// wrong length, `k` larger than the axis, ...).
    InvalidArgument(String),
    /// There is no tensor host: the code is not running as a Wafer function
    /// (for example in a native unit test).
    Unavailable(String),
}

impl TensorError {
    /// The message, without the kind prefix that [`Display`](fmt::Display)
    /// adds.
    pub fn message(&self) -> &str {
        match self {
            Self::ShapeMismatch(m)
            | Self::UnsupportedDtype(m)
            | Self::OutOfMemory(m)
            | Self::OverQuota(m)
            | Self::InvalidArgument(m)
            | Self::Unavailable(m) => m,
        }
    }
}

impl fmt::Display for TensorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::ShapeMismatch(_) => "shape mismatch",
            Self::UnsupportedDtype(_) => "unsupported dtype",
            Self::OutOfMemory(_) => "out of memory",
            Self::OverQuota(_) => "over quota",
            Self::InvalidArgument(_) => "invalid argument",
            Self::Unavailable(_) => "tensors unavailable",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for TensorError {}

impl From<wit::Error> for TensorError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::ShapeMismatch(m) => Self::ShapeMismatch(m),
            wit::Error::UnsupportedDtype(m) => Self::UnsupportedDtype(m),
            wit::Error::OutOfMemory(m) => Self::OutOfMemory(m),
            wit::Error::OverQuota(m) => Self::OverQuota(m),
            wit::Error::InvalidArgument(m) => Self::InvalidArgument(m),
        }
    }
}

/// A tensor on the invocation's device; see the [module docs](self).
///
/// Cloning is not offered because it would copy on the device; reshape to
/// the same shape (which shares storage) where a second handle is needed.
pub struct Tensor {
    inner: wit::Tensor,
}

type Result<T, E = TensorError> = std::result::Result<T, E>;

/// Wraps a host result.
fn wrap(r: Result<wit::Tensor, wit::Error>) -> Result<Tensor> {
    r.map(|inner| Tensor { inner }).map_err(TensorError::from)
}

/// A shape or list of axes as the host takes it.
fn dims(values: &[usize], what: &str) -> Result<Vec<u32>> {
    values
        .iter()
        .map(|&v| {
            u32::try_from(v).map_err(|_| TensorError::InvalidArgument(format!("{what} value {v} is over 2^32-1")))
        })
        .collect()
}

/// Constructors fail early when there is no host, so that no other method can
/// reach the (absent) imports.
fn ensure_host() -> Result<()> {
    if cfg!(target_arch = "wasm32") {
        Ok(())
    } else {
        Err(TensorError::Unavailable(
            "tensors live on the Wafer host; build for wasm32-wasip2 and run the function on Wafer".into(),
        ))
    }
}

impl Tensor {
    /// An `f32` tensor of this shape from row-major `data`.
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if `data.len()` is not the product of
    /// `shape`, [`TensorError::OverQuota`] if a limit is exceeded.
    pub fn from_f32(shape: &[usize], data: &[f32]) -> Result<Self> {
        ensure_host()?;
        wrap(wit::Tensor::from_f32(&dims(shape, "shape")?, data))
    }

    /// An `i64` tensor (indices for [`Tensor::gather`]).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::from_f32`].
    pub fn from_i64(shape: &[usize], data: &[i64]) -> Result<Self> {
        ensure_host()?;
        wrap(wit::Tensor::from_i64(&dims(shape, "shape")?, data))
    }

    /// A tensor of any dtype from raw little-endian bytes, row-major.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::from_f32`]; the byte length must be the element count
    /// times [`DType::size_in_bytes`].
    pub fn from_bytes(shape: &[usize], dtype: DType, data: &[u8]) -> Result<Self> {
        ensure_host()?;
        wrap(wit::Tensor::from_bytes(&dims(shape, "shape")?, dtype.into(), data))
    }

    /// A 0-dimensional tensor holding `value` converted to `dtype`; it
    /// broadcasts against any shape.
    ///
    /// # Errors
    ///
    /// [`TensorError::OverQuota`] if a limit is exceeded.
    pub fn scalar(dtype: DType, value: f64) -> Result<Self> {
        ensure_host()?;
        wrap(wit::Tensor::scalar(dtype.into(), value))
    }

    /// A tensor of zeros. The zeros are sent from the guest, so this costs as
    /// much as [`Tensor::from_bytes`].
    ///
    /// # Errors
    ///
    /// As for [`Tensor::from_bytes`].
    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Self> {
        let len = shape
            .iter()
            .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| TensorError::InvalidArgument(format!("shape {shape:?} is too large")))?;
        Self::from_bytes(shape, dtype, &vec![0; len])
    }

    /// The shape (empty for a scalar).
    pub fn shape(&self) -> Vec<usize> {
        self.inner.shape().into_iter().map(|d| d as usize).collect()
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.inner.shape().len()
    }

    /// The number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape().iter().product()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype().into()
    }

    /// The device it lives on, e.g. `cpu:0` or `cuda:1`.
    pub fn device(&self) -> String {
        self.inner.device()
    }

    /// The data converted to `f32`, row-major.
    ///
    /// # Errors
    ///
    /// [`TensorError::OverQuota`] if the result is larger than the host will
    /// send.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.inner.to_f32().map_err(TensorError::from)
    }

    /// The data as raw little-endian bytes of [`Tensor::dtype`], row-major.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::to_f32`].
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.inner.to_bytes().map_err(TensorError::from)
    }

    /// The data converted to `i64` (casting on the device first unless the
    /// tensor already is `i64`), e.g. the indices from [`Tensor::argmax`].
    ///
    /// # Errors
    ///
    /// As for [`Tensor::to_f32`] and [`Tensor::cast`].
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let bytes = if self.dtype() == DType::I64 {
            self.to_bytes()?
        } else {
            self.cast(DType::I64)?.to_bytes()?
        };
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0; 8];
                b.copy_from_slice(c);
                i64::from_le_bytes(b)
            })
            .collect())
    }

    /// Matrix product over the last two axes, broadcasting the batch axes.
    ///
    /// # Errors
    ///
    /// [`TensorError::ShapeMismatch`] if the inner dimensions differ.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        wrap(wit::matmul(&self.inner, &rhs.inner))
    }

    fn binary(&self, op: wit::BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        wrap(wit::binary(op, &self.inner, &rhs.inner))
    }

    fn binary_scalar(&self, op: wit::BinaryOp, value: f64) -> Result<Tensor> {
        wrap(wit::binary_scalar(op, &self.inner, value))
    }

    fn unary(&self, op: wit::UnaryOp) -> Result<Tensor> {
        wrap(wit::unary(op, &self.inner))
    }

    fn reduce(&self, op: wit::ReduceOp, axis: i32, keep_dims: bool) -> Result<Tensor> {
        wrap(wit::reduce(op, &self.inner, axis, keep_dims))
    }

    /// `self + rhs`, element-wise with broadcasting (also `&a + &b`).
    ///
    /// # Errors
    ///
    /// [`TensorError::ShapeMismatch`] if the shapes do not broadcast.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(wit::BinaryOp::Add, rhs)
    }

    /// `self - rhs`, element-wise with broadcasting (also `&a - &b`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add`].
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(wit::BinaryOp::Sub, rhs)
    }

    /// `self * rhs`, element-wise with broadcasting (also `&a * &b`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add`].
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(wit::BinaryOp::Mul, rhs)
    }

    /// `self / rhs`, element-wise with broadcasting (also `&a / &b`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add`].
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(wit::BinaryOp::Div, rhs)
    }

    /// `self + value` for every element (also `&a + 1.0`).
    ///
    /// # Errors
    ///
    /// [`TensorError::OverQuota`] if a limit is exceeded.
    pub fn add_scalar(&self, value: f64) -> Result<Tensor> {
        self.binary_scalar(wit::BinaryOp::Add, value)
    }

    /// `self - value` for every element (also `&a - 1.0`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add_scalar`].
    pub fn sub_scalar(&self, value: f64) -> Result<Tensor> {
        self.binary_scalar(wit::BinaryOp::Sub, value)
    }

    /// `self * value` for every element (also `&a * 2.0`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add_scalar`].
    pub fn mul_scalar(&self, value: f64) -> Result<Tensor> {
        self.binary_scalar(wit::BinaryOp::Mul, value)
    }

    /// `self / value` for every element (also `&a / 2.0`).
    ///
    /// # Errors
    ///
    /// As for [`Tensor::add_scalar`].
    pub fn div_scalar(&self, value: f64) -> Result<Tensor> {
        self.binary_scalar(wit::BinaryOp::Div, value)
    }

    /// `max(x, 0)`, element-wise.
    ///
    /// # Errors
    ///
    /// [`TensorError::UnsupportedDtype`] for integer tensors.
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Relu)
    }

    /// GELU (tanh approximation), element-wise.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::relu`].
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Gelu)
    }

    /// SiLU (`x * sigmoid(x)`), element-wise.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::relu`].
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Silu)
    }

    /// `1 / (1 + e^-x)`, element-wise.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::relu`].
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Sigmoid)
    }

    /// `tanh(x)`, element-wise.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::relu`].
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Tanh)
    }

    /// `e^x`, element-wise.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::relu`].
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(wit::UnaryOp::Exp)
    }

    /// Softmax along `axis` (negative counts from the end).
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if `axis` is out of range.
    pub fn softmax(&self, axis: i32) -> Result<Tensor> {
        wrap(wit::softmax(&self.inner, axis))
    }

    /// Log-softmax along `axis`.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::softmax`].
    pub fn log_softmax(&self, axis: i32) -> Result<Tensor> {
        wrap(wit::log_softmax(&self.inner, axis))
    }

    /// Layer normalisation over the last axis, then `* weight + bias` where
    /// given.
    ///
    /// # Errors
    ///
    /// [`TensorError::ShapeMismatch`] if `weight` or `bias` does not match the
    /// last axis.
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        wrap(wit::layer_norm(
            &self.inner,
            weight.map(|t| &t.inner),
            bias.map(|t| &t.inner),
            eps,
        ))
    }

    /// RMS normalisation over the last axis, then `* weight` where given.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::layer_norm`].
    pub fn rms_norm(&self, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
        wrap(wit::rms_norm(&self.inner, weight.map(|t| &t.inner), eps))
    }

    /// The same data with another shape of the same element count (shares
    /// storage, copies nothing).
    ///
    /// # Errors
    ///
    /// [`TensorError::ShapeMismatch`] if the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        wrap(wit::reshape(&self.inner, &dims(shape, "shape")?))
    }

    /// Axes reordered: axis `i` of the result is axis `perm[i]` of `self`.
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if `perm` is not a permutation of the
    /// axes.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        wrap(wit::permute(&self.inner, &dims(perm, "axis")?))
    }

    /// Axes `a` and `b` swapped.
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if an axis is out of range.
    pub fn transpose(&self, a: i32, b: i32) -> Result<Tensor> {
        wrap(wit::transpose(&self.inner, a, b))
    }

    /// Elements `range` along `axis` (`x.slice(0, 1..3)`).
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if the axis or the range is out of
    /// bounds.
    pub fn slice(&self, axis: i32, range: Range<usize>) -> Result<Tensor> {
        let [start, end] = <[u32; 2]>::try_from(dims(&[range.start, range.end], "slice bound")?)
            .map_err(|_| TensorError::InvalidArgument("slice range".into()))?;
        wrap(wit::slice(&self.inner, axis, start, end))
    }

    /// `xs` joined along `axis`; all other axes must agree.
    ///
    /// # Errors
    ///
    /// [`TensorError::ShapeMismatch`] if the other axes differ,
    /// [`TensorError::InvalidArgument`] if `xs` is empty or `axis` is out of
    /// range.
    pub fn concat(xs: &[&Tensor], axis: i32) -> Result<Tensor> {
        let handles: Vec<&wit::Tensor> = xs.iter().map(|t| &t.inner).collect();
        wrap(wit::concat(&handles, axis))
    }

    /// Rows of `self` picked by integer `indices` (embedding lookup): the
    /// result's shape is `indices.shape ++ self.shape[1..]`.
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if an index is out of range,
    /// [`TensorError::UnsupportedDtype`] if `indices` is not an integer tensor.
    pub fn gather(&self, indices: &Tensor) -> Result<Tensor> {
        wrap(wit::gather(&self.inner, &indices.inner))
    }

    /// The sum along `axis`; `keep_dims` keeps it as an axis of length 1.
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if `axis` is out of range.
    pub fn sum(&self, axis: i32, keep_dims: bool) -> Result<Tensor> {
        self.reduce(wit::ReduceOp::Sum, axis, keep_dims)
    }

    /// The mean along `axis`.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::sum`].
    pub fn mean(&self, axis: i32, keep_dims: bool) -> Result<Tensor> {
        self.reduce(wit::ReduceOp::Mean, axis, keep_dims)
    }

    /// The maximum along `axis`.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::sum`].
    pub fn max(&self, axis: i32, keep_dims: bool) -> Result<Tensor> {
        self.reduce(wit::ReduceOp::Max, axis, keep_dims)
    }

    /// The `i64` index of the maximum along `axis`.
    ///
    /// # Errors
    ///
    /// As for [`Tensor::sum`].
    pub fn argmax(&self, axis: i32, keep_dims: bool) -> Result<Tensor> {
        self.reduce(wit::ReduceOp::Argmax, axis, keep_dims)
    }

    /// The `k` largest values along the last axis, descending, and their
    /// `i64` indices (ties go to the lower index).
    ///
    /// # Errors
    ///
    /// [`TensorError::InvalidArgument`] if `k` is larger than the last axis.
    pub fn top_k(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let k = u32::try_from(k).map_err(|_| TensorError::InvalidArgument(format!("k = {k} is over 2^32-1")))?;
        let (values, indices) = wit::top_k(&self.inner, k)?;
        Ok((Tensor { inner: values }, Tensor { inner: indices }))
    }

    /// The elements converted to `dtype`.
    ///
    /// # Errors
    ///
    /// [`TensorError::UnsupportedDtype`] if the host cannot convert.
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        wrap(wit::cast(&self.inner, dtype.into()))
    }
}

/// Sizes, never contents.
impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape())
            .field("dtype", &self.dtype())
            .field("device", &self.device())
            .finish()
    }
}

macro_rules! binary_operators {
    ($($trait:ident $method:ident $scalar:ident;)*) => {$(
        impl $trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;

            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(self, rhs)
            }
        }

        impl $trait<f64> for &Tensor {
            type Output = Result<Tensor>;

            fn $method(self, rhs: f64) -> Result<Tensor> {
                self.$scalar(rhs)
            }
        }
    )*};
}

binary_operators! {
    Add add add_scalar;
    Sub sub sub_scalar;
    Mul mul mul_scalar;
    Div div div_scalar;
}

impl Neg for &Tensor {
    type Output = Result<Tensor>;

    fn neg(self) -> Result<Tensor> {
        self.mul_scalar(-1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_say_why_they_fail_natively() {
        let err = Tensor::from_f32(&[1], &[1.0]).err();
        assert!(matches!(err, Some(TensorError::Unavailable(_))), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("wasm32-wasip2"), "{text}");
        assert!(matches!(
            Tensor::zeros(&[2, 3], DType::F32),
            Err(TensorError::Unavailable(_))
        ));
        assert!(matches!(
            Tensor::zeros(&[usize::MAX, 2], DType::F32),
            Err(TensorError::InvalidArgument(_))
        ));
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in [DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8] {
            assert_eq!(DType::from_name(d.name()), Some(d));
            assert_eq!(DType::from(wit::Dtype::from(d)), d);
        }
        assert_eq!(DType::from_name("f64"), None);
    }

    #[test]
    fn errors_display_kind_and_message() {
        let e = TensorError::from(wit::Error::ShapeMismatch("[2, 3] @ [4, 5]".into()));
        assert_eq!(e.to_string(), "shape mismatch: [2, 3] @ [4, 5]");
        assert_eq!(e.message(), "[2, 3] @ [4, 5]");
    }

    #[test]
    fn oversized_dimensions_are_rejected_before_the_host() {
        assert!(matches!(
            dims(&[1, 1 << 40], "shape"),
            Err(TensorError::InvalidArgument(_))
        ));
        assert_eq!(dims(&[2, 3], "shape").ok(), Some(vec![2, 3]));
    }
}
