//! Raw bindings to the `wafer:ai` imports, generated from `wit/` (world
//! `imports`), in one place so every capability shares the generated types.
//!
//! Every import is `trappable`: host functions return
//! `wasmtime::Result<..>`, whose `Err` traps the guest (a host bug, a bad
//! handle), while the WIT `result<_, error>` inside carries the guest's
//! mistakes. `tensor` imports are synchronous (an op does not wait on
//! anything) and traced; `llm` and `embeddings` are async, because they
//! wait for the model's scheduler, and not traced, because their arguments
//! are prompts.

#[expect(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "wafer:ai/imports",
        imports: {
            "wafer:ai/llm": async | trappable,
            "wafer:ai/embeddings": async | trappable,
            default: trappable | tracing,
        },
        with: {
            "wafer:ai/tensor.tensor": crate::tensor::TensorHandle,
            "wafer:ai/llm.generation": crate::llm::GenerationHandle,
        },
    });
}

pub use self::generated::wafer::ai::{embeddings, llm, tensor};
