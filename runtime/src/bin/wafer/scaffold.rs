//! `wafer new`: a function project that builds and deploys as it is.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Languages `wafer new` knows.
#[derive(clap::Subcommand)]
pub enum Language {
    /// A Rust function using the `wafer-sdk` crate.
    Rust {
        /// Function name (also the folder name).
        name: String,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of the `wafer-sdk` crate [default: the SDK next to this wafer's sources].
        #[arg(long, env = "WAFER_SDK_PATH")]
        sdk_path: Option<PathBuf>,
    },
}

pub fn run(language: Language) -> Result<()> {
    match language {
        Language::Rust { name, dir, sdk_path } => new_rust(&name, dir, sdk_path),
    }
}

fn new_rust(name: &str, dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> Result<()> {
    wafer_runtime::manifest::validate_name(name).map_err(anyhow::Error::msg)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let sdk = match sdk_path {
        Some(path) => path,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust"),
    };
    let sdk = std::fs::canonicalize(&sdk)
        .with_context(|| format!("cannot find the wafer-sdk crate at {} (pass --sdk-path)", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    let crate_name = name.replace('-', "_");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
wafer-sdk = {{ path = {sdk:?} }}

[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1

# A function is its own workspace, even inside another project's folder.
[workspace]
"#
        ),
    )?;
    std::fs::write(
        dir.join("src/lib.rs"),
        format!(
            r#"// Run with: wafer build && wafer deploy && wafer invoke {name}
use wafer_sdk::http::{{Request, Response}};

fn handle(req: Request) -> Response {{
    Response::text(200, format!("Hello from {name}! You asked for {{}}\n", req.path()))
}}

wafer_sdk::http_handler!(handle);
"#
        ),
    )?;
    std::fs::write(
        dir.join("wafer.toml"),
        format!(
            r#"name = "{name}"
component = "target/wasm32-wasip2/release/{crate_name}.wasm"
routes = ["/{name}"]

[limits]
memory = "64MiB"
timeout = "10s"

[config]
"#
        ),
    )?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    println!(
        "created {}: build with `wafer build {0}`, deploy with `wafer deploy {0}`",
        dir.display()
    );
    Ok(())
}
