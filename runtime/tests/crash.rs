//! Exactly-once billing across crashes: the node is killed with SIGKILL in
//! the middle of a concurrent load, several times, and restarted. Every
//! response a client received must have exactly one ledger record with the
//! amount its usage header said; nothing is counted twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

fn serve(data_dir: &Path, config: &Path) -> (Child, String) {
    let mut child = Command::new(WAFER)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env("WAFER_LOG", "error")
        .stdout(Stdio::piped())
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
    (child, url)
}

#[derive(Default)]
struct Observed {
    /// invocation id → billed amount, for every response received whole.
    completed: HashMap<String, u64>,
    failed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_bills_each_completed_invocation_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("node.toml");
    std::fs::write(
        &config,
        "[pricing]\nper_invocation = 3\nper_gb_second = 1000000\n[node]\nmax_instances = 32\n[limits]\nmax_concurrency = 32\n",
    )
    .unwrap();
    let data_dir = data.path().join("data");
    let component = common::guests_dir().join("wafer_test_guests.wasm");

    let (mut child, url) = serve(&data_dir, &config);
    let deployed = Command::new(WAFER)
        .args([
            "deploy",
            component.to_str().unwrap(),
            "--name",
            "t",
            "--route",
            "/t",
            "--url",
            &url,
        ])
        .env("WAFER_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );

    let observed = Arc::new(Mutex::new(Observed::default()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for round in 0..3 {
        if round > 0 {
            (child, _) = serve_at(&data_dir, &config, &url);
        }
        let mut clients = Vec::new();
        for worker in 0..8 {
            let (client, url, observed) = (client.clone(), url.clone(), observed.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    n += 1;
                    let path = if (n + worker).is_multiple_of(4) {
                        "/t/alloc?mb=2"
                    } else {
                        "/t/hello"
                    };
                    let response = client.get(format!("{url}{path}")).send().await;
                    let Ok(response) = response else {
                        observed.lock().unwrap().failed += 1;
                        return;
                    };
                    let id = response.headers().get("x-wafer-invocation-id").cloned();
                    let amount = response.headers().get("x-wafer-billed-micros").cloned();
                    let status = response.status();
                    match response.bytes().await {
                        Ok(_) if status.is_success() => {
                            let id = id.unwrap().to_str().unwrap().to_owned();
                            let amount = amount.unwrap().to_str().unwrap().parse().unwrap();
                            observed.lock().unwrap().completed.insert(id, amount);
                        }
                        _ => {
                            observed.lock().unwrap().failed += 1;
                            return;
                        }
                    }
                }
            }));
        }
        // Let the load run, then kill the node mid-flight.
        let target = observed.lock().unwrap().completed.len() + 150;
        while observed.lock().unwrap().completed.len() < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for client in clients {
            client.await.unwrap();
        }
    }

    let (mut child, _) = serve_at(&data_dir, &config, &url);
    let token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let ledger: Vec<serde_json::Value> = client
        .get(format!("{url}/v1/ledger"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let observed = observed.lock().unwrap();
    assert!(observed.completed.len() >= 450, "the load ran");
    let mut by_id: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    for record in &ledger {
        by_id
            .entry(record["invocation_id"].as_str().unwrap())
            .or_default()
            .push(record);
    }
    for (id, amount) in &observed.completed {
        let records = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("completed invocation {id} is not in the ledger"));
        assert_eq!(records.len(), 1, "invocation {id} counted {} times", records.len());
        assert_eq!(records[0]["amount_micros"].as_u64(), Some(*amount), "{id}");
    }
    // Records the clients never saw: invocations whose response was cut by
    // the kill after their usage was committed. At most one per failed request.
    let in_doubt: Vec<_> = by_id
        .keys()
        .filter(|id| !observed.completed.contains_key(**id))
        .collect();
    assert!(
        in_doubt.len() <= observed.failed,
        "{} ledger records without a client response, but only {} requests failed",
        in_doubt.len(),
        observed.failed
    );
    eprintln!(
        "completed {}, failed {}, ledger records {}, in doubt {}",
        observed.completed.len(),
        observed.failed,
        ledger.len(),
        in_doubt.len()
    );
    let headers_total: u64 = observed.completed.values().sum();
    let completed_in_ledger: u64 = ledger
        .iter()
        .filter(|r| observed.completed.contains_key(r["invocation_id"].as_str().unwrap()))
        .map(|r| r["amount_micros"].as_u64().unwrap())
        .sum();
    assert_eq!(headers_total, completed_in_ledger);
}

/// Restarts the node on the same address (so the clients' URL stays valid).
fn serve_at(data_dir: &Path, config: &Path, url: &str) -> (Child, String) {
    let addr = url.trim_start_matches("http://");
    for _ in 0..100 {
        let mut child = Command::new(WAFER)
            .args(["serve", "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .env("WAFER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = lines.any(|line| line.map(|l| l.contains("listening on")).unwrap_or(false));
        if started {
            std::thread::spawn(move || for _ in lines {});
            return (child, url.to_owned());
        }
        // The port may still be held for a moment after the kill.
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot restart the node on {addr}");
}
