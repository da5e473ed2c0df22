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
    let mut text = node.metrics.encode();
    // The models' scheduler counters live in host-apis; they join the
    // OpenMetrics text before its closing `# EOF`.
    let models = model_metrics(&node.models.list());
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &models),
        None => text.push_str(&models),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// A model metric: name, type, help, and how to read it.
type ModelSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&wafer_host_apis::model::ModelInfo) -> f64,
);

fn model_metrics(models: &[wafer_host_apis::model::ModelInfo]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let series: [ModelSeries; 6] = [
        ("wafer_model_generated_tokens", "counter", "Tokens sampled.", |m| {
            m.generated_tokens as f64
        }),
        ("wafer_model_prompt_tokens", "counter", "Prompt tokens fed.", |m| {
            m.prompt_tokens as f64
        }),
        ("wafer_model_steps", "counter", "Forward steps run.", |m| m.steps as f64),
        (
            "wafer_model_step_seconds",
            "counter",
            "Seconds spent in forward steps, sampling included.",
            |m| m.step_seconds,
        ),
        ("wafer_model_running", "gauge", "Sequences in the batch.", |m| {
            m.running as f64
        }),
        (
            "wafer_model_waiting",
            "gauge",
            "Requests waiting for a batch slot.",
            |m| m.waiting as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in models.iter().filter(|m| m.kind == "llm") {
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "{name}{suffix}{{model=\"{}\"}} {}", m.name, value(m));
        }
    }
    out
}

async fn function(State(node): State<Arc<Node>>, request: Request<Body>) -> Response {
    invoker::invoke(node, request).await
}
