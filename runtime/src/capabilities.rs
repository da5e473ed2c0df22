//! The one place that says what a Wafer function can import.
//!
//! Every capability is added to the linker here, and the same list explains a
//! failed deploy: a component whose imports are not all in this list is
//! refused with the names of the missing ones.

use crate::instance::InvocationState;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_config::WasiConfig;

/// Interfaces the node provides, as `namespace:package/interface` prefixes,
/// with the `major.minor` version line they are provided at.
const PROVIDED: &[(&str, &str)] = &[
    ("wasi:io/", "0.2"),
    ("wasi:clocks/", "0.2"),
    ("wasi:random/", "0.2"),
    ("wasi:cli/", "0.2"),
    ("wasi:filesystem/", "0.2"),
    ("wasi:sockets/", "0.2"),
    ("wasi:http/types", "0.2"),
    ("wasi:http/outgoing-handler", "0.2"),
    ("wasi:config/store", "0.2"),
    ("wafer:ai/tensor", "0.1"),
    ("wafer:ai/llm", "0.1"),
    ("wafer:ai/embeddings", "0.1"),
];

/// Adds every capability to `linker`.
pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    // All of WASI 0.2 (not only the proxy world) so that components built by
    // `cargo build --target wasm32-wasip2`, which import `wasi:cli` and
    // `wasi:filesystem` through std, run unchanged. The sandbox comes from the
    // context: no preopened directories, no sockets, no inherited env.
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    wasmtime_wasi_config::add_to_linker(linker, |state: &mut InvocationState| {
        WasiConfig::new(state.config_vars())
    })?;
    wafer_host_apis::tensor::add_to_linker(linker, |state: &mut InvocationState| &mut state.tensor)?;
    wafer_host_apis::llm::add_to_linker(linker, |state: &mut InvocationState| &mut state.llm)?;
    Ok(())
}

/// The imports of `component` that the node does not provide, by name.
pub fn missing_imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !is_provided(name))
        .map(str::to_owned)
        .collect()
}

fn is_provided(import: &str) -> bool {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    PROVIDED.iter().any(|(prefix, line)| {
        let path_ok = if prefix.ends_with('/') {
            path.starts_with(prefix)
        } else {
            path == *prefix
        };
        let version_ok = version == *line || version.starts_with(&format!("{line}."));
        path_ok && version_ok
    })
}

#[cfg(test)]
mod tests {
    use super::is_provided;

    #[test]
    fn wasi_02_is_provided_and_others_are_not() {
        assert!(is_provided("wasi:http/types@0.2.12"));
        assert!(is_provided("wasi:io/streams@0.2.0"));
        assert!(is_provided("wasi:config/store@0.2.0-rc.1"));
        assert!(!is_provided("wasi:http/types@0.3.0"));
        assert!(!is_provided("wasi:keyvalue/store@0.2.0"));
        assert!(!is_provided("acme:missing/greeter"));
        assert!(!is_provided("wasi:http/typesx@0.2.0"));
    }
}
