//! The generated `wafer:ai/tensor` bindings (see [`crate::bindings`]).
//! The `tensor` resource is the host type [`TensorHandle`].

pub use crate::bindings::tensor::{BinaryOp, Dtype, Error, Host, HostTensor, ReduceOp, Tensor, UnaryOp};

pub(super) use crate::bindings::tensor::add_to_linker;

pub use super::host::TensorHandle;
