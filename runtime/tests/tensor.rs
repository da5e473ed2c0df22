//! `wafer:ai/tensor` through real guest components (the Rust SDK's `Tensor`
//! inside `test-programs/tensor`), over the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{TestNode, guest, test_config};
use serde_json::{Value, json};
use wafer_runtime::manifest::FunctionSpec;

async fn tensor_node(config: wafer_runtime::config::NodeConfig) -> TestNode {
    let node = TestNode::with_config(config).await;
    let spec = FunctionSpec {
        routes: vec!["/tn".into()],
        ..FunctionSpec::default()
    };
    node.deploy("tn", &spec, &guest("tensor")).await;
    node
}

async fn post(node: &TestNode, path: &str, body: Value) -> (StatusCode, String) {
    let response = node.post(path, body.to_string()).await;
    (response.status, response.text())
}

fn close(actual: &Value, expected: &[f64]) {
    let data: Vec<f64> = actual["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(data.len(), expected.len(), "{actual}");
    for (a, e) in data.iter().zip(expected) {
        assert!((a - e).abs() < 1e-4, "{a} vs {e} in {actual}");
    }
}

#[tokio::test]
async fn guests_compute_on_host_tensors() {
    let node = tensor_node(test_config()).await;
    let (status, text) = post(
        &node,
        "/tn/matmul",
        json!({"a": {"shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}, "b": {"shape": [3, 2], "data": [7, 8, 9, 10, 11, 12]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(result["shape"], json!([2, 2]));
    close(&result, &[58.0, 64.0, 139.0, 154.0]);

    // Broadcasting add, softmax and argmax through the same guest.
    let (_, text) = post(
        &node,
        "/tn/op",
        json!({"op": "add", "x": {"shape": [2, 2], "data": [1, 2, 3, 4]}, "y": {"shape": [2], "data": [10, 20]}}),
    )
    .await;
    close(&serde_json::from_str(&text).unwrap(), &[11.0, 22.0, 13.0, 24.0]);
    let (_, text) = post(
        &node,
        "/tn/op",
        json!({"op": "softmax", "x": {"shape": [1, 2], "data": [0, 0]}}),
    )
    .await;
    close(&serde_json::from_str(&text).unwrap(), &[0.5, 0.5]);
    let (_, text) = post(
        &node,
        "/tn/op",
        json!({"op": "argmax", "x": {"shape": [2, 3], "data": [1, 9, 3, 7, 2, 5]}}),
    )
    .await;
    close(&serde_json::from_str(&text).unwrap(), &[1.0, 0.0]);

    let device = node.get("/tn/device").await.text();
    assert_eq!(device, "cpu:0");
}

#[tokio::test]
async fn guest_mistakes_are_typed_errors_not_traps() {
    let node = tensor_node(test_config()).await;
    let (status, text) = post(&node, "/tn/error-shape", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.starts_with("shape mismatch"), "{text}");
    assert!(
        text.contains("[2, 3]") && text.contains("[4, 5]"),
        "both shapes are named: {text}"
    );
    let (status, text) = post(&node, "/tn/error-data", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.starts_with("invalid argument"), "{text}");
    let (status, text) = post(
        &node,
        "/tn/op",
        json!({"op": "relu", "x": {"shape": [2], "data": [1, 2], "dtype": "i64"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.starts_with("unsupported dtype"), "{text}");
    // The node is fine afterwards.
    assert_eq!(node.get("/tn/device").await.status, StatusCode::OK);
}

#[tokio::test]
async fn live_tensor_limit_obeyed_and_violated() {
    let mut config = test_config();
    config.devices.tensor.max_live_tensors = 50;
    let node = tensor_node(config).await;
    let obeyed: Value = serde_json::from_str(&node.get("/tn/leak?n=50").await.text()).unwrap();
    assert_eq!(obeyed["created"], 50);
    assert!(obeyed["error"].is_null(), "{obeyed}");
    let violated: Value = serde_json::from_str(&node.get("/tn/leak?n=51").await.text()).unwrap();
    assert_eq!(violated["created"], 50);
    let error = violated["error"].as_str().unwrap();
    assert!(
        error.starts_with("over quota") && error.contains("max_live_tensors"),
        "{error}"
    );
}

#[tokio::test]
async fn tensors_are_freed_when_the_invocation_ends() {
    let node = tensor_node(test_config()).await;
    // Tensors kept alive until the guest returns, then released with its store.
    let kept: Value = serde_json::from_str(&node.get("/tn/leak?n=1000").await.text()).unwrap();
    assert_eq!(kept["created"], 1000);
    let devices = node.admin("GET", "/v1/devices", Body::empty(), None).await.json();
    let cpu = &devices["devices"][0];
    assert_eq!(cpu["id"], "cpu:0");
    assert_eq!(
        cpu["invocations"], 0,
        "no tensor memory outlives its invocation: {devices}"
    );
    assert_eq!(cpu["leases"], 0, "{devices}");
    assert!(devices["cuda"].as_str().unwrap().contains("CUDA"), "{devices}");
}

#[tokio::test]
async fn tensor_memory_per_invocation_limit() {
    let mut config = test_config();
    // 1000 one-element f32 tensors need 4000 bytes.
    config.devices.tensor.max_bytes_per_invocation = 4000;
    let node = tensor_node(config).await;
    let obeyed: Value = serde_json::from_str(&node.get("/tn/leak?n=1000").await.text()).unwrap();
    assert!(obeyed["error"].is_null(), "{obeyed}");
    let violated: Value = serde_json::from_str(&node.get("/tn/leak?n=1001").await.text()).unwrap();
    assert_eq!(violated["created"], 1000);
    assert!(
        violated["error"].as_str().unwrap().starts_with("over quota"),
        "{violated}"
    );
}

#[tokio::test]
async fn the_mlp_example_classifies_through_host_tensors() {
    let node = TestNode::start().await;
    let component = common::example_component(&["tensor-mlp"], "tensor_mlp.wasm");
    let spec = FunctionSpec {
        routes: vec!["/mlp".into()],
        ..FunctionSpec::default()
    };
    node.deploy("mlp", &spec, &component).await;
    let inputs = json!({"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]});
    let host: Value = node.post("/mlp", inputs.to_string()).await.json();
    assert_eq!(host["classes"], json!(["setosa", "virginica", "versicolor"]), "{host}");
    let wasm: Value = node.post("/mlp?engine=wasm", inputs.to_string()).await.json();
    assert_eq!(wasm["classes"], host["classes"]);
    let (h, w) = (&host["probabilities"], &wasm["probabilities"]);
    for (row_h, row_w) in h.as_array().unwrap().iter().zip(w.as_array().unwrap()) {
        for (a, b) in row_h.as_array().unwrap().iter().zip(row_w.as_array().unwrap()) {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4, "{h} vs {w}");
        }
    }
}
