//! What one invocation's `Store` holds: the WASI and HTTP contexts, the
//! resource table, the memory limiter and the captured logs.

use crate::guest_log::GuestOutput;
use crate::outbound::OutboundPolicy;
use std::sync::Arc;
use wafer_host_apis::llm::LlmCtx;
use wafer_host_apis::tensor::TensorCtx;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Resources (streams, pollables, request handles) one invocation may hold.
/// A guest that opens handles in a loop gets an error instead of growing the
/// host's memory; 10k is far above what an HTTP handler needs.
pub const MAX_RESOURCES: usize = 10_000;

/// The store data of one invocation.
pub struct InvocationState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    config_vars: Arc<WasiConfigVariables>,
    /// Memory and table limits, with a record of refusals.
    pub limiter: InvocationLimiter,
    /// Captured stdout and stderr.
    pub output: GuestOutput,
    /// `wafer:ai/tensor`: this invocation's tensors.
    pub tensor: TensorCtx,
    /// `wafer:ai/llm` and `wafer:ai/embeddings`: models and token usage.
    pub llm: LlmCtx,
}

impl InvocationState {
    /// Builds the state for one invocation.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per capability context, each built by the invoker"
    )]
    pub fn new(
        invocation_id: &str,
        env: &[(String, String)],
        config_vars: Arc<WasiConfigVariables>,
        outbound: OutboundPolicy,
        limiter: InvocationLimiter,
        output: GuestOutput,
        tensor: TensorCtx,
        llm: LlmCtx,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.envs(env)
            .env("WAFER_INVOCATION_ID", invocation_id)
            .stdout(output.stdout())
            .stderr(output.stderr());
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            table,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound,
            config_vars,
            limiter,
            output,
            tensor,
            llm,
        }
    }

    /// Config values for `wasi:config/store`.
    pub fn config_vars(&self) -> &WasiConfigVariables {
        &self.config_vars
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.outbound,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Caps linear memory (all of an instance's memories together) and tables,
/// records the peak for billing, and remembers whether a growth was refused
/// so that a guest that then aborts is reported as out of memory, not as a
/// generic trap.
#[derive(Debug)]
pub struct InvocationLimiter {
    memory_limit: usize,
    committed: usize,
    /// The most linear memory held at once, bytes.
    pub peak_memory: usize,
    /// Set when a memory growth past the limit was refused.
    pub memory_refused: bool,
}

/// Elements per table; matches the pooling allocator's slot size.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl InvocationLimiter {
    /// A limiter allowing `memory_limit` bytes of linear memory in total.
    pub fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            committed: 0,
            peak_memory: 0,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for InvocationLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.committed.saturating_sub(current).saturating_add(desired);
        if total > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.committed = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
