//! The `wafer:ai` WIT contract and the host side of every import.
//!
//! `wit/` holds the package every Wafer function targets (world `function`:
//! the standard `wasi:http/proxy` world plus the platform's imports). It is
//! the single source of truth for the host and both guest SDKs.
//!
//! [`tensor`] is the compute behind `wafer:ai/tensor`: CPU and CUDA
//! backends, the ops, per-invocation sessions with limits and usage, the
//! device pool, and the host side of the interface ([`tensor::TensorCtx`],
//! [`tensor::add_to_linker`]).

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod bindings;
pub mod llm;
pub mod model;
pub mod tensor;

/// The world functions target.
pub const FUNCTION_WORLD: &str = "wafer:ai/function";

/// The folder holding the `wafer:ai` package and its dependencies.
pub fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wit")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wit_package_resolves() {
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve
            .push_dir(super::wit_dir())
            .unwrap_or_else(|e| panic!("wit does not parse: {e:#}"));
        let world = resolve
            .select_world(&[package], Some("function"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let exports: Vec<String> = resolve.worlds[world]
            .exports
            .keys()
            .map(|key| resolve.name_world_key(key))
            .collect();
        assert!(
            exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler")),
            "{exports:?}"
        );
    }
}
