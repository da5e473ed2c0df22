//! JavaScript functions: the JS SDK (`sdk/js`) matches `host-apis/wit`, and
//! the JS examples, built with componentize-js, run through the node end to
//! end; `wafer new js` + `wafer build` + `wafer deploy` over a real socket.
//!
//! Needs Node.js 20.6+ with npm (the SDK's packages are installed once with
//! `npm install`). Components are cached by content hash under the target dir
//! (`wafer-js-cache`), so only changed code is componentized again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestNode, test_config};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use wafer_runtime::manifest::Manifest;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The cargo target dir this test binary runs from (`target/debug/deps/js-*`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Installs the SDK's npm packages once (`npm install`, skipped when
/// `node_modules` already matches the lockfile) and returns the SDK's folder.
fn sdk() -> &'static Path {
    static SDK: OnceLock<PathBuf> = OnceLock::new();
    SDK.get_or_init(|| {
        let version = Command::new("node").arg("--version").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "the JavaScript tests need Node.js 20.6+ with npm on the PATH \
             (https://nodejs.org, or `apt-get install nodejs npm`): {version:?}"
        );
        let sdk = repo().join("sdk/js");
        let lock = std::fs::read(sdk.join("package-lock.json")).unwrap();
        let stamp = sdk.join("node_modules/.wafer-lock");
        if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
            run(Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&sdk));
            std::fs::write(&stamp, &lock).unwrap();
        }
        sdk
    })
}

/// Builds `examples/js/NAME` with the SDK's build (once per test binary;
/// across runs the content-hash cache makes it a copy).
fn example(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // Held while building: componentize-js is CPU-heavy, one at a time is faster.
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = built.get(name) {
        return bytes.clone();
    }
    let out = target_dir().join("wafer-js").join(format!("{name}.wasm"));
    let output = run(Command::new("node")
        .arg(sdk().join("bin/wafer-build.mjs"))
        .arg(repo().join("examples/js").join(name))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .env("WAFER_JS_CACHE", target_dir().join("wafer-js-cache")));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let bytes = std::fs::read(result["component"].as_str().unwrap()).unwrap();
    built.insert(name.to_owned(), bytes.clone());
    bytes
}

/// The manifest of `examples/js/NAME`.
fn manifest(name: &str) -> Manifest {
    Manifest::load(&repo().join("examples/js").join(name).join("wafer.toml")).unwrap()
}

/// The names of a component's imports.
fn imports(component: &[u8]) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, component).unwrap();
    component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn sdk_matches_host_apis_wit() {
    let sdk = sdk();
    // The WIT copy and the generated TypeScript declarations are what
    // host-apis/wit makes today.
    run(Command::new("node")
        .arg("scripts/gen.mjs")
        .arg("--check")
        .current_dir(sdk));
    // The SDK's TypeScript (and the TypeScript examples) type-check against them.
    run(Command::new("node")
        .arg("node_modules/typescript/bin/tsc")
        .args(["-p", "tsconfig.json"])
        .current_dir(sdk));
    run(Command::new("node")
        .arg(sdk.join("node_modules/typescript/bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(repo().join("examples/js")));
}

#[test]
fn sdk_unit_tests() {
    let sdk = sdk();
    run(Command::new("node").args(["--test", "test/"]).current_dir(sdk));
}

#[test]
fn components_import_only_what_they_use() {
    let hello = imports(&example("hello"));
    assert!(hello.iter().all(|i| !i.starts_with("wafer:ai/")), "{hello:?}");
    assert!(hello.iter().any(|i| i.starts_with("wasi:config/store")), "{hello:?}");
    let mlp = imports(&example("tensor-mlp"));
    assert!(mlp.iter().any(|i| i == "wafer:ai/tensor@0.1.0"), "{mlp:?}");
    assert!(mlp.iter().all(|i| !i.starts_with("wafer:ai/llm")), "{mlp:?}");
}

async fn deploy_example(node: &TestNode, name: &str) -> Manifest {
    let manifest = manifest(name);
    node.deploy(&manifest.name, &manifest.spec, &example(name)).await;
    manifest
}

#[tokio::test]
async fn hello_js_end_to_end() {
    let node = TestNode::with_config(test_config()).await;
    deploy_example(&node, "hello").await;

    let response = node.get("/hello-js/there").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    // GREETING comes from the manifest's [config] through wasi:config/store.
    assert_eq!(response.text(), "Hello from Wafer (JavaScript)! path=/hello-js/there\n");

    let response = node.post("/hello-js/echo?q=1", r#"{"a":[1,2]}"#).await;
    assert_eq!(
        response.json(),
        json!({"received": {"a": [1, 2]}, "method": "POST", "query": {"q": "1"}})
    );
    let response = node.post("/hello-js/echo", "not json").await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.code(), "bad_request");

    let response = node.get("/hello-js/users/a%20b").await;
    assert_eq!(response.json(), json!({"id": "a b"}));

    let response = node.get("/hello-js/stream?n=50").await;
    assert_eq!(response.status, StatusCode::OK);
    let expected: String = (0..50).map(|i| format!("line {i}\n")).collect();
    assert_eq!(response.text(), expected);

    let request = Request::put("/hello-js/echo").body(Body::empty()).unwrap();
    let response = node.send(request).await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers["allow"], "GET, POST");

    // An uncaught error: a JSON 500 for the client, the stack in the logs.
    let response = node.get("/hello-js/fail").await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.code(), "internal");
    let id = response.invocation_id().unwrap();
    let logs = node
        .admin("GET", "/v1/functions/hello-js/logs", Body::empty(), None)
        .await
        .text();
    assert!(
        logs.lines()
            .any(|l| l.contains(&id) && l.contains("this handler fails on purpose")),
        "{logs}"
    );

    // Each request is a fresh instance: many in a row all answer.
    for i in 0..20 {
        let response = node.get(&format!("/hello-js/{i}")).await;
        assert_eq!(response.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn tensor_mlp_js_matches_numpy() {
    let node = TestNode::with_config(test_config()).await;
    deploy_example(&node, "tensor-mlp").await;
    let weights: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/tensor-mlp/weights.json")).unwrap())
            .unwrap();
    let vectors = weights["test_vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    let inputs: Vec<Value> = vectors.iter().map(|v| v["input"].clone()).collect();

    for engine in ["host", "wasm"] {
        let response = node
            .post(
                &format!("/mlp-js?engine={engine}"),
                json!({ "inputs": inputs }).to_string(),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        assert!(response.headers.contains_key("x-forward-ns"));
        let out = response.json();
        assert_eq!(out["engine"], engine);
        if engine == "host" {
            assert_eq!(out["device"], "cpu:0");
        }
        for (i, v) in vectors.iter().enumerate() {
            assert_eq!(out["classes"][i], v["predicted"], "{out}");
            let got = out["probabilities"][i].as_array().unwrap();
            let want = v["probabilities"].as_array().unwrap();
            for (g, w) in got.iter().zip(want) {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!((g - w).abs() < 1e-4, "{engine}: {g} vs numpy {w}");
            }
        }
    }

    let usage = node.get("/mlp-js").await;
    assert!(usage.text().contains("POST /mlp-js"), "{}", usage.text());
    for bad in [
        "not json".to_owned(),
        json!({"inputs": []}).to_string(),
        json!({"inputs": [[1, 2, 3]]}).to_string(),
        json!({"inputs": [[1, 2, 3, "x"]]}).to_string(),
        json!({ "inputs": vec![[1, 2, 3, 4]; 1025] }).to_string(),
    ] {
        let response = node.post("/mlp-js", bad.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}: {}", response.text());
        assert_eq!(response.code(), "bad_request");
    }
    let response = node
        .post("/mlp-js?engine=gpu", json!({"inputs": [[1, 2, 3, 4]]}).to_string())
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

/// The chat and semantic-search examples build against the llm/embeddings
/// WIT and import exactly those interfaces (they run once the node serves them).
#[test]
fn model_examples_build_against_the_wit() {
    let chat = imports(&example("chat"));
    assert!(chat.iter().any(|i| i == "wafer:ai/llm@0.1.0"), "{chat:?}");
    assert!(chat.iter().all(|i| !i.starts_with("wafer:ai/tensor")), "{chat:?}");
    let search = imports(&example("semantic-search"));
    assert!(search.iter().any(|i| i == "wafer:ai/embeddings@0.1.0"), "{search:?}");
    assert!(search.iter().all(|i| !i.starts_with("wafer:ai/tensor")), "{search:?}");
}

/// A `wafer serve` child process on a free port.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Server {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("WAFER_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("wafer serve exited").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// `wafer new js` scaffolds a function that `wafer build` builds (npm
/// install included) and `wafer deploy` deploys from its folder.
#[test]
fn wafer_new_build_deploy_js() {
    let sdk = sdk();
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let wafer = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wafer"));
        command
            .args(args)
            .current_dir(work.path())
            .env("WAFER_JS_SDK_PATH", sdk)
            .env("WAFER_JS_CACHE", target_dir().join("wafer-js-cache"))
            .env("WAFER_DATA_DIR", data.path())
            .env_remove("WAFER_TOKEN");
        command
    };
    for typescript in [false, true] {
        let name = if typescript { "greeter-ts" } else { "greeter-js" };
        let mut args = vec!["new", "js", name];
        if typescript {
            args.push("--typescript");
        }
        run(&mut wafer(&args));
        let dir = work.path().join(name);
        let entry = if typescript { "src/index.ts" } else { "src/index.js" };
        assert!(dir.join(entry).exists() && dir.join("wafer.toml").exists());
        let out = run(&mut wafer(&["build", name]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("dist/{name}.wasm")), "{stdout}");
        // The scaffold's project is a plain npm package depending on the SDK.
        assert!(dir.join("node_modules/@wafer/sdk").exists());
    }
    // Refuses a non-empty folder.
    let again = wafer(&["new", "js", "greeter-js"]).output().unwrap();
    assert!(!again.status.success());

    let server = serve(data.path());
    for name in ["greeter-js", "greeter-ts"] {
        let out = run(wafer(&["deploy", name]).env("WAFER_URL", &server.url));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("deployed {name} v1")));
        let out = run(wafer(&["invoke", name, "--path", "/json?who=js"]).env("WAFER_URL", &server.url));
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body, json!({"hello": "js", "path": format!("/{name}/json")}));
        let out = run(wafer(&["invoke", name, "--path", "/x"]).env("WAFER_URL", &server.url));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Hello from {name}! You asked for /{name}/x\n")
        );
    }
}

/// Without Node.js, `wafer build` on a JS folder says how to install it.
#[test]
fn wafer_build_js_without_node_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wafer"))
        .arg("build")
        .arg(dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs Node.js") && stderr.contains("nodejs.org"),
        "{stderr}"
    );
}

/// A node serving the demo models, or `None` when they were not pulled.
async fn model_node() -> Option<TestNode> {
    Some(TestNode::with_config(common::demo_models_config()?).await)
}

#[tokio::test]
async fn chat_and_semantic_search_js_run_on_the_models() {
    let Some(node) = model_node().await else { return };
    deploy_example(&node, "chat").await;
    let ask = |stream: bool| {
        json!({ "messages": [{ "role": "system", "content": "You are a helpful assistant." },
                             { "role": "user", "content": "What is the capital of France?" }],
                "temperature": 0, "max_tokens": 48, "stream": stream })
        .to_string()
    };
    let response = node.post("/chat-js", ask(false)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let reply = response.json();
    assert!(reply["reply"].as_str().unwrap().contains("Paris"), "{reply}");
    assert_eq!(reply["finish_reason"], "stop", "{reply}");
    let tokens_out = reply["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(response.headers["x-wafer-tokens-out"], tokens_out.to_string().as_str());

    let response = node.post("/chat-js", ask(true)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.text();
    let streamed: String = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, reply["reply"].as_str().unwrap(), "{body}");
    assert!(body.contains("event: done"), "{body}");

    deploy_example(&node, "semantic-search").await;
    let response = node.get("/search-js?q=kittens&k=2").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let results = response.json();
    assert_eq!(results["results"].as_array().unwrap().len(), 2, "{results}");
    assert!(results["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{results}");
}
