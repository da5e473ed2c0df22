//! The one error type of the tensor API.
//!
//! Every variant but `Device` is a caller's mistake or a resource limit, and
//! maps onto the variant of the WIT `error` of the same name; a `Device`
//! fault is the host's problem, so at the WIT boundary it traps the guest
//! (and is logged) instead.

use super::dtype::DType;

/// Why a tensor operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// Operand shapes do not fit the operation.
    #[error("shape mismatch in {op}: {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// The first operand's shape.
        lhs: Vec<usize>,
        /// The second operand's shape.
        rhs: Vec<usize>,
    },
    /// The operation is not defined for this dtype.
    #[error("{op} does not support dtype {dtype}")]
    UnsupportedDtype {
        /// The operation.
        op: &'static str,
        /// The offending dtype.
        dtype: DType,
    },
    /// The device has no memory left for the result.
    #[error("out of memory on {device}: {requested} bytes requested, {available} available")]
    OutOfMemory {
        /// The device, e.g. `cpu:0` or `cuda:1`.
        device: String,
        /// Bytes the operation needed.
        requested: u64,
        /// Bytes that were still free.
        available: u64,
    },
    /// A configured quota (per invocation or per tenant) would be exceeded.
    #[error("over quota: {what} limit is {limit}, {requested} requested with {used} in use")]
    OverQuota {
        /// Which limit, e.g. `tensor memory per invocation`.
        what: &'static str,
        /// The configured limit.
        limit: u64,
        /// Already in use.
        used: u64,
        /// Requested now.
        requested: u64,
    },
    /// An argument is out of range or malformed (axis, index, byte length,
    /// handle, an element count that overflows).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The device failed (a CUDA error, a missing library). Not the caller's
    /// fault: an error rather than a panic so one bad GPU does not take the
    /// host down; the WIT host traps the one guest that hit it.
    #[error("device error: {0}")]
    Device(String),
}

impl TensorError {
    /// Shorthand for [`TensorError::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        TensorError::InvalidArgument(msg.into())
    }

    pub(crate) fn shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Self {
        TensorError::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
        }
    }

    pub(crate) fn dtype(op: &'static str, dtype: DType) -> Self {
        TensorError::UnsupportedDtype { op, dtype }
    }
}

/// Result alias for the tensor API.
pub type Result<T, E = TensorError> = std::result::Result<T, E>;
