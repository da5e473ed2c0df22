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
    /// A JavaScript function using the `@wafer/sdk` npm package.
    Js {
        /// Function name (also the folder name).
        name: String,
        /// Where to create it [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of the `@wafer/sdk` package [default: the SDK next to this wafer's sources].
        #[arg(long, env = "WAFER_JS_SDK_PATH")]
        sdk_path: Option<PathBuf>,
        /// Write TypeScript (`src/index.ts` and a `tsconfig.json`) instead of JavaScript.
        #[arg(long)]
        typescript: bool,
    },
}

pub fn run(language: Language) -> Result<()> {
    match language {
        Language::Rust { name, dir, sdk_path } => new_rust(&name, dir, sdk_path),
        Language::Js {
            name,
            dir,
            sdk_path,
            typescript,
        } => new_js(&name, dir, sdk_path, typescript),
    }
}

/// Checks the name and that the folder is new or empty; returns the folder.
fn project_dir(name: &str, dir: Option<PathBuf>) -> Result<PathBuf> {
    wafer_runtime::manifest::validate_name(name).map_err(anyhow::Error::msg)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    Ok(dir)
}

/// The manifest of a new function whose component is at `component`.
fn manifest(name: &str, component: &str) -> String {
    format!(
        r#"name = "{name}"
component = "{component}"
routes = ["/{name}"]

[limits]
memory = "64MiB"
timeout = "10s"

[config]
"#
    )
}

fn new_js(name: &str, dir: Option<PathBuf>, sdk_path: Option<PathBuf>, typescript: bool) -> Result<()> {
    let dir = project_dir(name, dir)?;
    let sdk = match sdk_path {
        Some(path) => path,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/js"),
    };
    let sdk = std::fs::canonicalize(&sdk).with_context(|| {
        format!(
            "cannot find the @wafer/sdk package at {} (pass --sdk-path)",
            sdk.display()
        )
    })?;
    if !sdk.join("package.json").exists() {
        bail!("{} is not the @wafer/sdk package (no package.json)", sdk.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let sdk_spec = serde_json::to_string(&format!("file:{}", sdk.display()))?;
    std::fs::write(
        dir.join("package.json"),
        format!(
            r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "wafer-build"
  }},
  "dependencies": {{
    "@wafer/sdk": {sdk_spec}
  }}
}}
"#
        ),
    )?;
    let (entry, types) = if typescript {
        ("src/index.ts", "(req: Request, ctx: Context)")
    } else {
        ("src/index.js", "(req, ctx)")
    };
    let import = if typescript {
        "import { Router, json, serve, type Context } from '@wafer/sdk';"
    } else {
        "import { Router, json, serve } from '@wafer/sdk';"
    };
    std::fs::write(
        dir.join(entry),
        format!(
            r#"// Run with: wafer build && wafer deploy && wafer invoke {name}
{import}

const app = new Router({{ base: '/{name}' }});

// GET /{name}/json?who=you answers JSON.
app.get('/json', {types} => json({{ hello: ctx.query.get('who') ?? 'world', path: ctx.path }}));

// Anything else under /{name}: a greeting.
app.all('/*', {types} => `Hello from {name}! You asked for ${{ctx.path}}
`);

serve(app);
"#
        ),
    )?;
    if typescript {
        std::fs::write(
            dir.join("tsconfig.json"),
            r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ESNext",
    "moduleResolution": "Bundler",
    "lib": ["ES2022", "DOM", "DOM.Iterable", "ESNext.Disposable"],
    "strict": true,
    "noEmit": true
  },
  "include": ["src"]
}
"#,
        )?;
    }
    std::fs::write(dir.join("wafer.toml"), manifest(name, &format!("dist/{name}.wasm")))?;
    std::fs::write(dir.join(".gitignore"), "/node_modules\n/dist\n/.wafer-build\n")?;
    println!(
        "created {}: build with `wafer build {0}`, deploy with `wafer deploy {0}`",
        dir.display()
    );
    Ok(())
}

fn new_rust(name: &str, dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> Result<()> {
    let dir = project_dir(name, dir)?;
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
        manifest(name, &format!("target/wasm32-wasip2/release/{crate_name}.wasm")),
    )?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    println!(
        "created {}: build with `wafer build {0}`, deploy with `wafer deploy {0}`",
        dir.display()
    );
    Ok(())
}
