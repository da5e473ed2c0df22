//! `wafer serve`: run a node until Ctrl-C or SIGTERM.

use crate::client::load_function;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use wafer_runtime::config::NodeConfig;
use wafer_runtime::gateway;
use wafer_runtime::node::Node;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub fn run(
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    deploy: Vec<PathBuf>,
    models: Vec<String>,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WAFER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")),
        )
        .init();
    let mut config = match config {
        Some(path) => NodeConfig::load(&path)?,
        None => NodeConfig::default(),
    };
    for model in models {
        let (name, path) = match model.split_once('=') {
            Some((name, path)) => (name.to_owned(), PathBuf::from(path)),
            None => {
                let entry = wafer_runtime::catalog::find(&model)?;
                let dir = config
                    .models_dir
                    .clone()
                    .unwrap_or_else(wafer_runtime::config::default_models_dir);
                if !entry.is_pulled(&dir) {
                    anyhow::bail!(
                        "model `{model}` is not pulled into {}: run `wafer models pull {model}`",
                        dir.display()
                    );
                }
                (model.clone(), PathBuf::from(entry.path))
            }
        };
        config
            .models
            .insert(name, wafer_host_apis::model::ModelConfig::at(path));
    }
    let listen = match listen.or(config.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let data_dir = data_dir
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(crate::client::default_data_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config, listen, data_dir, deploy))
}

async fn serve(config: NodeConfig, listen: SocketAddr, data_dir: PathBuf, deploy: Vec<PathBuf>) -> Result<()> {
    let grace = config.node.shutdown_grace.0;
    let (node, new_token) = Node::open(config, &data_dir)
        .await
        .with_context(|| format!("cannot start a node on {}", data_dir.display()))?;
    if let Some(token) = new_token {
        println!(
            "Admin token (shown once; also in {}):",
            data_dir.join("admin-token").display()
        );
        println!("  {token}");
    }
    for dir in deploy {
        let (name, spec, bytes) = load_function(&dir, None, &[])?;
        let deployment = node
            .registry
            .deploy("default", &name, spec, bytes)
            .await
            .with_context(|| format!("cannot deploy {}", dir.display()))?;
        println!(
            "Deployed {name} v{} at {}",
            deployment.record.version,
            deployment.info().routes.join(", ")
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    println!(
        "Wafer node listening on http://{local} (data dir {})",
        data_dir.display()
    );
    for function in node.registry.list() {
        for route in &function.routes {
            if route.starts_with('/') {
                println!("  {:<20} curl http://{local}{route}", function.name);
            } else {
                println!("  {:<20} route {route}", function.name);
            }
        }
    }
    let app = gateway::router(Arc::clone(&node));
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    server.await?;
    // In-flight invocations own their instances; give them a moment.
    let deadline = tokio::time::Instant::now() + grace;
    while node.instances.available_permits() < node.config.node.max_instances as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
