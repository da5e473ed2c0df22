//! Raw bindings to `wafer:ai/tensor`, generated from `wit/` (world
//! `imports`).
//!
//! Imports are synchronous and `trappable`: every host function returns
//! `wasmtime::Result<..>`, whose `Err` traps the guest (a host bug, a
//! device fault), while the WIT `result<_, error>` inside carries the
//! guest's mistakes. Synchronous host functions also run in stores that use
//! async instantiation and `call_async`; tensor ops do not await anything.
//! The `tensor` resource is the host type [`TensorHandle`].

#[expect(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wafer:ai/imports",
        // `tracing` logs entry and exit at trace level; arguments and
        // results that hold lists (tensor data) are left out.
        imports: { default: trappable | tracing },
        with: {
            "wafer:ai/tensor.tensor": crate::tensor::host::TensorHandle,
        },
    });
}

pub use self::generated::wafer::ai::tensor::{BinaryOp, Dtype, Error, Host, HostTensor, ReduceOp, Tensor, UnaryOp};

pub(super) use self::generated::wafer::ai::tensor::add_to_linker;

pub use super::host::TensorHandle;
