//! The admin API: deploy, list, versions, roll back, delete, logs.
//!
//! ```text
//! GET    /v1/functions                       list
//! POST   /v1/functions/{name}                deploy (multipart: `spec` JSON + `component` bytes)
//! GET    /v1/functions/{name}                one function
//! DELETE /v1/functions/{name}                delete it and its versions
//! GET    /v1/functions/{name}/versions       every version
//! POST   /v1/functions/{name}/rollback       {"version": N}
//! GET    /v1/functions/{name}/logs           NDJSON; ?tail=N&follow=true
//! GET    /v1/devices                         the device pool: memory and leases per device
//! ```
//!
//! Tenants, keys, usage and prices live in [`super::billing`].

use super::error::ApiError;
use crate::auth::{Principal, Scope};
use crate::logs::LogEntry;
use crate::manifest::FunctionSpec;
use crate::node::Node;
use crate::registry::{DeployError, Deployment, FunctionInfo};
use crate::storage::VersionRecord;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// Log lines returned when `tail` is not given.
const DEFAULT_LOG_TAIL: usize = 100;
/// Room for the multipart framing and the spec around the component bytes.
const MULTIPART_OVERHEAD: usize = 1024 * 1024;

/// The admin routes, mounted under `/v1`.
pub fn router(node: &Node) -> Router<Arc<Node>> {
    let deploy_limit = node
        .config
        .node
        .max_component_size
        .as_usize()
        .saturating_add(MULTIPART_OVERHEAD);
    Router::new()
        .route("/functions", get(list))
        .route(
            "/functions/{name}",
            post(deploy)
                .get(show)
                .delete(delete)
                .layer(DefaultBodyLimit::max(deploy_limit)),
        )
        .route("/functions/{name}/versions", get(versions))
        .route("/functions/{name}/rollback", post(rollback))
        .route("/functions/{name}/logs", get(logs))
        .route("/devices", get(devices))
        .route("/models", get(models))
}

/// The authenticated caller of an admin route.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        node.auth
            .authenticate(header)
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl Caller {
    /// Refuses callers without `scope`.
    pub fn require(&self, scope: Scope, what: &str) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }

    /// Refuses callers that are not the node operator.
    pub fn require_operator(&self, what: &str) -> Result<(), ApiError> {
        if self.0.operator {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }

    /// The tenant a request acts on: the caller's own, or for the operator
    /// the one asked for. Another tenant's name answers 404.
    pub fn tenant(&self, node: &Node, asked: Option<&str>) -> Result<String, ApiError> {
        match asked {
            None => Ok(self.0.tenant.clone()),
            Some(tenant) if self.0.can_access(tenant) && node.billing.has_tenant(tenant) => Ok(tenant.to_owned()),
            Some(tenant) => Err(ApiError::not_found(format!("no tenant named `{tenant}`"))),
        }
    }

    /// The deployment, if it exists and belongs to the caller's tenant. Any
    /// other tenant's function answers exactly like a missing one.
    fn function(&self, node: &Node, name: &str) -> Result<Arc<Deployment>, ApiError> {
        node.registry
            .get(name)
            .filter(|d| self.0.can_access(&d.tenant))
            .ok_or_else(|| no_function(name))
    }
}

fn no_function(name: &str) -> ApiError {
    ApiError::not_found(format!("no function named `{name}`"))
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        let message = error.to_string();
        match error {
            DeployError::InvalidSpec(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", message),
            DeployError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "component_too_large", message)
            }
            DeployError::NotWasm => ApiError::new(StatusCode::BAD_REQUEST, "not_wasm", message),
            DeployError::CoreModule => ApiError::new(StatusCode::BAD_REQUEST, "not_a_component", message),
            DeployError::InvalidComponent(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_component", message),
            DeployError::MissingImports(_) => ApiError::new(StatusCode::BAD_REQUEST, "unsupported_imports", message),
            DeployError::NotHttpHandler(_) => ApiError::new(StatusCode::BAD_REQUEST, "not_http_handler", message),
            DeployError::RouteConflict { .. } => ApiError::new(StatusCode::CONFLICT, "route_conflict", message),
            DeployError::NotFound(_) => ApiError::not_found(message),
            DeployError::Storage(_) | DeployError::Artifacts(_) => ApiError::internal(message),
        }
    }
}

async fn list(State(node): State<Arc<Node>>, caller: Caller) -> Result<Json<Vec<FunctionInfo>>, ApiError> {
    caller.require(Scope::Read, "list functions")?;
    let all = node.registry.list();
    let visible = all
        .into_iter()
        .filter(|f| caller.function(&node, &f.name).is_ok())
        .collect();
    Ok(Json(visible))
}

async fn show(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    caller.require(Scope::Read, "read functions")?;
    Ok(Json(caller.function(&node, &name)?.info()))
}

#[derive(Deserialize)]
struct DeployQuery {
    tenant: Option<String>,
}

async fn deploy(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    caller.require(Scope::Deploy, "deploy functions")?;
    let tenant = caller.tenant(&node, query.tenant.as_deref())?;
    // Another tenant's function of the same name is a conflict the caller
    // must not learn more about.
    if let Some(existing) = node.registry.get(&name)
        && existing.tenant != tenant
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!("the name `{name}` is not available"),
        ));
    }
    let mut spec: Option<FunctionSpec> = None;
    let mut component: Option<Vec<u8>> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(&e.body_text(), e.status()))?
    {
        let field_name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&e.body_text(), e.status()))?;
        match field_name.as_str() {
            "spec" => {
                spec =
                    Some(serde_json::from_slice(&bytes).map_err(|e| {
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_manifest", format!("spec: {e}"))
                    })?);
            }
            "component" => component = Some(bytes.to_vec()),
            other => {
                return Err(ApiError::bad_request(format!("unexpected multipart field `{other}`")));
            }
        }
    }
    let component = component.ok_or_else(|| ApiError::bad_request("missing multipart field `component`"))?;
    let deployment = node
        .registry
        .deploy(&tenant, &name, spec.unwrap_or_default(), component)
        .await?;
    Ok((StatusCode::CREATED, Json(deployment.info())).into_response())
}

fn multipart_error(text: &str, status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "component_too_large",
            "the upload is larger than node.max_component_size",
        )
    } else {
        ApiError::bad_request(format!("bad multipart upload: {text}"))
    }
}

async fn delete(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Deploy, "delete functions")?;
    caller.function(&node, &name)?;
    node.registry.delete(&name).await?;
    node.logs.remove(&name);
    Ok(StatusCode::NO_CONTENT)
}

async fn versions(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    caller.require(Scope::Read, "read functions")?;
    let active = caller.function(&node, &name)?.record.version;
    let versions = node.registry.versions(&name).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|record| VersionView {
                active: record.version == active,
                record,
            })
            .collect(),
    ))
}

/// A version as the API shows it.
#[derive(serde::Serialize)]
struct VersionView {
    #[serde(flatten)]
    record: VersionRecord,
    active: bool,
}

#[derive(Deserialize)]
struct RollbackRequest {
    version: u32,
}

async fn rollback(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<RollbackRequest>,
) -> Result<Json<FunctionInfo>, ApiError> {
    caller.require(Scope::Deploy, "roll back functions")?;
    caller.function(&node, &name)?;
    Ok(Json(node.registry.rollback(&name, request.version).await?.info()))
}

#[derive(Deserialize)]
struct LogQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read, "read logs")?;
    caller.function(&node, &name)?;
    let tail = query.tail.unwrap_or(DEFAULT_LOG_TAIL);
    let content_type = [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")];
    if !query.follow {
        let body: String = node.logs.recent(&name, tail).iter().map(ndjson_line).collect();
        return Ok((content_type, body).into_response());
    }
    let (recent, receiver) = node.logs.follow(&name, tail);
    let backlog = futures::stream::iter(
        recent
            .into_iter()
            .map(|e| Ok::<_, std::convert::Infallible>(ndjson_line(&e))),
    );
    let live = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(entry) => return Some((Ok(ndjson_line(&entry)), receiver)),
                // A slow reader skips ahead rather than holding memory.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let body = axum::body::Body::from_stream(backlog.chain(live));
    Ok((content_type, body).into_response())
}

fn ndjson_line(entry: &LogEntry) -> String {
    let mut line = serde_json::to_string(entry).unwrap_or_default();
    line.push('\n');
    line
}

/// `GET /v1/models`: OpenAI's list shape (`id`, `object`, `created`,
/// `owned_by`), with Wafer's details under `wafer`. Any key may read it.
async fn models(State(node): State<Arc<Node>>, _caller: Caller) -> Json<serde_json::Value> {
    let created = node.started_unix_secs;
    let data: Vec<serde_json::Value> = node
        .models
        .list()
        .into_iter()
        .map(|info| {
            serde_json::json!({
                "id": info.name,
                "object": "model",
                "created": created,
                "owned_by": "wafer",
                "wafer": info,
            })
        })
        .collect();
    Json(serde_json::json!({ "object": "list", "data": data }))
}

/// The device pool as the API shows it.
#[derive(serde::Serialize)]
struct DevicesView {
    cuda: String,
    devices: Vec<wafer_host_apis::tensor::pool::DeviceStats>,
}

async fn devices(State(node): State<Arc<Node>>, caller: Caller) -> Result<Json<DevicesView>, ApiError> {
    caller.require(Scope::Read, "read devices")?;
    Ok(Json(DevicesView {
        cuda: node.devices.cuda_status().to_owned(),
        devices: node.devices.stats(),
    }))
}
