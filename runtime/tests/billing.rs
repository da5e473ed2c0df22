//! Tenants, keys, isolation, metering, prices, quotas and the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Response, TestNode, guest, multipart, test_config};
use serde_json::json;
use wafer_runtime::manifest::FunctionSpec;

/// Sends a request with a bearer key.
async fn with_key(
    node: &TestNode,
    key: &str,
    method: &str,
    path: &str,
    body: Body,
    content_type: Option<&str>,
) -> Response {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    node.send(builder.body(body).unwrap()).await
}

async fn create_tenant(node: &TestNode, name: &str, quotas: serde_json::Value) {
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

async fn deploy_as(node: &TestNode, key: &str, name: &str, spec: &FunctionSpec) -> Response {
    let (content_type, body) = multipart(spec, &guest("guests"));
    with_key(
        node,
        key,
        "POST",
        &format!("/v1/functions/{name}"),
        Body::from(body),
        Some(&content_type),
    )
    .await
}

fn spec(route: &str) -> FunctionSpec {
    FunctionSpec {
        routes: vec![route.into()],
        ..FunctionSpec::default()
    }
}

fn billed(response: &Response) -> u64 {
    response
        .headers
        .get("x-wafer-billed-micros")
        .unwrap_or_else(|| panic!("no usage header on {:?}", response.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_others_resources() {
    let node = TestNode::start().await;
    create_tenant(&node, "alpha", json!({})).await;
    create_tenant(&node, "beta", json!({})).await;
    let alpha_deploy = create_key(&node, "alpha", "deploy").await;
    let alpha_read = create_key(&node, "alpha", "read").await;
    let beta_deploy = create_key(&node, "beta", "deploy").await;
    let beta_read = create_key(&node, "beta", "read").await;
    let beta_admin = create_key(&node, "beta", "admin").await;

    assert_eq!(
        deploy_as(&node, &alpha_deploy, "fa", &spec("/fa")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        deploy_as(&node, &beta_deploy, "fb", &spec("/fb")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);

    // Every admin and data route on alpha's function, with beta's keys: 404.
    for (method, path, body) in [
        ("GET", "/v1/functions/fa", None),
        ("DELETE", "/v1/functions/fa", None),
        ("GET", "/v1/functions/fa/versions", None),
        ("POST", "/v1/functions/fa/rollback", Some(r#"{"version":1}"#)),
        ("GET", "/v1/functions/fa/logs", None),
        ("GET", "/v1/usage?tenant=alpha", None),
        ("GET", "/v1/ledger?tenant=alpha", None),
        ("GET", "/v1/invoice?tenant=alpha&period=2026-11", None),
        ("GET", "/v1/keys?tenant=alpha", None),
    ] {
        let body = body.map(Body::from).unwrap_or_else(Body::empty);
        let response = with_key(&node, &beta_admin, method, path, body, Some("application/json")).await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            response.text()
        );
    }
    let listed = with_key(&node, &beta_read, "GET", "/v1/functions", Body::empty(), None)
        .await
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fb"]);
    // Taking alpha's name or route reveals nothing about alpha.
    let taken = deploy_as(&node, &beta_deploy, "fa", &spec("/other")).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(!taken.text().contains("alpha"), "{}", taken.text());
    let route = deploy_as(&node, &beta_deploy, "fb2", &spec("/fa")).await;
    assert_eq!(route.status, StatusCode::CONFLICT);
    assert!(!route.text().contains("`fa`"), "{}", route.text());
    assert!(node.node.registry.get("fa").is_some(), "alpha's function is untouched");

    // Scopes: read cannot deploy, deploy cannot make keys, non-operators cannot make tenants.
    assert_eq!(
        deploy_as(&node, &alpha_read, "fa", &spec("/fa")).await.status,
        StatusCode::FORBIDDEN
    );
    let key_request = Body::from(json!({"scope": "invoke"}).to_string());
    let response = with_key(
        &node,
        &alpha_deploy,
        "POST",
        "/v1/keys",
        key_request,
        Some("application/json"),
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    let tenant_request = Body::from(json!({"name": "gamma"}).to_string());
    let response = with_key(
        &node,
        &beta_admin,
        "POST",
        "/v1/tenants",
        tenant_request,
        Some("application/json"),
    )
    .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    // A tenant admin makes keys for its own tenant only.
    let own = Body::from(json!({"scope": "read"}).to_string());
    let response = with_key(&node, &beta_admin, "POST", "/v1/keys", own, Some("application/json")).await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.json()["tenant"], "beta");
    let other = Body::from(json!({"tenant": "alpha", "scope": "read"}).to_string());
    let response = with_key(&node, &beta_admin, "POST", "/v1/keys", other, Some("application/json")).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoked_and_malformed_keys_are_refused() {
    let node = TestNode::start().await;
    create_tenant(&node, "alpha", json!({})).await;
    let key = create_key(&node, "alpha", "read").await;
    assert_eq!(
        with_key(&node, &key, "GET", "/v1/functions", Body::empty(), None)
            .await
            .status,
        StatusCode::OK
    );
    let keys = node
        .admin("GET", "/v1/keys?tenant=alpha", Body::empty(), None)
        .await
        .json();
    assert!(
        keys[0]["secret_hash"].as_str().unwrap().is_empty(),
        "secrets never leave the node"
    );
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    let revoked = node
        .admin("DELETE", &format!("/v1/keys/{id}"), Body::empty(), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        with_key(&node, &key, "GET", "/v1/functions", Body::empty(), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let tampered = format!("{}0", &key[..key.len() - 1]);
    for bad in ["wk_", "wk_x_y", id.as_str(), &tampered, "wafer_admin_", ""] {
        let response = with_key(&node, bad, "GET", "/v1/functions", Body::empty(), None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let basic = Request::get("/v1/functions")
        .header("authorization", format!("Basic {}", node.token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(node.send(basic).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_functions_need_an_invoke_key_of_their_tenant() {
    let node = TestNode::start().await;
    create_tenant(&node, "alpha", json!({})).await;
    create_tenant(&node, "beta", json!({})).await;
    let alpha_deploy = create_key(&node, "alpha", "deploy").await;
    let alpha_invoke = create_key(&node, "alpha", "invoke").await;
    let alpha_read = create_key(&node, "alpha", "read").await;
    let beta_invoke = create_key(&node, "beta", "invoke").await;
    let mut private = spec("/p");
    private.public = Some(false);
    assert_eq!(
        deploy_as(&node, &alpha_deploy, "p", &private).await.status,
        StatusCode::CREATED
    );

    let anonymous = node.get("/p/hello").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let ok = with_key(&node, &alpha_invoke, "GET", "/p/hello", Body::empty(), None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.text(), "hello from guest");
    let other = with_key(&node, &beta_invoke, "GET", "/p/hello", Body::empty(), None).await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "another tenant sees no such function"
    );
    let wrong_scope = with_key(&node, &alpha_read, "GET", "/p/hello", Body::empty(), None).await;
    assert_eq!(wrong_scope.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn usage_headers_equal_the_ledger() {
    let mut config = test_config();
    config.pricing.per_invocation = 3;
    config.pricing.per_gb_second = 1_000_000;
    let node = TestNode::with_config(config).await;
    node.deploy_guests("t", |_| {}).await;
    let mut total = 0;
    let mut ids = Vec::new();
    for path in ["/t/hello", "/t/alloc?mb=8", "/t/trap", "/nothing"] {
        let response = node.get(path).await;
        if path == "/nothing" {
            assert!(
                response.headers.get("x-wafer-billed-micros").is_none(),
                "no function ran"
            );
            continue;
        }
        let amount = billed(&response);
        assert!(amount >= 3, "{path}: {amount}");
        assert_eq!(response.headers.get("x-wafer-price-version").unwrap(), "1");
        total += amount;
        ids.push(response.invocation_id().unwrap());
    }
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    let records = ledger.as_array().unwrap();
    assert_eq!(records.len(), 3, "one record per invocation");
    for (record, id) in records.iter().zip(&ids) {
        assert_eq!(record["invocation_id"], id.as_str());
        assert_eq!(record["event_id"], format!("{id}:0"));
        assert_eq!(record["tenant"], "default");
        assert!(record["peak_memory_bytes"].as_u64().unwrap() > 0);
        assert!(record["cpu_ns"].as_u64().unwrap() > 0);
        assert!(record["cpu_ns"].as_u64().unwrap() <= record["wall_ns"].as_u64().unwrap());
    }
    // The 8 MiB allocation shows in the peak.
    assert!(records[1]["peak_memory_bytes"].as_u64().unwrap() > 8 << 20);
    let usage = node
        .admin("GET", "/v1/usage?by=function", Body::empty(), None)
        .await
        .json();
    assert_eq!(usage[0]["key"], "t");
    assert_eq!(usage[0]["invocations"], 3);
    assert_eq!(usage[0]["amount_micros"], total);
    let csv = node
        .admin("GET", "/v1/usage?by=day&format=csv", Body::empty(), None)
        .await
        .text();
    assert!(csv.starts_with("tenant,key,invocations"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(&format!(",{total}")), "{csv}");
}

#[tokio::test]
async fn streamed_responses_carry_usage_in_trailers() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut config = test_config();
    config.pricing.per_invocation = 5;
    let node = TestNode::with_config(config).await;
    node.deploy_guests("t", |_| {}).await;
    let request = Request::get("/t/slow?chunks=3&ms=10").body(Body::empty()).unwrap();
    let response = node.router.clone().oneshot(request).await.unwrap();
    assert!(
        response.headers().get("x-wafer-billed-micros").is_none(),
        "unsized: streamed"
    );
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("usage trailers");
    assert_eq!(collected.to_bytes(), "chunk\n".repeat(3));
    assert_eq!(trailers.get("x-wafer-billed-micros").unwrap(), "5");
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    assert_eq!(ledger[0]["amount_micros"], 5);
}

#[tokio::test]
async fn a_price_change_applies_to_invocations_after_it() {
    let mut config = test_config();
    config.pricing.per_invocation = 5;
    let node = TestNode::with_config(config).await;
    node.deploy_guests("t", |_| {}).await;
    for _ in 0..3 {
        assert_eq!(billed(&node.get("/t/hello").await), 5);
    }
    let new_prices = Body::from(json!({"per_invocation": 7}).to_string());
    let response = node
        .admin("PUT", "/v1/pricing", new_prices, Some("application/json"))
        .await;
    assert_eq!(response.json()["version"], 2);
    for _ in 0..2 {
        let response = node.get("/t/hello").await;
        assert_eq!(billed(&response), 7);
        assert_eq!(response.headers.get("x-wafer-price-version").unwrap(), "2");
    }
    let ledger = node.admin("GET", "/v1/ledger", Body::empty(), None).await.json();
    let versions: Vec<u64> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["price_version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 1, 1, 2, 2]);
    let invoice = node
        .admin("GET", "/v1/invoice?period=2026-11", Body::empty(), None)
        .await
        .json();
    // The invoice covers this month only; the run is in it when the clock says November 2026.
    let month = &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..7];
    if month == "2026-11" {
        assert_eq!(invoice["total_micros"], 3 * 5 + 2 * 7);
    }
    let invoice = node
        .admin("GET", &format!("/v1/invoice?period={month}"), Body::empty(), None)
        .await
        .json();
    assert_eq!(invoice["total_micros"], 3 * 5 + 2 * 7);
    // A restart with the configured table does not rewrite history.
    let TestNode {
        dir,
        node: inner,
        router,
        ..
    } = node;
    drop((router, inner));
    let mut config = test_config();
    config.pricing.per_invocation = 5;
    let node = TestNode::open(config, dir).await;
    assert_eq!(
        node.node.billing.prices().0,
        3,
        "the configured table is in force again, as a new version"
    );
    let usage = node.admin("GET", "/v1/usage", Body::empty(), None).await.json();
    assert_eq!(usage[0]["amount_micros"], 29);
}

#[tokio::test]
async fn quota_rate_limit() {
    let node = TestNode::start().await;
    create_tenant(&node, "alpha", json!({"requests_per_second": 0.2, "burst": 2})).await;
    let deploy = create_key(&node, "alpha", "deploy").await;
    deploy_as(&node, &deploy, "fa", &spec("/fa")).await;
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    let refused = node.get("/fa/hello").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    // Other tenants are not affected.
    node.deploy_guests("t", |_| {}).await;
    assert_eq!(node.get("/t/hello").await.status, StatusCode::OK);
}

#[tokio::test]
async fn quota_concurrency() {
    let node = std::sync::Arc::new(TestNode::start().await);
    create_tenant(&node, "alpha", json!({"max_concurrency": 1})).await;
    let deploy = create_key(&node, "alpha", "deploy").await;
    deploy_as(&node, &deploy, "fa", &spec("/fa")).await;
    deploy_as(&node, &deploy, "fb", &spec("/fb")).await;
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    let slow = tokio::spawn({
        let node = node.clone();
        async move { node.get("/fa/sleep?ms=1000").await }
    });
    let deployment = node.node.registry.get("fa").unwrap();
    while deployment.concurrency.available_permits() == deployment.limits.max_concurrency as usize {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = node.get("/fb/hello").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "tenant_concurrency_limit");
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(node.get("/fb/hello").await.status, StatusCode::OK);
}

#[tokio::test]
async fn quota_monthly_budget() {
    let mut config = test_config();
    config.pricing.per_invocation = 4;
    let node = TestNode::with_config(config).await;
    create_tenant(&node, "alpha", json!({"monthly_budget_micros": 10})).await;
    let deploy = create_key(&node, "alpha", "deploy").await;
    deploy_as(&node, &deploy, "fa", &spec("/fa")).await;
    for _ in 0..3 {
        // 0, 4, 8 spent before each call: under the budget.
        assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    }
    let refused = node.get("/fa/hello").await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(refused.code(), "budget_exhausted");
    // Raising the budget lets calls through again.
    let quotas = Body::from(json!({"monthly_budget_micros": 100}).to_string());
    let response = node
        .admin("PUT", "/v1/tenants/alpha/quotas", quotas, Some("application/json"))
        .await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    // Spend survives a restart (it is read back from the ledger).
    let TestNode {
        dir,
        node: inner,
        router,
        ..
    } = node;
    drop((router, inner));
    let mut config = test_config();
    config.pricing.per_invocation = 4;
    let node = TestNode::open(config, dir).await;
    let tenants = node.admin("GET", "/v1/tenants", Body::empty(), None).await.json();
    let alpha = tenants
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha["spent_this_month_micros"], 16);
}

#[tokio::test]
async fn quota_monthly_tokens() {
    let node = TestNode::start().await;
    create_tenant(&node, "alpha", json!({"monthly_tokens": 1000})).await;
    create_tenant(&node, "beta", json!({"monthly_tokens": 0})).await;
    let alpha = create_key(&node, "alpha", "deploy").await;
    let beta = create_key(&node, "beta", "deploy").await;
    deploy_as(&node, &alpha, "fa", &spec("/fa")).await;
    deploy_as(&node, &beta, "fb", &spec("/fb")).await;
    assert_eq!(node.get("/fa/hello").await.status, StatusCode::OK);
    let refused = node.get("/fb/hello").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "token_quota_exceeded");
}

#[tokio::test]
async fn bad_tenant_and_quota_input_is_refused() {
    let node = TestNode::start().await;
    for body in [
        json!({"name": "Bad Name"}),
        json!({"name": "ok", "quotas": {"requests_per_second": -1}}),
        json!({"name": "ok", "quotas": {"max_concurrency": 0}}),
        json!({"name": "ok", "quotas": {"unknown": 1}}),
    ] {
        let response = node
            .admin(
                "POST",
                "/v1/tenants",
                Body::from(body.to_string()),
                Some("application/json"),
            )
            .await;
        assert!(response.status.is_client_error(), "{body}: {}", response.text());
    }
    create_tenant(&node, "ok", json!({})).await;
    let again = node
        .admin(
            "POST",
            "/v1/tenants",
            Body::from(json!({"name": "ok"}).to_string()),
            Some("application/json"),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let bad_scope = node
        .admin(
            "POST",
            "/v1/keys",
            Body::from(json!({"tenant": "ok", "scope": "root"}).to_string()),
            Some("application/json"),
        )
        .await;
    assert!(bad_scope.status.is_client_error());
    let no_tenant = node
        .admin(
            "POST",
            "/v1/keys",
            Body::from(json!({"tenant": "nope", "scope": "read"}).to_string()),
            Some("application/json"),
        )
        .await;
    assert_eq!(no_tenant.status, StatusCode::NOT_FOUND);
}
