//! Deploying and calling functions through the gateway (`Router::oneshot`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestNode, guest};
use wafer_runtime::manifest::FunctionSpec;

fn spec(routes: &[&str]) -> FunctionSpec {
    FunctionSpec {
        routes: routes.iter().map(|r| r.to_string()).collect(),
        ..FunctionSpec::default()
    }
}

#[tokio::test]
async fn deployed_function_answers_on_its_route() {
    let node = TestNode::start().await;
    let info = node.deploy_guests("t", |_| {}).await;
    assert_eq!(info["version"], 1);
    let response = node.get("/t/hello").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "hello from guest");
    assert!(response.invocation_id().is_some());

    // The guest sees the method, full path, host and headers.
    let request = Request::post("/t/sub/headers?q=1")
        .header("host", "example.com")
        .header("x-test", "yes")
        .body(Body::empty())
        .unwrap();
    let text = node.send(request).await.text();
    assert!(text.contains("method=POST"), "{text}");
    assert!(text.contains("path=/t/sub/headers?q=1"), "{text}");
    assert!(text.contains("authority=example.com"), "{text}");
    assert!(text.contains("x-test=yes"), "{text}");
}

#[tokio::test]
async fn request_bodies_stream_both_ways() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let response = node.post("/t/echo", payload.clone()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.unwrap(), payload);
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let response = node.get("/nothing/here").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.code(), "route_not_found");
    // Segment boundaries: `/t` does not serve `/tx`.
    assert_eq!(node.get("/tx/hello").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn config_reaches_the_guest_as_environment() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| {
        spec.config.insert("GREETING".into(), "bonjour".into());
    })
    .await;
    assert_eq!(node.get("/t/env?key=GREETING").await.text(), "bonjour");
    // Nothing of the host's environment leaks in.
    assert_eq!(node.get("/t/env?key=HOME").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn host_routes_win_over_path_routes() {
    let node = TestNode::start().await;
    node.deploy_guests("any", |spec| spec.routes = vec!["/api".into()])
        .await;
    node.deploy_guests("hosted", |spec| {
        spec.routes = vec!["api.example.com/api".into()];
        spec.config.insert("WHO".into(), "hosted".into());
    })
    .await;
    let request = |host: &str| {
        Request::get("/api/env?key=WHO")
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(node.send(request("api.example.com:8080")).await.text(), "hosted");
    assert_eq!(node.send(request("other.example.com")).await.text(), "unset");
}

#[tokio::test]
async fn admin_api_requires_the_token() {
    let node = TestNode::start().await;
    let response = node.get("/v1/functions").await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.code(), "unauthorized");
    let wrong = Request::get("/v1/functions")
        .header("authorization", "Bearer wafer_admin_wrong")
        .body(Body::empty())
        .unwrap();
    assert_eq!(node.send(wrong).await.status, StatusCode::UNAUTHORIZED);
    let (content_type, body) = common::multipart(&spec(&["/x"]), &guest("guests"));
    let anonymous_deploy = Request::post("/v1/functions/x")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    assert_eq!(node.send(anonymous_deploy).await.status, StatusCode::UNAUTHORIZED);
    assert!(node.node.registry.get("x").is_none());
    let ok = node.admin("GET", "/v1/functions", Body::empty(), None).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn garbage_core_modules_and_unknown_imports_are_refused_clearly() {
    let node = TestNode::start().await;

    let response = node.try_deploy("g", &spec(&["/g"]), b"definitely not wasm").await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.code(), "not_wasm");

    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let response = node.try_deploy("g", &spec(&["/g"]), &core).await;
    assert_eq!(response.code(), "not_a_component");
    assert!(response.text().contains("wasm32-wasip2"), "{}", response.text());

    // A component header with a broken body.
    let mut broken = b"\0asm\x0d\0\x01\0".to_vec();
    broken.extend_from_slice(&[0xff; 64]);
    let response = node.try_deploy("g", &spec(&["/g"]), &broken).await;
    assert_eq!(response.code(), "invalid_component");

    let response = node.try_deploy("g", &spec(&["/g"]), &guest("unknown_import")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.code(), "unsupported_imports");
    assert!(response.text().contains("acme:missing/greeter"), "{}", response.text());

    let response = node
        .try_deploy("g", &spec(&["/g"]), &wat::parse_str("(component)").unwrap())
        .await;
    assert_eq!(response.code(), "not_http_handler");

    // Nothing was stored, and the node still deploys good code.
    assert!(node.node.registry.list().is_empty());
    node.deploy_guests("t", |_| {}).await;
    assert_eq!(node.get("/t/hello").await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_manifests_are_refused_with_the_reason() {
    let node = TestNode::start().await;
    let component = guest("guests");
    for (name, spec, needle) in [
        ("Bad_Name", spec(&["/x"]), "function name"),
        ("x", spec(&["/v1/x"]), "keeps for itself"),
        ("x", spec(&["no-slash"]), "must be"),
    ] {
        let response = node.try_deploy(name, &spec, &component).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
        assert_eq!(response.code(), "invalid_manifest");
        assert!(response.text().contains(needle), "{}", response.text());
    }
    let mut too_much = spec(&["/x"]);
    too_much.limits.memory = Some(wafer_runtime::units::ByteSize::parse("64GiB").unwrap());
    let response = node.try_deploy("x", &too_much, &component).await;
    assert!(response.text().contains("maximum"), "{}", response.text());

    let (content_type, mut body) = common::multipart(&spec(&["/x"]), &component);
    body.truncate(100);
    let response = node
        .admin("POST", "/v1/functions/x", Body::from(body), Some(&content_type))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn route_conflicts_name_the_holder() {
    let node = TestNode::start().await;
    node.deploy_guests("first", |spec| spec.routes = vec!["/shared".into()])
        .await;
    let response = node
        .try_deploy("second", &spec(&["/other", "/shared/"]), &guest("guests"))
        .await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.code(), "route_conflict");
    assert!(response.text().contains("first"), "{}", response.text());
    assert!(node.node.registry.get("second").is_none());
    assert_eq!(node.get("/other/hello").await.status, StatusCode::NOT_FOUND);
    // The holder may redeploy on its own route.
    node.deploy_guests("first", |spec| spec.routes = vec!["/shared".into()])
        .await;
}

#[tokio::test]
async fn versions_rollback_and_delete() {
    let node = TestNode::start().await;
    for greeting in ["one", "two"] {
        node.deploy_guests("t", |spec| {
            spec.config.insert("G".into(), greeting.into());
        })
        .await;
    }
    assert_eq!(node.get("/t/env?key=G").await.text(), "two");
    let versions = node
        .admin("GET", "/v1/functions/t/versions", Body::empty(), None)
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[1]["active"], true);

    let rollback = node
        .admin(
            "POST",
            "/v1/functions/t/rollback",
            Body::from(r#"{"version":1}"#),
            Some("application/json"),
        )
        .await;
    assert_eq!(rollback.status, StatusCode::OK, "{}", rollback.text());
    assert_eq!(node.get("/t/env?key=G").await.text(), "one");
    let missing = node
        .admin(
            "POST",
            "/v1/functions/t/rollback",
            Body::from(r#"{"version":9}"#),
            Some("application/json"),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let deleted = node.admin("DELETE", "/v1/functions/t", Body::empty(), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(node.get("/t/hello").await.status, StatusCode::NOT_FOUND);
    let gone = node.admin("GET", "/v1/functions/t", Body::empty(), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = node.admin("DELETE", "/v1/functions/t", Body::empty(), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn guest_output_is_logged_per_invocation() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let response = node.get("/t/log?lines=2").await;
    assert_eq!(response.status, StatusCode::OK);
    let id = response.invocation_id().unwrap();
    let logs = node
        .admin("GET", "/v1/functions/t/logs", Body::empty(), None)
        .await
        .text();
    let lines: Vec<serde_json::Value> = logs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mine: Vec<_> = lines.iter().filter(|l| l["invocation_id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 4, "{logs}");
    assert!(
        mine.iter()
            .any(|l| l["stream"] == "stdout" && l["line"] == "stdout line 1")
    );
    assert!(
        mine.iter()
            .any(|l| l["stream"] == "stderr" && l["line"] == "stderr line 0")
    );
}

#[tokio::test]
async fn healthz_and_metrics() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    assert_eq!(node.get("/healthz").await.status, StatusCode::OK);
    node.get("/t/hello").await;
    node.get("/t/trap").await;
    let metrics = node.get("/metrics").await.text();
    for needle in [
        "wafer_requests_total{function=\"t\",status=\"200\"} 1",
        "wafer_requests_total{function=\"t\",status=\"500\"} 1",
        "wafer_errors_total{kind=\"trap\"} 1",
        "wafer_instantiation_seconds_count 2",
        "wafer_request_duration_seconds_bucket",
        "wafer_live_instances 0",
        "wafer_compilations_total 1",
    ] {
        assert!(metrics.contains(needle), "missing `{needle}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn logs_follow_streams_new_lines() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let request = Request::get("/v1/functions/t/logs?follow=true&tail=0")
        .header("authorization", format!("Bearer {}", node.token))
        .body(Body::empty())
        .unwrap();
    let response = node.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let id = node.get("/t/log").await.invocation_id().unwrap();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("a followed log line arrives")
        .unwrap()
        .unwrap();
    let line: serde_json::Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
    assert_eq!(line["invocation_id"], id.as_str());
    assert_eq!(line["line"], "stdout line 0");
}
