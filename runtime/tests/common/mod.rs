//! Shared test harness: builds the guest programs once, starts nodes in
//! temporary data dirs and calls them through `Router::oneshot`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use wafer_runtime::config::NodeConfig;
use wafer_runtime::gateway;
use wafer_runtime::manifest::FunctionSpec;
use wafer_runtime::node::Node;

pub const TOKEN_HEADER: &str = "authorization";

/// Builds `test-programs` for wasm32-wasip2 once per test binary (cargo's
/// own lock serialises parallel test binaries) and returns the output dir.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-programs");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(&root)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("run cargo to build test-programs");
        assert!(
            status.success(),
            "building test-programs failed (is `rustup target add wasm32-wasip2` done?)"
        );
        root.join("target/wasm32-wasip2/release")
    })
}

/// The bytes of a guest component (`guests`, `unknown_import`).
pub fn guest(name: &str) -> Vec<u8> {
    let file = match name {
        "guests" => "wafer_test_guests.wasm",
        "unknown_import" => "wafer_test_unknown_import.wasm",
        "tensor" => "wafer_test_tensor.wasm",
        other => panic!("no guest {other}"),
    };
    std::fs::read(guests_dir().join(file)).expect("read guest component")
}

/// Builds crates of the `examples` workspace for wasm32-wasip2 and returns
/// the component `file` (cargo's lock serialises parallel test binaries).
pub fn example_component(packages: &[&str], file: &str) -> Vec<u8> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut args = vec!["build", "--release", "--target", "wasm32-wasip2", "--quiet"];
    for package in packages {
        args.extend(["-p", package]);
    }
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .current_dir(&examples)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo to build the examples");
    assert!(status.success(), "building examples {packages:?} failed");
    std::fs::read(examples.join("target/wasm32-wasip2/release").join(file)).expect("read the example's component")
}

/// The demo models' catalog names.
pub const DEMO_LLM: &str = "smollm2-135m-instruct";
pub const DEMO_EMBED: &str = "all-minilm-l6-v2";

/// `test_config()` serving both demo models (the decoder with a short
/// context and a small cache), or `None` (skip, with a note) when they were
/// not pulled; `WAFER_REQUIRE_MODELS=1` (set by `./dev.sh test`) makes that
/// a failure.
pub fn demo_models_config() -> Option<NodeConfig> {
    let dir = std::env::var_os("WAFER_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(wafer_runtime::config::default_models_dir);
    let mut config = test_config();
    for name in [DEMO_LLM, DEMO_EMBED] {
        let path = dir.join(wafer_runtime::catalog::find(name).unwrap().path);
        if !path.exists() {
            assert!(
                std::env::var_os("WAFER_REQUIRE_MODELS").is_none_or(|v| v != "1"),
                "{} is missing: run `wafer models pull`",
                path.display()
            );
            eprintln!("skipping: {} not pulled", path.display());
            return None;
        }
        let mut model = wafer_host_apis::model::ModelConfig::at(path);
        if name == DEMO_LLM {
            model.max_context = Some(1024);
            model.kv_cache_mib = Some(64);
        }
        config.models.insert(name.into(), model);
    }
    Some(config)
}

/// A node in a temporary data dir.
pub struct TestNode {
    pub node: Arc<Node>,
    pub router: axum::Router,
    pub token: String,
    pub dir: tempfile::TempDir,
}

/// A small node config: few instance slots so tests stay light.
pub fn test_config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.node.max_instances = 32;
    config.limits.max_concurrency = 32;
    config
}

impl TestNode {
    pub async fn start() -> Self {
        Self::with_config(test_config()).await
    }

    pub async fn with_config(config: NodeConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(config, dir).await
    }

    pub async fn open(config: NodeConfig, dir: tempfile::TempDir) -> Self {
        let (node, token) = Node::open(config, dir.path()).await.expect("open node");
        let token = token.unwrap_or_else(|| {
            std::fs::read_to_string(dir.path().join("admin-token"))
                .unwrap()
                .trim()
                .to_owned()
        });
        let router = gateway::router(node.clone());
        Self {
            node,
            router,
            token,
            dir,
        }
    }

    /// Sends a request through the router.
    pub async fn send(&self, request: Request<Body>) -> Response {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.map(|b| b.to_bytes().to_vec());
        Response { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Body>) -> Response {
        self.send(Request::post(path).body(body.into()).unwrap()).await
    }

    /// An admin request with the token.
    pub async fn admin(&self, method: &str, path: &str, body: Body, content_type: Option<&str>) -> Response {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(TOKEN_HEADER, format!("Bearer {}", self.token));
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        self.send(builder.body(body).unwrap()).await
    }

    /// Deploys through the admin API and returns the response.
    pub async fn try_deploy(&self, name: &str, spec: &FunctionSpec, component: &[u8]) -> Response {
        let (content_type, body) = multipart(spec, component);
        self.admin(
            "POST",
            &format!("/v1/functions/{name}"),
            Body::from(body),
            Some(&content_type),
        )
        .await
    }

    /// Deploys and asserts success.
    pub async fn deploy(&self, name: &str, spec: &FunctionSpec, component: &[u8]) -> serde_json::Value {
        let response = self.try_deploy(name, spec, component).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "deploy {name}: {}",
            response.text()
        );
        response.json()
    }

    /// Deploys the test guest at `/t` (or the given routes) with a spec tweak.
    pub async fn deploy_guests(&self, name: &str, tweak: impl FnOnce(&mut FunctionSpec)) -> serde_json::Value {
        let mut spec = FunctionSpec {
            routes: vec![format!("/{name}")],
            ..FunctionSpec::default()
        };
        tweak(&mut spec);
        self.deploy(name, &spec, &guest("guests")).await
    }
}

/// A collected response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    /// The body, or the error that cut it.
    pub body: Result<Vec<u8>, axum::Error>,
}

impl Response {
    pub fn text(&self) -> String {
        match &self.body {
            Ok(body) => String::from_utf8_lossy(body).into_owned(),
            Err(e) => format!("<body error: {e}>"),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The stable error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn invocation_id(&self) -> Option<String> {
        self.headers
            .get("x-wafer-invocation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A multipart body the way `wafer deploy` sends it.
pub fn multipart(spec: &FunctionSpec, component: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wafer-test-boundary-7d1c";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\nContent-Type: application/json\r\n\r\n{}\r\n",
            serde_json::to_string(spec).unwrap()
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"c.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
