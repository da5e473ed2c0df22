//! The wasmtime engine every function runs on: component model, async,
//! pooling allocator with copy-on-write memory images, epoch interruption.

use crate::capabilities;
use crate::config::NodeConfig;
use crate::instance::InvocationState;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A computing guest is checked against its
/// deadline (and yields to other tasks) this often: 10 ms keeps a runaway
/// loop's overshoot small while costing nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances, memories and tables a single component may hold. A Rust
/// component has one of each; componentize-js components have a handful.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
const MAX_TABLES_PER_COMPONENT: u32 = 16;
/// Resident bytes kept per warm memory slot and fiber stack: bounded RSS
/// (`max_instances` × this, for dirty pages only) bought for fewer page faults.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
const KEEP_RESIDENT_STACK: usize = 128 * 1024;
/// Table elements per table; JS components need tens of thousands.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The engine and the linker that holds every capability the platform gives
/// to guests.
#[derive(Clone)]
pub struct WaferEngine {
    engine: Engine,
    linker: Linker<InvocationState>,
    fingerprint: String,
}

impl WaferEngine {
    /// Builds the engine for a node and starts its epoch ticker.
    pub fn new(config: &NodeConfig) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let slots = config.node.max_instances;
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(4))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_memories_per_module(MAX_MEMORIES_PER_COMPONENT)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(config.limits.max_memory.as_usize())
            // On slot reuse, reset the dirty pages of the first MiB of memory
            // (a Rust guest's stack and first heap pages) in place instead of
            // unmapping them: the next request then takes no page faults
            // there. PAGEMAP_SCAN (Linux 6.7+) finds exactly the dirty pages;
            // without it wasmtime falls back to memset + madvise.
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK)
            .pagemap_scan(Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)?;
        let fingerprint = fingerprint(&engine);
        spawn_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            fingerprint,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every platform capability.
    pub fn linker(&self) -> &Linker<InvocationState> {
        &self.linker
    }

    /// Identifies compiled code this engine can load: wasmtime's version,
    /// compiler settings and target. Part of the compiled cache's key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn fingerprint(engine: &Engine) -> String {
    /// Feeds `Hash` output into SHA-256, which, unlike `DefaultHasher`, is
    /// stable across Rust releases.
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..12])
}

/// Advances the epoch every tick on a plain thread (it must keep running even
/// when every tokio worker is busy inside a guest). Stops with the engine.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("wafer-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(error) = spawned {
        // Without the ticker, deadlines still hold through the outer timeout,
        // but a computing guest would not be interrupted: say so loudly.
        tracing::error!(%error, "cannot start the epoch thread; computing guests will not be interrupted");
    }
}
