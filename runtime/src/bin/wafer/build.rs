//! `wafer build`: turn a function folder into a component.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const RUST_TARGET: &str = "wasm32-wasip2";

/// Builds the function in `dir` and returns the component's path.
pub fn run(dir: &Path) -> Result<PathBuf> {
    if dir.join("Cargo.toml").exists() {
        return build_rust(dir);
    }
    bail!(
        "{} has no Cargo.toml: `wafer build` builds Rust functions (see `wafer new rust NAME`)",
        dir.display()
    )
}

fn build_rust(dir: &Path) -> Result<PathBuf> {
    ensure_rust_target()?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", RUST_TARGET])
        .current_dir(dir)
        // The manifest names the component by its path in the project's own
        // target dir; a global CARGO_TARGET_DIR would put it elsewhere.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("cannot run cargo (is Rust installed? https://rustup.rs)")?;
    if !status.success() {
        bail!("cargo build failed in {}", dir.display());
    }
    let metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .context("cannot run cargo metadata")?;
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).context("cargo metadata output")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml"))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .or_else(|| metadata["packages"].as_array().and_then(|p| p.first()))
        .context("no package in cargo metadata")?;
    let lib_name = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["crate_types"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .context("the crate has no cdylib target: set `[lib] crate-type = [\"cdylib\"]`")?;
    let component = Path::new(target_dir)
        .join(RUST_TARGET)
        .join("release")
        .join(format!("{}.wasm", lib_name.replace('-', "_")));
    if !component.exists() {
        bail!("cargo succeeded but {} is missing", component.display());
    }
    println!("built {}", component.display());
    Ok(component)
}

/// Says how to install the target instead of letting cargo fail obscurely.
fn ensure_rust_target() -> Result<()> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let Ok(sysroot) = sysroot else {
        bail!("cannot run rustc (is Rust installed? https://rustup.rs)");
    };
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let installed = Path::new(&sysroot).join("lib/rustlib").join(RUST_TARGET).exists();
    if !installed {
        bail!("the Rust target {RUST_TARGET} is not installed; install it with:\n  rustup target add {RUST_TARGET}");
    }
    Ok(())
}
