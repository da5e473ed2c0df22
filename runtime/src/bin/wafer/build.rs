//! `wafer build`: turn a function folder into a component.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const RUST_TARGET: &str = "wasm32-wasip2";

/// The oldest Node.js the JS build runs on (`import.meta.resolve`).
const NODE_MIN: (u32, u32) = (20, 6);

/// How to get Node.js, for errors.
const NODE_HELP: &str = "install Node.js 20.6 or newer with npm (https://nodejs.org/en/download, \
     or `apt-get install nodejs npm` where the distribution's is new enough)";

/// Builds the function in `dir` and returns the component's path: a Rust
/// crate (`Cargo.toml`) or a JavaScript/TypeScript package (`package.json`).
pub fn run(dir: &Path) -> Result<PathBuf> {
    if dir.join("Cargo.toml").exists() {
        return build_rust(dir);
    }
    if dir.join("package.json").exists() {
        return build_js(dir);
    }
    bail!(
        "{} has neither a Cargo.toml nor a package.json: `wafer build` builds Rust and JavaScript functions \
         (see `wafer new rust NAME` and `wafer new js NAME`)",
        dir.display()
    )
}

/// `npm install` if needed, then the SDK's build (esbuild + componentize-js).
fn build_js(dir: &Path) -> Result<PathBuf> {
    ensure_node()?;
    if !dir.join("node_modules").exists() {
        npm(dir, &["install", "--no-audit", "--no-fund"])?;
    }
    let linked = dir.join("node_modules/@wafer/sdk");
    let sdk = std::fs::canonicalize(&linked).with_context(|| {
        format!(
            "{} does not depend on @wafer/sdk (no {}): add it to package.json and run `npm install`",
            dir.display(),
            linked.display()
        )
    })?;
    // A `file:` dependency is a symlink, and npm does not install the linked
    // package's own dependencies: do it once in the SDK's folder.
    let inside = std::fs::canonicalize(dir.join("node_modules")).is_ok_and(|modules| sdk.starts_with(modules));
    if !inside && !sdk.join("node_modules/@bytecodealliance/componentize-js").exists() {
        npm(&sdk, &["install", "--no-audit", "--no-fund"])?;
    }
    let output = Command::new("node")
        .arg(sdk.join("bin/wafer-build.mjs"))
        .arg(dir)
        .arg("--json")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run node")?;
    if !output.status.success() {
        bail!("the JavaScript build failed in {}", dir.display());
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "wafer-build printed something unexpected: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let component = PathBuf::from(result["component"].as_str().context("wafer-build named no component")?);
    let size = result["bytes"].as_u64().unwrap_or_default() as f64 / 1e6;
    let cached = if result["cached"].as_bool() == Some(true) {
        ", unchanged"
    } else {
        ""
    };
    println!("built {} ({size:.1} MB{cached})", component.display());
    Ok(component)
}

fn npm(dir: &Path, args: &[&str]) -> Result<()> {
    println!("npm {} in {}", args.join(" "), dir.display());
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run npm: {NODE_HELP}"))?;
    if !status.success() {
        bail!("`npm {}` failed in {}", args.join(" "), dir.display());
    }
    Ok(())
}

/// Says how to install Node.js instead of failing obscurely.
fn ensure_node() -> Result<()> {
    let Ok(output) = Command::new("node").arg("--version").output() else {
        bail!("`wafer build` needs Node.js to build a JavaScript function, and `node` is not on the PATH: {NODE_HELP}");
    };
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < NODE_MIN {
        bail!("Node.js {version} is too old to build JavaScript functions: {NODE_HELP}");
    }
    Ok(())
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
