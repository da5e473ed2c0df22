//! Runs one HTTP request through a function: a fresh instance from the
//! pre-instantiated component, with its own memory limit, deadline, body
//! limits and log capture.
//!
//! The guest runs on its own task and enforces its own deadline (epoch
//! interruption for computing code, a timer for host waits), so it stops on
//! time whether or not anyone still listens. The request handler waits only
//! for the response head; the body streams from the guest to the client.

use crate::allowance::TenantHold;
use crate::auth::Scope;
use crate::billing::quotas::QuotaRefusal;
use crate::billing::{Billed, InvocationUsage, ModelUsage};
use crate::gateway::error::{ApiError, INVOCATION_ID_HEADER};
use crate::guest_log::GuestOutput;
use crate::instance::{InvocationLimiter, InvocationState};
use crate::node::Node;
use crate::registry::Deployment;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wafer_host_apis::llm::LlmCtx;
use wafer_host_apis::tensor::TensorCtx;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

/// Headers the node sets for the guest; a client's own copies are removed.
const PATH_INFO_HEADER: &str = "x-wafer-path-info";
const ROUTE_HEADER: &str = "x-wafer-route";

/// The deadline fired while the guest was computing.
#[derive(Debug, thiserror::Error)]
#[error("the invocation ran past its deadline")]
struct DeadlineReached;

/// Responses declaring at most this many bytes are buffered, so that the
/// usage headers can be sent with them; longer or unsized responses stream
/// and carry the usage in HTTP trailers.
const BUFFERED_RESPONSE_LIMIT: u64 = 1024 * 1024;

/// Usage headers on every function response.
pub const BILLED_HEADER: &str = "x-wafer-billed-micros";
/// Prompt tokens used by the invocation.
pub const TOKENS_IN_HEADER: &str = "x-wafer-tokens-in";
/// Tokens generated for the invocation.
pub const TOKENS_OUT_HEADER: &str = "x-wafer-tokens-out";
/// The price table version the invocation was priced with.
pub const PRICE_VERSION_HEADER: &str = "x-wafer-price-version";

/// How a guest run ended, when it ended badly.
#[derive(Debug)]
enum Failure {
    Timeout,
    OutOfMemory,
    Trap(String),
    Capacity,
    Cancelled,
}

/// What the guest task reports when it is completely done: how it ended
/// and what was billed (durably) for it.
struct Completion {
    outcome: Result<(), Failure>,
    billed: Option<Billed>,
}

/// Serves `request` with the function routed for it.
pub async fn invoke(node: Arc<Node>, request: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let invocation_id = ulid::Ulid::new().to_string();
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .map(str::to_owned);
    let routes = node.registry.routes();
    let Some((route, deployment)) = routes.find(host.as_deref(), request.uri().path()) else {
        node.metrics.error("route_not_found");
        return route_not_found(request.uri().path())
            .with_invocation(&invocation_id)
            .into_response();
    };
    let deployment = deployment.clone();
    let route_prefix = route.prefix.clone();
    drop(routes);

    let response = match admit(&node, &deployment, request) {
        Ok((request, tenant_permit)) => {
            match run(
                &node,
                &deployment,
                &route_prefix,
                &invocation_id,
                request,
                tenant_permit,
            )
            .await
            {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
        Err(error) => {
            node.metrics.error(error.code);
            error.with_invocation(&invocation_id).into_response()
        }
    };
    node.metrics
        .observe_request(&deployment.name, response.status().as_u16(), started.elapsed());
    response
}

fn route_not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no function serves `{path}`"),
    )
}

/// Checks the caller (for functions that need a key) and the owner's quotas.
fn admit(
    node: &Node,
    deployment: &Deployment,
    mut request: Request<Body>,
) -> Result<(Request<Body>, Option<OwnedSemaphorePermit>), ApiError> {
    if !deployment.spec.is_public() {
        let header = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = node.auth.authenticate(header).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this function needs an invoke key: send `Authorization: Bearer <key>`",
            )
        })?;
        if !principal.can_access(&deployment.tenant) {
            // Another tenant's private function looks like no function at all.
            return Err(route_not_found(request.uri().path()));
        }
        if !principal.allows(Scope::Invoke) {
            return Err(ApiError::forbidden("invoke functions (it needs the `invoke` scope)"));
        }
        // The key is the platform's, not the function's: do not pass it on.
        request.headers_mut().remove(axum::http::header::AUTHORIZATION);
    }
    let permit = node
        .billing
        .admit(&deployment.tenant)
        .map_err(|refusal| match refusal {
            QuotaRefusal::Rate { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "tenant `{}` is over its request rate (quotas.requests_per_second)",
                    deployment.tenant
                ),
            )
            .retry_after(retry_after),
            QuotaRefusal::Concurrency(limit) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tenant_concurrency_limit",
                format!(
                    "tenant `{}` already runs {limit} invocations (quotas.max_concurrency)",
                    deployment.tenant
                ),
            )
            .retry_after(1),
            QuotaRefusal::Budget(budget) => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "budget_exhausted",
                format!(
                    "tenant `{}` has spent its monthly budget of {budget} micro-units (quotas.monthly_budget_micros)",
                    deployment.tenant
                ),
            ),
            QuotaRefusal::Tokens(limit) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "token_quota_exceeded",
                format!(
                    "tenant `{}` has used its {limit} model tokens this month (quotas.monthly_tokens)",
                    deployment.tenant
                ),
            ),
        })?;
    Ok((request, permit))
}

/// Cancels the guest when dropped: the client went away, or the response
/// was abandoned. The guest task still bills what was used.
struct CancelOnDrop(#[allow(dead_code)] oneshot::Sender<()>);

async fn run(
    node: &Arc<Node>,
    deployment: &Arc<Deployment>,
    route_prefix: &str,
    invocation_id: &str,
    mut request: Request<Body>,
    tenant_permit: Option<OwnedSemaphorePermit>,
) -> Result<Response<Body>, ApiError> {
    let limits = &deployment.limits;
    let with_id = |error: ApiError| {
        node.metrics.error(error.code);
        error.with_invocation(invocation_id)
    };
    let function_permit = deployment.concurrency.clone().try_acquire_owned().map_err(|_| {
        with_id(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "concurrency_limit",
                format!(
                    "function `{}` is already running {} invocations (limits.max_concurrency)",
                    deployment.name, limits.max_concurrency
                ),
            )
            .retry_after(1),
        )
    })?;
    let node_permit = node.instances.clone().try_acquire_owned().map_err(|_| {
        with_id(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the node is running as many instances as it can (node.max_instances); retry shortly",
            )
            .retry_after(1),
        )
    })?;

    let max_request_body = limits.max_request_body.0;
    if content_length(request.headers()).is_some_and(|len| len > max_request_body) {
        return Err(with_id(body_too_large(max_request_body)));
    }
    prepare_request_headers(&mut request, route_prefix);
    let request_too_large = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| LimitedRequestBody {
        inner: body,
        seen: 0,
        max: max_request_body,
        exceeded: request_too_large.clone(),
    });

    let deadline = Instant::now() + limits.timeout;
    let output = GuestOutput::new(limits.max_log_bytes.as_usize());
    // Only functions that may call a model pay for reading quotas; the hold
    // lives until the ledger has the invocation's usage.
    let token_hold = match deployment.models.is_empty() {
        true => None,
        false => TenantHold::new(node, &deployment.tenant),
    };
    let mut llm = LlmCtx::new(
        node.models.clone(),
        deployment.models.clone(),
        deployment.tenant.clone(),
        deadline,
    );
    if let Some(hold) = &token_hold {
        llm = llm.with_allowance(hold.clone());
    }
    let state = InvocationState::new(
        invocation_id,
        &deployment.env,
        deployment.config_vars.clone(),
        deployment.outbound.clone(),
        InvocationLimiter::new(limits.memory.as_usize()),
        output.clone(),
        TensorCtx::new(node.devices.clone(), deployment.tenant.clone()),
        llm,
    );
    let mut store = Store::new(node.engine.engine(), state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(DeadlineReached))
        } else {
            // Yield so a computing guest shares its worker thread fairly.
            Ok(UpdateDeadline::Yield(1))
        }
    });

    let (head_tx, head_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let cancel = CancelOnDrop(cancel_tx);
    let guest = GuestRun {
        node: node.clone(),
        deployment: deployment.clone(),
        invocation_id: invocation_id.to_owned(),
        output,
        permits: Some((function_permit, node_permit, tenant_permit)),
        _token_hold: token_hold,
    };
    tokio::spawn(guest.run(store, request, head_tx, done_tx, cancel_rx, deadline));

    let finish_error = |error: ApiError, completion: Option<Completion>| {
        let billed = completion.and_then(|c| c.billed);
        let mut response = with_id(error).into_response();
        set_usage_headers(response.headers_mut(), billed.as_ref());
        response
    };

    let head = match head_rx.await {
        Ok(head) => head,
        Err(_) => {
            // The guest finished or failed without answering.
            let completion = done_rx.await.ok();
            let error = if request_too_large.load(Ordering::Relaxed) {
                body_too_large(max_request_body)
            } else {
                match completion.as_ref().map(|c| &c.outcome) {
                    Some(Ok(())) => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no_response",
                        "the function returned without sending a response",
                    ),
                    Some(Err(failure)) => failure_to_error(failure, deployment),
                    None => ApiError::internal("guest task ended without reporting"),
                }
            };
            return Ok(finish_error(error, completion));
        }
    };
    let early_error = if request_too_large.load(Ordering::Relaxed) {
        Some(body_too_large(max_request_body))
    } else {
        match &head {
            Err(code) => Some(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "function_error",
                format!("the function answered with an error: {code:?}"),
            )),
            Ok(response) if content_length(response.headers()).is_some_and(|len| len > limits.max_response_body.0) => {
                Some(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "response_too_large",
                    format!(
                        "the function's response is larger than limits.max_response_body ({} bytes)",
                        limits.max_response_body.0
                    ),
                ))
            }
            Ok(_) => None,
        }
    };
    let response = match (head, early_error) {
        (Ok(response), None) => response,
        (_, error) => {
            drop(cancel);
            let completion = done_rx.await.ok();
            let error = error.unwrap_or_else(|| ApiError::internal("the function answered with an error"));
            return Ok(finish_error(error, completion));
        }
    };

    let (mut parts, body) = response.into_parts();
    if let Ok(id) = HeaderValue::from_str(invocation_id) {
        parts.headers.insert(INVOCATION_ID_HEADER, id);
    }
    let buffered = content_length(&parts.headers).is_some_and(|len| len <= BUFFERED_RESPONSE_LIMIT);
    if buffered {
        use http_body_util::BodyExt;
        let collected = tokio::time::timeout_at(deadline.into(), body.collect()).await;
        let completion = done_rx.await.ok();
        let bytes = match collected {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => {
                let error = match completion.as_ref().map(|c| &c.outcome) {
                    Some(Err(failure)) => failure_to_error(failure, deployment),
                    _ => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "incomplete_response",
                        "the function did not finish its response body",
                    ),
                };
                return Ok(finish_error(error, completion));
            }
        };
        drop(cancel);
        set_usage_headers(&mut parts.headers, completion.as_ref().and_then(|c| c.billed.as_ref()));
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    let body = LimitedResponseBody {
        inner: body,
        sent: 0,
        max: limits.max_response_body.0,
        function: deployment.name.clone(),
        done: Some(done_rx),
        cancel: Some(cancel),
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Writes what the invocation was billed into `headers` (response headers,
/// or the trailers of a streamed response).
fn set_usage_headers(headers: &mut axum::http::HeaderMap, billed: Option<&Billed>) {
    let Some(billed) = billed else { return };
    headers.insert(BILLED_HEADER, HeaderValue::from(billed.amount_micros));
    headers.insert(TOKENS_IN_HEADER, HeaderValue::from(billed.tokens_in));
    headers.insert(TOKENS_OUT_HEADER, HeaderValue::from(billed.tokens_out));
    headers.insert(PRICE_VERSION_HEADER, HeaderValue::from(billed.price_version));
}

fn body_too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("the request body is larger than this function's limits.max_request_body ({max} bytes)"),
    )
}

/// Removes client-sent copies of the node's headers, adds the route info and
/// makes sure the guest sees an authority.
fn prepare_request_headers(request: &mut Request<Body>, route_prefix: &str) {
    let path_info = request
        .uri()
        .path()
        .strip_prefix(route_prefix)
        .filter(|_| route_prefix != "/")
        .unwrap_or(request.uri().path())
        .to_owned();
    let headers = request.headers_mut();
    headers.remove(PATH_INFO_HEADER);
    headers.remove(ROUTE_HEADER);
    if let Ok(value) = HeaderValue::from_str(route_prefix) {
        headers.insert(ROUTE_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(if path_info.is_empty() { "/" } else { &path_info }) {
        headers.insert(PATH_INFO_HEADER, value);
    }
    if !headers.contains_key(axum::http::header::HOST) && request.uri().authority().is_none() {
        request
            .headers_mut()
            .insert(axum::http::header::HOST, HeaderValue::from_static("localhost"));
    }
}

fn failure_to_error(failure: &Failure, deployment: &Deployment) -> ApiError {
    match failure {
        Failure::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the function ran past its time limit of {} (limits.timeout)",
                humantime::format_duration(deployment.limits.timeout)
            ),
        ),
        Failure::OutOfMemory => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "memory_limit_exceeded",
            format!(
                "the function tried to use more than its memory limit of {} (limits.memory)",
                deployment.limits.memory
            ),
        ),
        Failure::Trap(message) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "trap",
            format!(
                "the function trapped ({message}); `wafer logs {}` shows the details",
                deployment.name
            ),
        ),
        Failure::Capacity => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "no instance slot is free; retry shortly",
        )
        .retry_after(1),
        Failure::Cancelled => ApiError::new(StatusCode::BAD_REQUEST, "cancelled", "the request was cancelled"),
    }
}

/// Everything the guest task owns.
struct GuestRun {
    node: Arc<Node>,
    deployment: Arc<Deployment>,
    invocation_id: String,
    output: GuestOutput,
    /// Held until the guest is gone, not just until it answered.
    permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)>,
    /// The invocation's hold on its tenant's tokens, given back when this
    /// is dropped: after the ledger write.
    _token_hold: Option<Arc<TenantHold>>,
}

type HeadSender = oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>;

/// Adds the time spent inside `poll` (running the guest on this thread) to
/// a counter: the invocation's CPU time.
struct CpuMetered<'a, F> {
    inner: Pin<Box<F>>,
    cpu_ns: &'a AtomicU64,
}

impl<F: Future> Future for CpuMetered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let result = self.inner.as_mut().poll(cx);
        self.cpu_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }
}

impl GuestRun {
    async fn run(
        mut self,
        mut store: Store<InvocationState>,
        request: Request<LimitedRequestBody>,
        head: HeadSender,
        done: oneshot::Sender<Completion>,
        cancel: oneshot::Receiver<()>,
        deadline: Instant,
    ) {
        let metrics = &self.node.metrics;
        metrics.live_instances.inc();
        let started = Instant::now();
        let cpu_ns = AtomicU64::new(0);
        let guest = CpuMetered {
            inner: Box::pin(async {
                let instantiate_started = Instant::now();
                let proxy = self.deployment.pre.instantiate_async(&mut store).await?;
                metrics
                    .instantiation
                    .observe(instantiate_started.elapsed().as_secs_f64());
                let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
                let out = store.data_mut().http().new_response_outparam(head)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            }),
            cpu_ns: &cpu_ns,
        };
        let result = tokio::select! {
            result = tokio::time::timeout_at(deadline.into(), guest) => match result {
                Err(_elapsed) => Err(None),
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Some(error)),
            },
            _ = cancel => Err(Some(wasmtime::Error::new(Cancelled))),
        };
        metrics.live_instances.dec();
        let wall_ns = started.elapsed().as_nanos() as u64;
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(None) => Err(Failure::Timeout),
            Err(Some(error)) if error.downcast_ref::<Cancelled>().is_some() => Err(Failure::Cancelled),
            Err(Some(error)) => Err(self.classify(&store, error)),
        };
        let tensor = store.data().tensor.usage();
        let usage = InvocationUsage {
            wall_ns,
            cpu_ns: cpu_ns.load(Ordering::Relaxed),
            peak_memory_bytes: store.data().limiter.peak_memory as u64,
            device_ns: tensor.cuda.device_ns,
            device_bytes: tensor.cuda.bytes_to_device + tensor.cuda.bytes_to_host,
            models: store
                .data()
                .llm
                .usage()
                .iter()
                .map(|(model, tokens)| ModelUsage {
                    model: model.clone(),
                    tokens_in: tokens.prompt,
                    tokens_out: tokens.completion,
                    embedding_tokens: tokens.embedding,
                    device_ns: 0,
                })
                .collect(),
        };
        // Give the instance slot back before the ledger write.
        drop(store);
        self.log_outcome(&outcome);
        // The instance is gone: its slots are free while the ledger commits.
        drop(self.permits.take());
        let billed = match self.node.config.billing.enabled {
            false => None,
            true => self.bill(&usage).await,
        };
        let _ = done.send(Completion { outcome, billed });
    }

    /// Records the usage durably; on failure the error is logged and the
    /// response carries no usage headers.
    async fn bill(&self, usage: &InvocationUsage) -> Option<Billed> {
        let function = &self.deployment.name;
        match self
            .node
            .billing
            .record(&self.deployment.tenant, Some(function), &self.invocation_id, usage)
            .await
        {
            Ok(billed) => Some(billed),
            Err(error) => {
                tracing::error!(function = %function, invocation_id = %self.invocation_id, %error, "cannot record usage");
                None
            }
        }
    }

    fn log_outcome(&self, outcome: &Result<(), Failure>) {
        let function = &self.deployment.name;
        let logs = &self.node.logs;
        logs.record_output(function, &self.invocation_id, self.output.take());
        let message = match outcome {
            Ok(()) | Err(Failure::Trap(_) | Failure::Capacity) => return,
            Err(Failure::Timeout) => format!(
                "timed out after {}",
                humantime::format_duration(self.deployment.limits.timeout)
            ),
            Err(Failure::OutOfMemory) => format!("stopped: memory limit of {} reached", self.deployment.limits.memory),
            Err(Failure::Cancelled) => "cancelled: the client went away".to_owned(),
        };
        logs.record_system(function, &self.invocation_id, message);
    }

    fn classify(&self, store: &Store<InvocationState>, error: wasmtime::Error) -> Failure {
        let function = &self.deployment.name;
        if error.downcast_ref::<DeadlineReached>().is_some() {
            return Failure::Timeout;
        }
        if store.data().limiter.memory_refused {
            return Failure::OutOfMemory;
        }
        let detail = format!("{error:?}");
        if detail.contains("maximum concurrent") || detail.contains("pooling allocator") {
            tracing::warn!(function = %function, "instance pool exhausted: {detail}");
            return Failure::Capacity;
        }
        let summary = match error.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => "stack overflow".to_owned(),
            Some(trap) => trap.to_string(),
            None => format!("{error}"),
        };
        tracing::warn!(function = %function, invocation_id = %self.invocation_id, "guest trapped: {detail}");
        self.node
            .logs
            .record_system(function, &self.invocation_id, format!("trap: {detail}"));
        Failure::Trap(summary)
    }
}

/// The client went away.
#[derive(Debug, thiserror::Error)]
#[error("the invocation was cancelled")]
struct Cancelled;

/// The request body, cut off at the function's limit.
struct LimitedRequestBody {
    inner: Body,
    seen: u64,
    max: u64,
    exceeded: Arc<AtomicBool>,
}

impl HttpBody for LimitedRequestBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.seen)))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.max {
                        self.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.seen)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(HttpError::ConnectionTerminated))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The guest's response body, counted as it streams and cut off at the
/// function's limit. After the last byte it waits for the invocation to be
/// billed and sends the usage as trailers. Dropping it early (client gone)
/// cancels the guest.
struct LimitedResponseBody {
    inner: HyperOutgoingBody,
    sent: u64,
    max: u64,
    function: String,
    done: Option<oneshot::Receiver<Completion>>,
    cancel: Option<CancelOnDrop>,
}

/// Errors that end a response stream early (the client sees a cut body).
#[derive(Debug, thiserror::Error)]
enum ResponseStreamError {
    #[error("response body exceeded limits.max_response_body")]
    TooLarge,
    #[error("response body failed: {0}")]
    Guest(String),
}

impl HttpBody for LimitedResponseBody {
    type Data = Bytes;
    type Error = ResponseStreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseStreamError>>> {
        let ended = self.inner.is_end_stream();
        if let Some(done) = self.done.as_mut().filter(|_| ended) {
            // The body is complete: wait for the bill, then send it as trailers.
            let completion = match Pin::new(done).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(completion) => completion.ok(),
            };
            self.done = None;
            self.cancel = None;
            let mut trailers = axum::http::HeaderMap::new();
            set_usage_headers(&mut trailers, completion.as_ref().and_then(|c| c.billed.as_ref()));
            return Poll::Ready((!trailers.is_empty()).then(|| Ok(Frame::trailers(trailers))));
        }
        if self.done.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                    if self.sent > self.max {
                        tracing::warn!(function = %self.function, "response body over its limit; cutting the stream");
                        return Poll::Ready(Some(Err(ResponseStreamError::TooLarge)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(ResponseStreamError::Guest(format!("{error:?}"))))),
            Poll::Ready(None) => {
                // Mark the end and come back for the trailers.
                self.inner = http_body_util::Empty::new()
                    .map_err(|never: std::convert::Infallible| match never {})
                    .boxed_unsync();
                self.poll_frame(cx)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
