//! Every limit with a pair of tests: just inside is served, outside gets a
//! clear JSON error; after each failure the node keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::TestNode;
use futures::StreamExt;
use std::time::Duration;
use wafer_runtime::units::{ByteSize, HumanDuration};

async fn still_serving(node: &TestNode, name: &str) {
    let response = node.get(&format!("/{name}/hello")).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "node stopped serving: {}",
        response.text()
    );
}

#[tokio::test]
async fn timeout_stops_a_computing_guest() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| {
        spec.limits.timeout = Some(HumanDuration(Duration::from_millis(300)))
    })
    .await;
    let response = node.get("/t/loop").await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT, "{}", response.text());
    assert_eq!(response.code(), "timeout");
    assert!(response.json()["error"]["invocation_id"].is_string());
    // Obeyed: work that fits the limit is served.
    assert_eq!(node.get("/t/recurse?depth=1000").await.status, StatusCode::OK);
    still_serving(&node, "t").await;
    // The timeout is in the function's log.
    let logs = node
        .admin("GET", "/v1/functions/t/logs", Body::empty(), None)
        .await
        .text();
    assert!(logs.contains("timed out"), "{logs}");
}

#[tokio::test]
async fn timeout_bounds_host_waits() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| {
        spec.limits.timeout = Some(HumanDuration(Duration::from_millis(300)))
    })
    .await;
    assert_eq!(node.get("/t/sleep?ms=20").await.text(), "slept");
    let response = node.get("/t/sleep?ms=60000").await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.code(), "timeout");
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn memory_limit_refuses_growth() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| spec.limits.memory = Some(ByteSize::mib(48)))
        .await;
    let ok = node.get("/t/alloc?mb=16").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let response = node.get("/t/alloc?mb=64").await;
    assert_eq!(
        response.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        response.text()
    );
    assert_eq!(response.code(), "memory_limit_exceeded");
    assert!(response.text().contains("48MiB"), "{}", response.text());
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn traps_answer_500_with_an_invocation_id_in_the_logs() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let response = node.get("/t/trap").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.code(), "trap");
    let id = response.json()["error"]["invocation_id"].as_str().unwrap().to_owned();
    assert_eq!(response.invocation_id().as_deref(), Some(id.as_str()));
    // The guest's panic message and the trap are logged under that id; the
    // client sees no internals.
    assert!(!response.text().contains("guest asked to trap"));
    let logs = node
        .admin("GET", "/v1/functions/t/logs", Body::empty(), None)
        .await
        .text();
    let mine: Vec<&str> = logs.lines().filter(|l| l.contains(&id)).collect();
    assert!(mine.iter().any(|l| l.contains("guest asked to trap")), "{logs}");
    assert!(
        mine.iter().any(|l| l.contains("\"system\"") && l.contains("trap")),
        "{logs}"
    );
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn deep_recursion_is_a_trap_not_a_crash() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    assert_eq!(node.get("/t/recurse?depth=100").await.status, StatusCode::OK);
    let response = node.get("/t/recurse?depth=100000000").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.code(), "trap");
    assert!(response.text().contains("stack overflow"), "{}", response.text());
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn request_body_limit() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| spec.limits.max_request_body = Some(ByteSize(1000)))
        .await;
    let ok = node.post("/t/read-body", vec![1u8; 1000]).await;
    assert_eq!(ok.text(), "1000");
    // Declared too large: refused before the guest runs.
    let response = node.post("/t/read-body", vec![1u8; 1001]).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.code(), "request_too_large");
    // Streamed without a length: cut while the guest reads.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![2u8; 400])).collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let response = node.send(Request::post("/t/read-body").body(body).unwrap()).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", response.text());
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn response_body_limit() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| spec.limits.max_response_body = Some(ByteSize::mib(1)))
        .await;
    let ok = node.get("/t/huge?mb=1").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body.as_ref().map(Vec::len).ok(), Some(1 << 20));
    let cut = node.get("/t/huge?mb=3").await;
    assert!(cut.body.is_err(), "a body over the limit must not arrive whole");
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn function_concurrency_limit() {
    let node = std::sync::Arc::new(TestNode::start().await);
    node.deploy_guests("t", |spec| spec.limits.max_concurrency = Some(1))
        .await;
    let slow = tokio::spawn({
        let node = node.clone();
        async move { node.get("/t/sleep?ms=1500").await }
    });
    // Wait until the slow invocation holds the only slot.
    let deployment = node.node.registry.get("t").unwrap();
    while deployment.concurrency.available_permits() != 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = node.get("/t/hello").await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.code(), "concurrency_limit");
    assert_eq!(response.headers.get("retry-after").unwrap(), "1");
    assert_eq!(slow.await.unwrap().text(), "slept");
    still_serving(&node, "t").await;
}

#[tokio::test]
async fn node_instance_limit() {
    let mut config = common::test_config();
    config.node.max_instances = 1;
    config.limits.max_concurrency = 1;
    let node = std::sync::Arc::new(TestNode::with_config(config).await);
    node.deploy_guests("a", |_| {}).await;
    node.deploy_guests("b", |_| {}).await;
    let slow = tokio::spawn({
        let node = node.clone();
        async move { node.get("/a/sleep?ms=1500").await }
    });
    while node.node.instances.available_permits() != 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let response = node.get("/b/hello").await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.code(), "overloaded");
    assert_eq!(slow.await.unwrap().text(), "slept");
    still_serving(&node, "b").await;
}

#[tokio::test]
async fn log_budget_truncates_with_a_marker() {
    let mut config = common::test_config();
    config.limits.max_log_bytes = ByteSize(200);
    let node = TestNode::with_config(config).await;
    node.deploy_guests("t", |_| {}).await;
    node.get("/t/log?lines=2").await;
    let logs = node
        .admin("GET", "/v1/functions/t/logs", Body::empty(), None)
        .await
        .text();
    assert!(!logs.contains("truncated"), "{logs}");
    let response = node.get("/t/log?lines=1000").await;
    assert_eq!(response.status, StatusCode::OK, "a chatty guest still runs");
    let logs = node
        .admin("GET", "/v1/functions/t/logs?tail=1000", Body::empty(), None)
        .await
        .text();
    assert!(logs.contains("output truncated"), "{logs}");
    assert!(logs.lines().count() < 40, "at most ~200 bytes of output were kept");
}

#[tokio::test]
async fn deploy_size_limit() {
    let mut config = common::test_config();
    let component = common::guest("guests");
    config.node.max_component_size = ByteSize(component.len() as u64);
    let node = TestNode::with_config(config).await;
    node.deploy_guests("t", |_| {}).await;
    let mut bigger = component.clone();
    bigger.push(0);
    let spec = wafer_runtime::manifest::FunctionSpec {
        routes: vec!["/u".into()],
        ..Default::default()
    };
    let response = node.try_deploy("u", &spec, &bigger).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", response.text());
    assert_eq!(response.code(), "component_too_large");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_times_out() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| {
        spec.limits.timeout = Some(HumanDuration(Duration::from_millis(300)))
    })
    .await;
    let first = futures::stream::iter([Ok::<_, std::io::Error>(vec![1u8; 10])]);
    let body = Body::from_stream(first.chain(futures::stream::pending()));
    let response = node.send(Request::post("/t/read-body").body(body).unwrap()).await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT, "{}", response.text());
    // A slow but finite body within the limit is fine.
    let chunks = futures::stream::iter(0..3).then(|_| async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok::<_, std::io::Error>(vec![1u8; 10])
    });
    let response = node
        .send(Request::post("/t/read-body").body(Body::from_stream(chunks)).unwrap())
        .await;
    assert_eq!(response.text(), "30");
    still_serving(&node, "t").await;
}
