//! The HTTP front door: the admin API under `/v1`, `/healthz`, `/metrics`,
//! and every other path routed to a function.

pub mod admin;
pub mod billing;
pub mod error;
pub mod openai;

use crate::invoker;
use crate::node::Node;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// Builds the node's router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest(
            "/v1",
            admin::router(&node).merge(billing::router()).merge(openai::router()),
        )
        .fallback(function)
        .with_state(node)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics.encode(),
    )
}

async fn function(State(node): State<Arc<Node>>, request: Request<Body>) -> Response {
    invoker::invoke(node, request).await
}
