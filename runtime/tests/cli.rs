//! The `wafer` binary end to end over a real socket: serve, deploy, list,
//! invoke, logs, versions, rollback, delete, new, build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Server {
    let mut child = Command::new(WAFER)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("WAFER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("wafer serve exited").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn wafer(server: &Server, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(WAFER)
        .args(args)
        .env("WAFER_URL", &server.url)
        .env("WAFER_DATA_DIR", data_dir)
        .env_remove("WAFER_TOKEN")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn cli_manages_functions_on_a_running_node() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path());
    let component = common::guests_dir().join("wafer_test_guests.wasm");
    let component = component.to_str().unwrap();

    let out = ok(wafer(
        &server,
        data.path(),
        &["deploy", component, "--name", "t", "--route", "/t"],
    ));
    assert!(out.contains("deployed t v1"), "{out}");
    // The same bytes and routes again are no new version; new routes are.
    let out = ok(wafer(
        &server,
        data.path(),
        &["deploy", component, "--name", "t", "--route", "/t"],
    ));
    assert!(out.contains("deployed t v1"), "{out}");
    let routes = ["deploy", component, "--name", "t", "--route", "/t", "--route", "/t2"];
    ok(wafer(&server, data.path(), &routes));
    let out = ok(wafer(&server, data.path(), &["list"]));
    assert!(out.contains("t") && out.contains("/t"), "{out}");

    let out = ok(wafer(&server, data.path(), &["invoke", "t", "--path", "/hello"]));
    assert_eq!(out, "hello from guest");
    let out = ok(wafer(
        &server,
        data.path(),
        &["invoke", "t", "--path", "echo", "--data", "ping"],
    ));
    assert_eq!(out, "ping");
    ok(wafer(&server, data.path(), &["invoke", "t", "--path", "log"]));
    let out = ok(wafer(&server, data.path(), &["logs", "t"]));
    assert!(out.contains("stdout line 0") && out.contains("stderr"), "{out}");

    // Errors are the node's message, with a failing exit code.
    let failed = wafer(&server, data.path(), &["invoke", "t", "--path", "trap"]);
    assert!(!failed.status.success());
    let failed = wafer(&server, data.path(), &["deploy", "Cargo.toml", "--name", "bad"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success() && stderr.contains("not a WebAssembly binary"),
        "{stderr}"
    );

    let out = ok(wafer(&server, data.path(), &["versions", "t"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = ok(wafer(&server, data.path(), &["rollback", "t", "1"]));
    assert!(out.contains("v1"), "{out}");
    ok(wafer(&server, data.path(), &["delete", "t"]));
    let out = ok(wafer(&server, data.path(), &["list"]));
    assert!(out.contains("no functions"), "{out}");

    // Without a token the CLI says where to find one.
    let other = tempfile::tempdir().unwrap();
    let failed = wafer(&server, other.path(), &["list"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("WAFER_TOKEN"), "{stderr}");
}

#[test]
fn new_build_deploy_a_rust_function() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("greeter");
    let new = Command::new(WAFER)
        .args(["new", "rust", "greeter", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    ok(new);
    let build = Command::new(WAFER).arg("build").arg(&dir).output().unwrap();
    ok(build);
    let server = serve(data.path());
    ok(wafer(&server, data.path(), &["deploy", dir.to_str().unwrap()]));
    let out = ok(wafer(&server, data.path(), &["invoke", "greeter", "--path", "/x"]));
    assert!(out.contains("Hello from greeter"), "{out}");
}
