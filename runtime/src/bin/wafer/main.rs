//! `wafer`: run a node, deploy and call functions.

mod build;
mod client;
mod scaffold;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Wafer: serverless WebAssembly functions with AI on shared accelerators.
#[derive(Parser)]
#[command(name = "wafer", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where client commands find the node.
#[derive(clap::Args, Clone)]
struct Target {
    /// The node's URL.
    #[arg(
        long,
        env = "WAFER_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Admin token; by default read from the data dir's `admin-token`.
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The node's data dir, to find the admin token in.
    #[arg(long, env = "WAFER_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080, or `listen` in the config].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the registry, artifacts and token live [default: ~/.wafer].
        #[arg(long, env = "WAFER_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The node's `wafer.toml`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Function folders (with a `wafer.toml`) to deploy once the node is up.
        #[arg(long = "deploy", value_name = "DIR")]
        deploy: Vec<PathBuf>,
    },
    /// Upload a function (a folder with `wafer.toml`, or a `.wasm` file) to a node.
    Deploy {
        /// Function folder or component file.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Function name (overrides the manifest; default for a `.wasm` is its file stem).
        #[arg(long)]
        name: Option<String>,
        /// Route prefix, repeatable (overrides the manifest; default `/NAME`).
        #[arg(long = "route")]
        routes: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List deployed functions.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// List a function's versions.
    Versions {
        /// Function name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make an earlier version active.
    Rollback {
        /// Function name.
        name: String,
        /// Version number (see `wafer versions NAME`).
        #[arg(value_name = "VERSION")]
        to_version: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a function and all its versions.
    Delete {
        /// Function name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Call a function over HTTP and print the response body.
    Invoke {
        /// Function name.
        name: String,
        /// Path below the function's route.
        #[arg(long, default_value = "")]
        path: String,
        /// HTTP method [default: GET, or POST with --data].
        #[arg(short = 'X', long = "method")]
        method: Option<String>,
        /// Request body: text, or `@FILE` to read a file (`@-` for stdin).
        #[arg(short = 'd', long)]
        data: Option<String>,
        /// Extra header `Name: value`, repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Print the status line and headers too.
        #[arg(short = 'i', long)]
        include: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print a function's logs.
    Logs {
        /// Function name.
        name: String,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many recent lines to print first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Create a new function from a template.
    New {
        #[command(subcommand)]
        language: scaffold::Language,
    },
    /// Build a function folder into a component.
    Build {
        /// The function folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
            deploy,
        } => serve::run(listen, data_dir, config, deploy),
        Command::New { language } => scaffold::run(language),
        Command::Build { dir } => build::run(&dir).map(|_| ()),
        command => client::run(command),
    }
}
