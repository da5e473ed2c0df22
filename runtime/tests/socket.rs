//! One test over a real TCP socket: streaming responses arrive as the guest
//! writes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

#[tokio::test]
async fn streamed_response_arrives_chunk_by_chunk() {
    let node = common::TestNode::start().await;
    node.deploy_guests("t", |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = node.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    let mut response = client
        .get(format!("http://{addr}/t/slow?chunks=4&ms=200"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"chunk\n");
    let first_at = started.elapsed();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"chunk\n".repeat(3));
    assert!(
        started.elapsed() >= first_at + Duration::from_millis(400),
        "later chunks must come later: the body is streamed, not buffered"
    );
    let hello = client.get(format!("http://{addr}/t/hello")).send().await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello from guest");
}
