//! Wafer's node: runs WebAssembly components as HTTP-triggered functions.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wafer_runtime::{config::NodeConfig, gateway, node::Node};
//! let (node, _new_admin_token) = Node::open(NodeConfig::default(), ".wafer".as_ref()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, gateway::router(node)).await?;
//! # Ok(())
//! # }
//! ```

pub mod allowance;
pub mod artifacts;
pub mod auth;
pub mod billing;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod guest_log;
pub mod instance;
pub mod invoker;
pub mod logs;
pub mod manifest;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod registry;
pub mod routes;
pub mod storage;
pub mod units;
