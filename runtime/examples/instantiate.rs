//! Instantiation time per request, measured alone: a fresh store and
//! instance of the hello component from its `ProxyPre`, as the invoker does.
//!
//! Run with: cargo run --release -p wafer-runtime --example instantiate [-- PATH.wasm]

use std::sync::Arc;
use std::time::Instant;
use wafer_host_apis::tensor::{DevicePool, TensorCtx};
use wafer_runtime::config::NodeConfig;
use wafer_runtime::engine::WaferEngine;
use wafer_runtime::guest_log::GuestOutput;
use wafer_runtime::instance::{InvocationLimiter, InvocationState};
use wafer_runtime::outbound::OutboundPolicy;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

#[tokio::main(flavor = "current_thread")]
async fn main() -> wasmtime::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/target/wasm32-wasip2/release/hello.wasm".into());
    let engine = WaferEngine::new(&NodeConfig::default())?;
    let component = Component::from_file(engine.engine(), &path)?;
    let pre = ProxyPre::new(engine.linker().instantiate_pre(&component)?)?;
    let vars = Arc::new(wasmtime_wasi_config::WasiConfigVariables::new());
    let devices = DevicePool::new(&NodeConfig::default().devices)?;
    for round in 0..3 {
        let n = 20_000;
        let mut instantiate_ns = 0u128;
        let started = Instant::now();
        for _ in 0..n {
            let state = InvocationState::new(
                "bench",
                &[],
                vars.clone(),
                OutboundPolicy::default(),
                InvocationLimiter::new(128 << 20),
                GuestOutput::new(64 << 10),
                TensorCtx::new(devices.clone(), "bench"),
                wafer_host_apis::llm::LlmCtx::new(
                    wafer_host_apis::model::Models::empty(),
                    Vec::new(),
                    "bench",
                    Instant::now() + std::time::Duration::from_secs(60),
                ),
            );
            let mut store = Store::new(engine.engine(), state);
            store.limiter(|s| &mut s.limiter);
            store.set_epoch_deadline(u64::MAX / 2);
            let t = Instant::now();
            let _proxy = pre.instantiate_async(&mut store).await?;
            instantiate_ns += t.elapsed().as_nanos();
        }
        let total = started.elapsed();
        println!(
            "round {round}: instantiate {:.2} µs mean; store + context + instantiate + drop {:.2} µs",
            instantiate_ns as f64 / n as f64 / 1000.0,
            total.as_nanos() as f64 / n as f64 / 1000.0
        );
    }
    Ok(())
}
