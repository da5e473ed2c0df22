//! Tenants, API keys, usage, invoices and prices.
//!
//! ```text
//! POST   /v1/tenants                      {"name": "...", "quotas": {...}}     operator
//! GET    /v1/tenants                      operator: all; others: their own
//! PUT    /v1/tenants/{name}/quotas        {...}                                operator
//! POST   /v1/keys                         {"tenant": "...", "scope": "invoke"}  admin scope
//! GET    /v1/keys                         ?tenant=
//! DELETE /v1/keys/{id}
//! GET    /v1/usage                        ?tenant=&since=&until=&by=tenant|function|model|day&format=json|csv
//! GET    /v1/ledger                       raw records: ?tenant=&since=&until=
//! GET    /v1/invoice                      ?tenant=&period=YYYY-MM&format=json|csv
//! GET    /v1/pricing                      the table in force and its version
//! PUT    /v1/pricing                      a new version                         operator
//! ```

use super::admin::Caller;
use super::error::ApiError;
use crate::auth::Scope;
use crate::billing::pricing::PriceTable;
use crate::billing::quotas::TenantQuotas;
use crate::billing::{BillingError, NewKey, TenantView};
use crate::node::Node;
use crate::storage::{KeyRecord, UsageFilter, UsageGrouping, UsageRow};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// The billing routes, mounted under `/v1`.
pub fn router() -> Router<Arc<Node>> {
    Router::new()
        .route("/tenants", post(create_tenant).get(list_tenants))
        .route("/tenants/{name}/quotas", put(set_quotas))
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", delete(revoke_key))
        .route("/usage", get(usage))
        .route("/ledger", get(ledger))
        .route("/invoice", get(invoice))
        .route("/pricing", get(pricing).put(set_pricing))
}

impl From<BillingError> for ApiError {
    fn from(error: BillingError) -> Self {
        match error {
            BillingError::Invalid(message) => ApiError::bad_request(message),
            BillingError::NotFound(message) => ApiError::not_found(message),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    #[serde(default)]
    quotas: TenantQuotas,
}

async fn create_tenant(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(request): Json<CreateTenant>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_operator("create tenants")?;
    node.billing.create_tenant(&request.name, request.quotas)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "name": request.name }))))
}

async fn list_tenants(State(node): State<Arc<Node>>, caller: Caller) -> Result<Json<Vec<TenantView>>, ApiError> {
    caller.require(Scope::Read, "list tenants")?;
    let tenants = node.billing.tenants()?;
    Ok(Json(
        tenants.into_iter().filter(|t| caller.0.can_access(&t.name)).collect(),
    ))
}

async fn set_quotas(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(quotas): Json<TenantQuotas>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator("change quotas")?;
    node.billing.set_quotas(&name, quotas)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    tenant: Option<String>,
    scope: Scope,
}

async fn create_key(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(request): Json<CreateKey>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    caller.require(Scope::Admin, "create keys (it needs the `admin` scope)")?;
    let tenant = caller.tenant(&node, request.tenant.as_deref())?;
    let key = node.billing.create_key(&tenant, request.scope)?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

async fn list_keys(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(query): Query<TenantQuery>,
) -> Result<Json<Vec<KeyRecord>>, ApiError> {
    caller.require(Scope::Admin, "list keys (it needs the `admin` scope)")?;
    let filter = match (&query.tenant, caller.0.operator) {
        (None, true) => None,
        (asked, _) => Some(caller.tenant(&node, asked.as_deref())?),
    };
    Ok(Json(node.billing.keys(filter.as_deref())?))
}

async fn revoke_key(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Admin, "revoke keys (it needs the `admin` scope)")?;
    let tenant = (!caller.0.operator).then(|| caller.0.tenant.clone());
    node.billing.revoke_key(&id, tenant.as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct UsageQuery {
    tenant: Option<String>,
    /// RFC 3339 time or `YYYY-MM-DD`.
    since: Option<String>,
    until: Option<String>,
    by: Option<UsageGrouping>,
    format: Option<String>,
}

/// Parses `2026-11-23` or `2026-11-23T10:00:00Z` to ms since the epoch.
fn parse_time(text: &str) -> Result<u64, ApiError> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| ApiError::bad_request(format!("`{text}` is not a date (use YYYY-MM-DD or RFC 3339)")))
}

/// The filter for a caller: others than the operator only see their tenant.
fn usage_filter(node: &Node, caller: &Caller, query: &UsageQuery) -> Result<UsageFilter, ApiError> {
    let tenant = match (&query.tenant, caller.0.operator) {
        (None, true) => None,
        (asked, _) => Some(caller.tenant(node, asked.as_deref())?),
    };
    Ok(UsageFilter {
        tenant,
        since_ms: query.since.as_deref().map(parse_time).transpose()?,
        until_ms: query.until.as_deref().map(parse_time).transpose()?,
    })
}

async fn usage(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read, "read usage")?;
    let filter = usage_filter(&node, &caller, &query)?;
    let grouping = query.by.unwrap_or(UsageGrouping::Tenant);
    let rows = blocking(node.clone(), move |node| node.billing.usage(&filter, grouping)).await?;
    match query.format.as_deref() {
        Some("csv") => Ok(csv_response(&rows)),
        None | Some("json") => Ok(Json(rows).into_response()),
        Some(other) => Err(ApiError::bad_request(format!("format `{other}`: use json or csv"))),
    }
}

async fn ledger(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Vec<crate::storage::LedgerRecord>>, ApiError> {
    caller.require(Scope::Read, "read the ledger")?;
    let filter = usage_filter(&node, &caller, &query)?;
    Ok(Json(
        blocking(node.clone(), move |node| node.billing.ledger(&filter)).await?,
    ))
}

async fn blocking<T: Send + 'static>(
    node: Arc<Node>,
    work: impl FnOnce(&Node) -> Result<T, BillingError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || work(&node))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

fn csv_response(rows: &[UsageRow]) -> Response {
    let mut text = String::from(
        "tenant,key,invocations,wall_ns,cpu_ns,gb_seconds,tokens_in,tokens_out,embedding_tokens,device_ns,amount_micros\n",
    );
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.tenant),
            csv_field(r.key.as_deref().unwrap_or("")),
            r.invocations,
            r.wall_ns,
            r.cpu_ns,
            r.gb_seconds,
            r.tokens_in,
            r.tokens_out,
            r.embedding_tokens,
            r.device_ns,
            r.amount_micros
        ));
    }
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[derive(Deserialize)]
struct InvoiceQuery {
    tenant: Option<String>,
    /// `YYYY-MM`.
    period: String,
    format: Option<String>,
}

/// An invoice: a tenant's usage in one calendar month, by function and model.
#[derive(Serialize)]
struct Invoice {
    tenant: String,
    period: String,
    currency_unit: &'static str,
    lines: Vec<UsageRow>,
    total_micros: u64,
}

async fn invoice(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Query(query): Query<InvoiceQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read, "read invoices")?;
    let tenant = caller.tenant(&node, query.tenant.as_deref())?;
    let (start, end) = month_bounds(&query.period)?;
    let filter = UsageFilter {
        tenant: Some(tenant.clone()),
        since_ms: Some(start),
        until_ms: Some(end),
    };
    let (by_function, by_model) = blocking(node.clone(), move |node| {
        Ok((
            node.billing.usage(&filter, UsageGrouping::Function)?,
            node.billing.usage(&filter, UsageGrouping::Model)?,
        ))
    })
    .await?;
    // Invocation costs per function; token costs per model (seq > 0 rows
    // carry the model, seq 0 rows carry "(none)").
    let mut lines: Vec<UsageRow> = by_function
        .into_iter()
        .map(|mut row| {
            row.key = row.key.map(|k| format!("function:{k}"));
            row
        })
        .collect();
    lines.retain(|row| row.invocations > 0 || row.amount_micros > 0);
    let total_micros = lines.iter().map(|r| r.amount_micros).sum();
    let model_lines: Vec<UsageRow> = by_model
        .into_iter()
        .filter(|r| r.key.as_deref() != Some("(none)"))
        .map(|mut row| {
            row.key = row.key.map(|k| format!("model:{k}"));
            row
        })
        .collect();
    let invoice = Invoice {
        tenant,
        period: query.period.clone(),
        currency_unit: "micro",
        lines: lines.into_iter().chain(model_lines).collect(),
        total_micros,
    };
    match query.format.as_deref() {
        Some("csv") => Ok(csv_response(&invoice.lines)),
        _ => Ok(Json(invoice).into_response()),
    }
}

fn month_bounds(period: &str) -> Result<(u64, u64), ApiError> {
    let bad = || ApiError::bad_request(format!("period `{period}` must be YYYY-MM"));
    let (year, month) = period.split_once('-').ok_or_else(bad)?;
    let (year, month): (u32, u32) = (year.parse().map_err(|_| bad())?, month.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&month) || year < 1970 {
        return Err(bad());
    }
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    Ok((
        parse_time(&format!("{year:04}-{month:02}-01"))?,
        parse_time(&format!("{next_year:04}-{next_month:02}-01"))?,
    ))
}

#[derive(Serialize)]
struct PricingView {
    version: u32,
    table: PriceTable,
}

async fn pricing(State(node): State<Arc<Node>>, caller: Caller) -> Result<Json<PricingView>, ApiError> {
    caller.require(Scope::Read, "read prices")?;
    let prices = node.billing.prices();
    Ok(Json(PricingView {
        version: prices.0,
        table: prices.1.clone(),
    }))
}

async fn set_pricing(
    State(node): State<Arc<Node>>,
    caller: Caller,
    Json(table): Json<PriceTable>,
) -> Result<Json<PricingView>, ApiError> {
    caller.require_operator("change prices")?;
    let version = node.billing.set_prices(table.clone())?;
    Ok(Json(PricingView { version, table }))
}
