//! Deploys under load, atomic version switches, restarts and the compiled cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{TestNode, test_config};
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn restart_keeps_functions_and_loads_the_compiled_cache() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |spec| {
        spec.config.insert("G".into(), "persisted".into());
    })
    .await;
    node.deploy_guests("u", |_| {}).await;
    assert_eq!(
        node.node.artifacts.stats.compiled.load(Ordering::Relaxed),
        1,
        "same bytes compile once"
    );
    let token = node.token.clone();
    let TestNode {
        dir,
        node: inner,
        router,
        ..
    } = node;
    drop(router);
    drop(inner);

    let node = TestNode::open(test_config(), dir).await;
    assert_eq!(node.token, token, "the admin token survives restarts");
    assert_eq!(node.get("/t/env?key=G").await.text(), "persisted");
    assert_eq!(node.get("/u/hello").await.status, StatusCode::OK);
    let stats = &node.node.artifacts.stats;
    assert_eq!(
        stats.compiled.load(Ordering::Relaxed),
        0,
        "a restart must not recompile"
    );
    assert_eq!(stats.loaded.load(Ordering::Relaxed), 2);
    assert!(node.get("/metrics").await.text().contains("wafer_compilations_total 0"));
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled() {
    let node = TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let TestNode {
        dir,
        node: inner,
        router,
        ..
    } = node;
    drop(router);
    drop(inner);
    for entry in walk(&dir.path().join("compiled")) {
        std::fs::write(entry, b"garbage").unwrap();
    }
    let node = TestNode::open(test_config(), dir).await;
    assert_eq!(node.get("/t/hello").await.status, StatusCode::OK);
    assert_eq!(node.node.artifacts.stats.compiled.load(Ordering::Relaxed), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_old_version() {
    let node = Arc::new(TestNode::start().await);
    node.deploy_guests("t", |spec| {
        spec.config.insert("G".into(), "old".into());
    })
    .await;
    // A streaming response that takes a while: it started on v1.
    let slow = tokio::spawn({
        let node = node.clone();
        async move { node.get("/t/slow?chunks=5&ms=150").await }
    });
    let deployment = node.node.registry.get("t").unwrap();
    while deployment.concurrency.available_permits() == deployment.limits.max_concurrency as usize {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.deploy_guests("t", |spec| {
        spec.config.insert("G".into(), "new".into());
    })
    .await;
    assert_eq!(node.get("/t/env?key=G").await.text(), "new");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.text(), "chunk\n".repeat(5));
}

#[tokio::test]
async fn concurrent_deploys_and_invocations() {
    let node = Arc::new(TestNode::start().await);
    node.deploy_guests("t", |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            node.deploy_guests("t", |spec| {
                spec.config.insert("N".into(), i.to_string());
            })
            .await;
        }));
    }
    for i in 0..4 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            node.deploy_guests(&format!("other{i}"), |_| {}).await;
        }));
    }
    let mut calls = Vec::new();
    for _ in 0..24 {
        let node = node.clone();
        calls.push(tokio::spawn(async move { node.get("/t/hello").await.status }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    let versions = node
        .admin("GET", "/v1/functions/t/versions", axum::body::Body::empty(), None)
        .await
        .json();
    let numbers: Vec<u64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "every deploy got its own version");
    assert_eq!(node.node.registry.list().len(), 5);
    for i in 0..4 {
        assert_eq!(node.get(&format!("/other{i}/hello")).await.status, StatusCode::OK);
    }
}
