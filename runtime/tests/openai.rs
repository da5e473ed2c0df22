//! The OpenAI-compatible API through `Router::oneshot`: request and
//! response shapes, errors, billing (usage equals the ledger, once per
//! request), quotas, and a client that leaves in the middle of a stream.
//! Then the official `openai` clients (Python and JavaScript) against a
//! node on a real socket. Model tests need `wafer models pull`; without the
//! models they skip, unless `WAFER_REQUIRE_MODELS=1` (CI) makes them fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Response, TestNode, test_config};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wafer_host_apis::model::ModelConfig;

const LLM: &str = "smollm2-135m-instruct";
const EMBED: &str = "all-minilm-l6-v2";
const LLM_PATH: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const EMBED_PATH: &str = "all-minilm-l6-v2";

fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WAFER_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    wafer_runtime::config::default_models_dir()
}

fn require_models() -> bool {
    std::env::var_os("WAFER_REQUIRE_MODELS").is_some_and(|v| v == "1")
}

/// A node with both demo models, or `None` (and a note) when not pulled.
async fn model_node() -> Option<TestNode> {
    let dir = models_dir();
    for path in [LLM_PATH, EMBED_PATH] {
        if !dir.join(path).exists() {
            assert!(
                !require_models(),
                "model {} is missing: run `wafer models pull`",
                dir.join(path).display()
            );
            eprintln!(
                "skipping: no model at {} (run `wafer models pull`)",
                dir.join(path).display()
            );
            return None;
        }
    }
    let mut config = test_config();
    config.models.insert(LLM.into(), ModelConfig::at(dir.join(LLM_PATH)));
    config
        .models
        .insert(EMBED.into(), ModelConfig::at(dir.join(EMBED_PATH)));
    config.pricing = toml::from_str(
        r#"
        [models.smollm2-135m-instruct]
        per_million_input_tokens = 100000
        per_million_output_tokens = 300000
        [models.all-minilm-l6-v2]
        per_million_embedding_tokens = 20000
        "#,
    )
    .unwrap();
    Some(TestNode::with_config(config).await)
}

async fn create_tenant(node: &TestNode, name: &str, quotas: Value) {
    let body = json!({ "name": name, "quotas": quotas }).to_string();
    let response = node
        .admin("POST", "/v1/tenants", Body::from(body), Some("application/json"))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
}

async fn create_key(node: &TestNode, tenant: &str, scope: &str) -> String {
    let body = json!({ "tenant": tenant, "scope": scope }).to_string();
    let response = node
        .admin("POST", "/v1/keys", Body::from(body), Some("application/json"))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    response.json()["key"].as_str().unwrap().to_owned()
}

fn post_request(path: &str, key: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

async fn post(node: &TestNode, path: &str, key: &str, body: &Value) -> Response {
    node.send(post_request(path, key, body.to_string())).await
}

/// Asserts OpenAI's error shape, and returns the error object.
fn openai_error(response: &Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    assert_eq!(error["code"], code, "{body}");
    error.clone()
}

/// The ledger's model record of one request (polls: a stream's record is
/// written by its task, possibly after the client is gone).
async fn ledger_tokens(node: &TestNode, invocation_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
        let rows: Vec<&Value> = ledger
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["invocation_id"] == invocation_id)
            .collect();
        if !rows.is_empty() {
            assert_eq!(rows.len(), 2, "one invocation record and one model record: {rows:?}");
            return rows.iter().find(|r| r["seq"] == 1).copied().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "no ledger record for {invocation_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events of a server-sent stream, `[DONE]` included.
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn keys_bodies_and_models_are_checked_before_any_work() {
    let node = TestNode::start().await;
    create_tenant(&node, "acme", json!({})).await;
    let invoke = create_key(&node, "acme", "invoke").await;
    let read = create_key(&node, "acme", "read").await;
    let chat = json!({ "model": LLM, "messages": [{ "role": "user", "content": "hi" }] });

    for key in ["", "wk_nope_nope", "not-a-key"] {
        let response = post(&node, "/v1/chat/completions", key, &chat).await;
        openai_error(&response, StatusCode::UNAUTHORIZED, "invalid_api_key");
    }
    let no_header = node
        .send(Request::post("/v1/embeddings").body(Body::from("{}")).unwrap())
        .await;
    openai_error(&no_header, StatusCode::UNAUTHORIZED, "invalid_api_key");
    let response = post(&node, "/v1/completions", &read, &json!({ "model": LLM, "prompt": "x" })).await;
    openai_error(&response, StatusCode::FORBIDDEN, "insufficient_permissions");

    // This node loads no models.
    for (path, body) in [
        ("/v1/chat/completions", chat.clone()),
        ("/v1/completions", json!({ "model": "gpt-4o", "prompt": "x" })),
        (
            "/v1/embeddings",
            json!({ "model": "text-embedding-3-small", "input": "x" }),
        ),
    ] {
        let response = post(&node, path, &invoke, &body).await;
        let error = openai_error(&response, StatusCode::NOT_FOUND, "model_not_found");
        assert_eq!(error["param"], "model");
        assert_eq!(error["type"], "invalid_request_error");
    }

    let response = node
        .send(post_request("/v1/chat/completions", &invoke, "{not json"))
        .await;
    openai_error(&response, StatusCode::BAD_REQUEST, "invalid_json");
    let response = post(&node, "/v1/chat/completions", &invoke, &json!({ "messages": [] })).await;
    let error = openai_error(&response, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(error["message"].as_str().unwrap().contains("model"), "{error}");

    // Just inside the body limit parses (and fails later, on the model);
    // just outside is refused (after reading and dropping the rest, so the
    // client sees the answer), with or without a length header.
    let limit = wafer_runtime::gateway::openai::MAX_BODY_BYTES;
    let filler = |total: usize| {
        let head = r#"{"model":"m","prompt":"x","pad":""#;
        let pad = "a".repeat(total - head.len() - 2);
        format!("{head}{pad}\"}}")
    };
    let inside = filler(limit);
    assert_eq!(inside.len(), limit);
    let response = node.send(post_request("/v1/completions", &invoke, inside)).await;
    openai_error(&response, StatusCode::NOT_FOUND, "model_not_found");
    let outside = filler(limit + 1);
    let response = node
        .send(post_request("/v1/completions", &invoke, outside.clone()))
        .await;
    openai_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");
    let chunked = Body::from_stream(futures::stream::iter(
        outside
            .into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let response = node.send(post_request("/v1/completions", &invoke, chunked)).await;
    openai_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");

    // A declared length far beyond the limit is refused before reading.
    let huge = Request::post("/v1/completions")
        .header("authorization", format!("Bearer {invoke}"))
        .header("content-length", (64u64 << 20).to_string())
        .body(Body::empty())
        .unwrap();
    openai_error(
        &node.send(huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
    );

    // Nothing reached a model: nothing is billed.
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    assert_eq!(ledger, json!([]));
}

#[tokio::test]
async fn chat_completion_shape_usage_and_ledger() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let request = json!({
        "model": LLM,
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": [{ "type": "text", "text": "Name a colour." }] }
        ],
        "max_tokens": 4,
        "temperature": 0,
        "seed": 7,
        "user": "ignored",
    });
    let response = post(&node, "/v1/chat/completions", &key, &request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    let id = body["id"].as_str().unwrap();
    let invocation = id.strip_prefix("chatcmpl-").unwrap();
    assert_eq!(invocation.len(), 26, "a ULID: {id}");
    assert_eq!(response.invocation_id().as_deref(), Some(invocation));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], LLM);
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &body["choices"][0];
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 10, "the template is counted: {usage}");
    assert!((1..=4).contains(&completion), "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    if choice["finish_reason"] == "length" {
        assert_eq!(completion, 4);
    }

    let record = ledger_tokens(&node, invocation).await;
    assert_eq!(record["tenant"], "acme");
    assert_eq!(record["model"], LLM);
    assert_eq!(record["function"], Value::Null);
    assert_eq!(record["tokens_in"].as_u64().unwrap(), prompt);
    assert_eq!(record["tokens_out"].as_u64().unwrap(), completion);
    // 0.1 and 0.3 micro-units per token, rounded once.
    let expected = (prompt * 100_000 + completion * 300_000 + 500_000) / 1_000_000;
    assert_eq!(record["amount_micros"].as_u64().unwrap(), expected);

    // The same seed gives the same text.
    let again = post(&node, "/v1/chat/completions", &key, &request).await.json();
    assert_eq!(again["choices"][0]["message"]["content"], choice["message"]["content"]);
    assert_ne!(again["id"], body["id"]);
}

#[tokio::test]
async fn streams_end_with_usage_and_done_and_bill_what_they_say() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;

    // Chat, with include_usage.
    let request = json!({
        "model": LLM,
        "messages": [{ "role": "user", "content": "Say hello." }],
        "max_completion_tokens": 5,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let response = post(&node, "/v1/chat/completions", &key, &request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.headers["content-type"], "text/event-stream");
    let events = sse_events(&response.text());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id.as_str());
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], LLM);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let (finish_chunk, content) = rest.split_last().unwrap();
    assert_eq!(finish_chunk["choices"][0]["delta"], json!({}));
    let finish = finish_chunk["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length");
    for chunk in rest {
        assert_eq!(chunk["usage"], Value::Null, "usage only on the last chunk");
        assert!(chunk["choices"][0].get("logprobs").is_some());
    }
    for chunk in &content[..content.len() - 1] {
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    let pieces = content.len() - 1; // the role chunk carries no token
    let usage = &usage_chunk["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(
        completion <= 5 && completion as usize >= pieces,
        "{usage}, {pieces} pieces"
    );
    let record = ledger_tokens(&node, id.strip_prefix("chatcmpl-").unwrap()).await;
    assert_eq!(record["tokens_in"], usage["prompt_tokens"]);
    assert_eq!(record["tokens_out"], usage["completion_tokens"]);

    // Text completion, without include_usage: no usage anywhere, still billed.
    let request = json!({ "model": LLM, "prompt": "One, two,", "max_tokens": 3, "stream": true, "temperature": 0 });
    let response = post(&node, "/v1/completions", &key, &request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let events = sse_events(&response.text());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "text_completion");
        assert!(chunk.get("usage").is_none());
        assert!(chunk["choices"][0]["text"].is_string());
    }
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    let whole = json!({ "model": LLM, "prompt": "One, two,", "max_tokens": 3, "temperature": 0 });
    let whole = post(&node, "/v1/completions", &key, &whole).await.json();
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(whole["choices"][0]["text"].as_str().unwrap(), text, "streamed = whole");
    let id = chunks[0]["id"].as_str().unwrap();
    let record = ledger_tokens(&node, id.strip_prefix("cmpl-").unwrap()).await;
    assert_eq!(record["tokens_out"], whole["usage"]["completion_tokens"]);
    assert_eq!(record["tokens_in"], whole["usage"]["prompt_tokens"]);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_pays_for_what_was_generated() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let generated = || {
        let models = node.node.models.list();
        let llm = models.iter().find(|m| m.name == LLM).unwrap();
        (llm.generated_tokens, llm.running + llm.waiting)
    };
    let before = generated().0;
    let max_tokens = 200;
    let request = json!({
        "model": LLM,
        "messages": [{ "role": "user", "content": "Tell me a long story about a lighthouse." }],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": true,
    });
    let response = node
        .router
        .clone()
        .oneshot(post_request("/v1/chat/completions", &key, request.to_string()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let invocation = response.headers()["x-wafer-invocation-id"].to_str().unwrap().to_owned();
    let mut body = response.into_body();
    let mut received = String::new();
    let content_events = |text: &str| {
        text.split("\n\n")
            .filter(|e| e.contains("\"content\"") && !e.contains("\"role\""))
            .count()
    };
    while content_events(&received) < 3 {
        let frame = body.frame().await.unwrap().unwrap();
        received.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    let streamed = content_events(&received) as u64;
    drop(body); // the client goes away

    let record = ledger_tokens(&node, &invocation).await;
    // Let the scheduler finish the step it was in when the client left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while generated().1 > 0 {
        assert!(Instant::now() < deadline, "the generation was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sampled = generated().0 - before;
    eprintln!(
        "streamed {streamed}, billed {}, sampled {sampled}",
        record["tokens_out"]
    );
    let billed = record["tokens_out"].as_u64().unwrap();
    assert!(billed >= streamed, "billed {billed} < streamed {streamed}");
    assert!(billed < max_tokens, "the generation went on to {billed} tokens");
    // Every token sampled before the client left is billed; the one the
    // scheduler may have been sampling at that moment is not.
    assert!(
        sampled == billed || sampled == billed + 1,
        "sampled {sampled}, billed {billed}"
    );
    assert!(record["tokens_in"].as_u64().unwrap() > 0);
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    assert_eq!(ledger.as_array().unwrap().len(), 2, "billed once: {ledger}");
}

/// A client that leaves while its prompt is still being fed pays for the
/// prompt tokens the model read until then (the scheduler's meter), and for
/// no completion tokens.
#[tokio::test]
async fn a_client_that_leaves_during_the_prompt_pays_for_what_was_fed() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let counters = || {
        let models = node.node.models.list();
        let llm = models.iter().find(|m| m.name == LLM).unwrap();
        (llm.prompt_tokens, llm.generated_tokens, llm.running + llm.waiting)
    };
    let (prompt_before, generated_before, _) = counters();
    // ~800 tokens: several 128-token prefill steps.
    let long = "The lighthouse keeper counted the waves again. ".repeat(90);
    let request = json!({
        "model": LLM,
        "messages": [{ "role": "user", "content": long }],
        "max_tokens": 50,
        "stream": true,
    });
    // The server answers a stream's headers with its first token, so the
    // client leaves while waiting for them.
    let pending = tokio::spawn(node.router.clone().oneshot(post_request(
        "/v1/chat/completions",
        &key,
        request.to_string(),
    )));
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters().0 == prompt_before {
        assert!(Instant::now() < deadline, "the prompt was never fed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    pending.abort(); // the client goes away mid-prompt
    assert!(
        pending.await.is_err_and(|e| e.is_cancelled()),
        "the response came before the prompt was fed"
    );

    let invocation = loop {
        let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
        if let Some(row) = ledger.as_array().unwrap().first() {
            break row["invocation_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "nothing was billed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let record = ledger_tokens(&node, &invocation).await;
    while counters().2 > 0 {
        assert!(Instant::now() < deadline, "the generation was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (prompt_after, generated_after, _) = counters();
    let fed = prompt_after - prompt_before;
    let billed_in = record["tokens_in"].as_u64().unwrap();
    eprintln!(
        "fed {fed}, billed {billed_in}, sampled {}",
        generated_after - generated_before
    );
    assert!(billed_in > 0, "the prompt tokens fed were not billed: {record}");
    // Billed when the client left; the step running at that moment may
    // have fed one more chunk (at most 128 tokens) that is not billed.
    assert!(
        billed_in <= fed && fed - billed_in <= 128,
        "fed {fed}, billed {billed_in}"
    );
    assert_eq!(
        record["tokens_out"].as_u64().unwrap(),
        generated_after - generated_before,
        "{record}"
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let texts = json!(["The cat sat on the mat.", "A dog barked."]);
    let float = post(
        &node,
        "/v1/embeddings",
        &key,
        &json!({ "model": EMBED, "input": texts }),
    )
    .await;
    assert_eq!(float.status, StatusCode::OK, "{}", float.text());
    let float = float.json();
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], EMBED);
    let data = float["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"].as_array().unwrap().len(), 384);
    }
    let tokens = float["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 4);
    assert_eq!(float["usage"]["total_tokens"].as_u64().unwrap(), tokens);

    let encoded = post(
        &node,
        "/v1/embeddings",
        &key,
        &json!({ "model": EMBED, "input": texts, "encoding_format": "base64" }),
    )
    .await;
    let encoded = encoded.json();
    let b64 = encoded["data"][1]["embedding"].as_str().unwrap();
    let bytes = decode_base64(b64);
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let floats: Vec<f32> = data[1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded.len(), 384);
    for (a, b) in decoded.iter().zip(&floats) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    let single = post(
        &node,
        "/v1/embeddings",
        &key,
        &json!({ "model": EMBED, "input": "hello" }),
    )
    .await;
    let single = single.json();
    let record = ledger_tokens(&node, single_invocation(&node, &single).await.as_str()).await;
    assert_eq!(record["embedding_tokens"], single["usage"]["prompt_tokens"]);
    assert_eq!(record["tokens_in"], 0);

    for (body, code) in [
        (json!({ "model": EMBED, "input": [] }), "invalid_value"),
        (json!({ "model": EMBED, "input": [[1, 2, 3]] }), "unsupported_parameter"),
        (
            json!({ "model": EMBED, "input": "x", "encoding_format": "int8" }),
            "invalid_value",
        ),
        (
            json!({ "model": EMBED, "input": "x", "dimensions": 64 }),
            "unsupported_parameter",
        ),
        (json!({ "model": LLM, "input": "x" }), "invalid_model"),
    ] {
        let response = post(&node, "/v1/embeddings", &key, &body).await;
        openai_error(&response, StatusCode::BAD_REQUEST, code);
    }
    let too_many = json!({ "model": EMBED, "input": vec!["x"; wafer_host_apis::llm::MAX_EMBED_TEXTS + 1] });
    let response = post(&node, "/v1/embeddings", &key, &too_many).await;
    openai_error(&response, StatusCode::BAD_REQUEST, "invalid_value");
}

/// The invocation of the newest ledger record (embeddings answers carry no id).
async fn single_invocation(node: &TestNode, _answer: &Value) -> String {
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    ledger
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["time_ms"].as_u64().unwrap())
        .unwrap()["invocation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn bad_parameters_get_openai_errors_naming_the_parameter() {
    let Some(node) = model_node().await else { return };
    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let base = || json!({ "model": LLM, "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 1 });
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    for (body, param, code) in [
        (with("temperature", json!(2.5)), "temperature", "invalid_value"),
        (with("temperature", json!("hot")), "", "invalid_json"),
        (with("top_p", json!(0)), "top_p", "invalid_value"),
        (with("max_tokens", json!(0)), "max_tokens", "invalid_value"),
        (
            with("max_completion_tokens", json!(0)),
            "max_completion_tokens",
            "invalid_value",
        ),
        (with("n", json!(2)), "n", "unsupported_parameter"),
        (with("stop", json!(7)), "stop", "invalid_type"),
        (with("stop", json!(vec!["a"; 9])), "stop", "invalid_value"),
        (
            with("presence_penalty", json!(0.5)),
            "presence_penalty",
            "unsupported_parameter",
        ),
        (with("logprobs", json!(true)), "logprobs", "unsupported_parameter"),
        (
            with("tools", json!([{ "type": "function" }])),
            "tools",
            "unsupported_parameter",
        ),
        (
            with("response_format", json!({ "type": "json_object" })),
            "response_format",
            "unsupported_parameter",
        ),
        (with("messages", json!([])), "messages", "invalid_value"),
        (
            with("messages", json!([{ "role": "tool", "content": "x" }])),
            "messages[0].role",
            "invalid_value",
        ),
        (
            with(
                "messages",
                json!([{ "role": "user", "content": [{ "type": "image_url" }] }]),
            ),
            "messages[0].content",
            "unsupported_parameter",
        ),
        (with("model", json!(EMBED)), "model", "invalid_model"),
    ] {
        let response = post(&node, "/v1/chat/completions", &key, &body).await;
        let error = openai_error(&response, StatusCode::BAD_REQUEST, code);
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}");
        }
    }
    for (body, param) in [
        (json!({ "model": LLM, "prompt": ["a", "b"] }), "prompt"),
        (json!({ "model": LLM, "prompt": [1, 2, 3] }), "prompt"),
        (json!({ "model": LLM, "prompt": "a", "echo": true }), "echo"),
        (json!({ "model": LLM, "prompt": "a", "best_of": 3 }), "best_of"),
    ] {
        let response = post(&node, "/v1/completions", &key, &body).await;
        let error = openai_error(&response, StatusCode::BAD_REQUEST, "unsupported_parameter");
        assert_eq!(error["param"], param);
    }
    // A prompt longer than the model's context.
    let long = "word ".repeat(5000);
    let response = post(&node, "/v1/completions", &key, &json!({ "model": LLM, "prompt": long })).await;
    let error = openai_error(&response, StatusCode::BAD_REQUEST, "context_length_exceeded");
    assert_eq!(error["param"], "prompt");
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    assert_eq!(ledger, json!([]), "refused requests are not billed");
}

#[tokio::test]
async fn quotas_refuse_or_cap_in_openai_terms() {
    let Some(node) = model_node().await else { return };
    // 12 tokens a month: the prompt and a few more.
    create_tenant(&node, "small", json!({ "monthly_tokens": 12 })).await;
    let key = create_key(&node, "small", "invoke").await;
    let completion = json!({ "model": LLM, "prompt": "Once upon a time", "max_tokens": 100, "temperature": 0 });
    let response = post(&node, "/v1/completions", &key, &completion).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    let usage = &body["usage"];
    assert!(
        usage["total_tokens"].as_u64().unwrap() <= 12,
        "capped by the allowance: {usage}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    // The month is spent now.
    let response = post(&node, "/v1/completions", &key, &completion).await;
    assert_eq!(response.headers["x-should-retry"], "false");
    let error = openai_error(&response, StatusCode::TOO_MANY_REQUESTS, "insufficient_quota");
    assert_eq!(error["type"], "insufficient_quota");

    create_tenant(&node, "slow", json!({ "requests_per_second": 0.001, "burst": 1 })).await;
    let key = create_key(&node, "slow", "invoke").await;
    let tiny = json!({ "model": LLM, "prompt": "a", "max_tokens": 1 });
    assert_eq!(post(&node, "/v1/completions", &key, &tiny).await.status, StatusCode::OK);
    let response = post(&node, "/v1/completions", &key, &tiny).await;
    assert!(response.headers.contains_key("retry-after"));
    openai_error(&response, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");
}

/// The official clients (`openai` on PyPI and npm, pinned in
/// `tests/openai_clients/`) against a node on a real socket. `setup.sh`
/// installs them on first use; without them (no network) the test skips,
/// unless `WAFER_REQUIRE_MODELS=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_clients_python_and_js() {
    let Some(node) = model_node().await else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_clients");
    let setup = tokio::process::Command::new("bash")
        .arg(dir.join("setup.sh"))
        .output()
        .await
        .unwrap();
    if !setup.status.success() {
        let log = String::from_utf8_lossy(&setup.stderr);
        assert!(!require_models(), "installing the openai clients failed:\n{log}");
        eprintln!("skipping: the openai clients could not be installed:\n{log}");
        return;
    }
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_owned();

    create_tenant(&node, "acme", json!({})).await;
    let key = create_key(&node, "acme", "invoke").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = node.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });

    for (program, script) in [(python.as_str(), "client.py"), ("node", "client.mjs")] {
        let output = tokio::process::Command::new(program)
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("WAFER_URL", &url)
            .env("WAFER_KEY", &key)
            .env("WAFER_ADMIN_TOKEN", &node.token)
            .output()
            .await
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("{script}:\n{log}");
        assert!(output.status.success(), "{script} failed:\n{log}");
        assert!(log.contains(" passed, 0 failed"), "{log}");
    }
}
