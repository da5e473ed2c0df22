//! `wafer:ai/llm` and `wafer:ai/embeddings` through real functions (the
//! `chat` and `semantic-search` examples) on a node serving the demo
//! models: streaming, usage billed per token and equal to what the function
//! was told, the allow-list, unknown models, and the token quota stopping a
//! generation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::StatusCode;
use common::TestNode;
use serde_json::{Value, json};
use wafer_runtime::billing::pricing::ModelPrices;
use wafer_runtime::manifest::FunctionSpec;

use common::{DEMO_EMBED as EMBED, DEMO_LLM as LLM};

/// The chat or semantic-search example's component, built once.
fn example(_package: &str, file: &str) -> Vec<u8> {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| drop(common::example_component(&["chat", "semantic-search"], "chat.wasm")));
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/target/wasm32-wasip2/release")
            .join(file),
    )
    .unwrap()
}

/// 1 micro-unit per prompt token, 2 per generated token, 1 per 10 embedded.
fn prices() -> (ModelPrices, ModelPrices) {
    (
        ModelPrices {
            per_million_input_tokens: 1_000_000,
            per_million_output_tokens: 2_000_000,
            ..Default::default()
        },
        ModelPrices {
            per_million_embedding_tokens: 100_000,
            ..Default::default()
        },
    )
}

async fn model_node(tweak: impl FnOnce(&mut wafer_runtime::config::NodeConfig)) -> Option<TestNode> {
    let mut config = common::demo_models_config()?;
    let (llm_prices, embed_prices) = prices();
    config.pricing.models.insert(LLM.into(), llm_prices);
    config.pricing.models.insert(EMBED.into(), embed_prices);
    tweak(&mut config);
    Some(TestNode::with_config(config).await)
}

fn chat_spec(models: &[&str], model_config: Option<&str>) -> FunctionSpec {
    let mut spec = FunctionSpec {
        routes: vec!["/chat".into()],
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        ..FunctionSpec::default()
    };
    if let Some(m) = model_config {
        spec.config.insert("MODEL".into(), m.into());
    }
    spec
}

fn chat_body(max_tokens: u32) -> String {
    json!({ "messages": [{ "role": "user", "content": "What is the capital of France?" }],
            "temperature": 0, "max_tokens": max_tokens })
    .to_string()
}

async fn ledger(node: &TestNode) -> Vec<Value> {
    node.admin("GET", "/v1/ledger", Body::empty(), None)
        .await
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn chat_streams_and_bills_the_tokens_it_reports() {
    let Some(node) = model_node(|_| {}).await else { return };
    node.deploy("chat", &chat_spec(&[LLM], None), &example("chat", "chat.wasm"))
        .await;

    let response = node.post("/chat", chat_body(48)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.headers["content-type"], "text/event-stream");
    let body = response.text();
    let mut text = String::new();
    let mut usage = Value::Null;
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let data: Value = serde_json::from_str(data).unwrap();
        if event.starts_with("event: usage") {
            usage = data;
        } else {
            text.push_str(data["text"].as_str().unwrap());
        }
    }
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(usage["finish"], "stop", "{body}");
    let (tokens_in, tokens_out) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(tokens_in > 10 && tokens_out > 0 && tokens_out < 48, "{usage}");

    // The ledger holds exactly those tokens, priced per token.
    let records = ledger(&node).await;
    let model: Vec<&Value> = records.iter().filter(|r| r["model"] == LLM).collect();
    assert_eq!(model.len(), 1, "{records:?}");
    assert_eq!(model[0]["tokens_in"], tokens_in);
    assert_eq!(model[0]["tokens_out"], tokens_out);
    assert_eq!(model[0]["amount_micros"], tokens_in + 2 * tokens_out);
    assert_eq!(model[0]["function"], "chat");

    // Buffered: the usage headers carry the same numbers.
    let response = node.post("/chat?stream=false", chat_body(48)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let reply = response.json();
    assert_eq!(reply["text"].as_str().unwrap(), text, "greedy is deterministic");
    assert_eq!(response.headers["x-wafer-tokens-in"], tokens_in.to_string().as_str());
    assert_eq!(response.headers["x-wafer-tokens-out"], tokens_out.to_string().as_str());
}

#[tokio::test]
async fn models_must_be_allowed_and_exist() {
    let Some(node) = model_node(|_| {}).await else { return };
    // Not in the manifest's allow-list: the error says how to allow it.
    node.deploy("chat", &chat_spec(&[], None), &example("chat", "chat.wasm"))
        .await;
    let response = node.post("/chat?stream=false", chat_body(4)).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text());
    assert_eq!(response.code(), "model_not_allowed");
    assert!(response.text().contains("wafer.toml"), "{}", response.text());

    // Allowed but not served by this node: named, with what is loaded.
    node.deploy(
        "chat",
        &chat_spec(&["nope"], Some("nope")),
        &example("chat", "chat.wasm"),
    )
    .await;
    let response = node.post("/chat", chat_body(4)).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text());
    assert_eq!(response.code(), "unknown_model");
    assert!(response.text().contains(LLM), "{}", response.text());

    // An embeddings model asked to chat is a parameter error.
    node.deploy("chat", &chat_spec(&[EMBED], Some(EMBED)), &example("chat", "chat.wasm"))
        .await;
    let response = node.post("/chat", chat_body(4)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
    // Nothing was generated, so no tokens were billed.
    assert!(ledger(&node).await.iter().all(|r| r["model"].is_null()));
}

#[tokio::test]
async fn semantic_search_ranks_by_meaning_and_bills_embedding_tokens() {
    let Some(node) = model_node(|_| {}).await else { return };
    let spec = FunctionSpec {
        routes: vec!["/search".into()],
        models: vec![EMBED.into()],
        ..FunctionSpec::default()
    };
    node.deploy("search", &spec, &example("semantic-search", "semantic_search.wasm"))
        .await;
    let response = node.get("/search?q=how+do+plants+make+food&k=2").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let results = response.json()["results"].clone();
    assert!(
        results[0]["text"].as_str().unwrap().starts_with("Photosynthesis"),
        "{results}"
    );
    let records = ledger(&node).await;
    let embed: Vec<&Value> = records.iter().filter(|r| r["model"] == EMBED).collect();
    assert_eq!(embed.len(), 1);
    let tokens = embed[0]["embedding_tokens"].as_u64().unwrap();
    assert!(tokens > 100, "the query and 15 documents: {tokens}");
    assert_eq!(embed[0]["amount_micros"], (tokens as f64 / 10.0).round() as u64);
}

#[tokio::test]
async fn a_token_quota_stops_a_running_generation() {
    let Some(node) = model_node(|config| config.quotas.monthly_tokens = Some(60)).await else {
        return;
    };
    node.deploy("chat", &chat_spec(&[LLM], None), &example("chat", "chat.wasm"))
        .await;
    let body = json!({ "messages": [{ "role": "user", "content": "Write a long poem about the sea." }],
                       "temperature": 0, "max_tokens": 200 })
    .to_string();
    let response = node.post("/chat?stream=false", body.clone()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let reply = response.json();
    let usage = &reply["usage"];
    let total = usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(reply["finish"], "length", "{reply}");
    assert_eq!(total, 60, "stopped exactly at the quota: {reply}");
    // The month's tokens are used: the next request is refused up front.
    let response = node.post("/chat?stream=false", body).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS, "{}", response.text());
    assert_eq!(response.code(), "token_quota_exceeded");
}

/// Invocations of one tenant running at once share its token quota: each
/// holds what its generations may use until the ledger has it, so together
/// they stay within the month's tokens.
#[tokio::test]
async fn concurrent_invocations_share_the_token_quota() {
    let quota = 100;
    let Some(node) = model_node(|config| config.quotas.monthly_tokens = Some(quota)).await else {
        return;
    };
    node.deploy("chat", &chat_spec(&[LLM], None), &example("chat", "chat.wasm"))
        .await;
    let body = json!({ "messages": [{ "role": "user", "content": "Write a long poem about the sea." }],
                       "temperature": 0, "max_tokens": 200 })
    .to_string();
    let (a, b) = tokio::join!(
        node.post("/chat?stream=false", body.clone()),
        node.post("/chat?stream=false", body.clone())
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&StatusCode::OK),
        "{statuses:?}: {} / {}",
        a.text(),
        b.text()
    );
    let billed: u64 = ledger(&node)
        .await
        .iter()
        .map(|r| r["tokens_in"].as_u64().unwrap_or(0) + r["tokens_out"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        billed <= quota,
        "the two invocations used {billed} tokens of a {quota}-token quota"
    );
    assert!(billed > 0);
}

#[tokio::test]
async fn metrics_show_the_models_counters() {
    let Some(node) = model_node(|_| {}).await else { return };
    node.deploy("chat", &chat_spec(&[LLM], None), &example("chat", "chat.wasm"))
        .await;
    assert_eq!(
        node.post("/chat?stream=false", chat_body(4)).await.status,
        StatusCode::OK
    );
    let text = node.get("/metrics").await.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("wafer_model_generated_tokens_total{model=\"smollm2-135m-instruct\"}"));
    let generated: f64 = line
        .unwrap_or_else(|| panic!("{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(generated >= 1.0, "{text}");
    assert!(
        text.trim_end().ends_with("# EOF"),
        "the counters go before the end marker"
    );
}

#[tokio::test]
async fn models_hold_memory_on_the_cpu_device() {
    let Some(node) = model_node(|_| {}).await else { return };
    let devices = node.admin("GET", "/v1/devices", Body::empty(), None).await.json();
    let cpu = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"].to_string().contains("cpu"))
        .cloned();
    let cpu = cpu.unwrap_or_else(|| devices["devices"][0].clone());
    // SmolLM2's 98 MB of weights plus its 64 MiB cache, and MiniLM's 91 MB.
    let models = cpu["models"].as_u64().unwrap_or_else(|| panic!("{devices}"));
    assert!(models > 200_000_000, "{devices}");
    let listed = node.admin("GET", "/v1/models", Body::empty(), None).await.json();
    let total: u64 = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["wafer"]["memory_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total, models, "{listed}");
}
