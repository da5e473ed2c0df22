//! Runs one HTTP request through a function: a fresh instance from the
//! pre-instantiated component, with its own memory limit, deadline, body
//! limits and log capture.
//!
//! The guest runs on its own task and enforces its own deadline (epoch
//! interruption for computing code, a timer for host waits), so it stops on
//! time whether or not anyone still listens. The request handler waits only
//! for the response head; the body streams from the guest to the client.

use crate::gateway::error::{ApiError, INVOCATION_ID_HEADER};
use crate::guest_log::GuestOutput;
use crate::instance::{InvocationLimiter, InvocationState};
use crate::node::Node;
use crate::registry::Deployment;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
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

/// How a guest run ended, when it ended badly.
#[derive(Debug)]
enum Failure {
    Timeout,
    OutOfMemory,
    Trap(String),
    Capacity,
    Internal(String),
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
        node.metrics.error("not_found");
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no function serves `{}`", request.uri().path()),
        )
        .with_invocation(&invocation_id)
        .into_response();
    };
    let deployment = deployment.clone();
    let route_prefix = route.prefix.clone();
    drop(routes);

    let response = match run(&node, &deployment, &route_prefix, &invocation_id, request).await {
        Ok(response) => response,
        Err(error) => {
            node.metrics.error(error.code);
            error.with_invocation(&invocation_id).into_response()
        }
    };
    node.metrics.observe_request(
        &deployment.name,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

use axum::response::IntoResponse;

async fn run(
    node: &Arc<Node>,
    deployment: &Arc<Deployment>,
    route_prefix: &str,
    invocation_id: &str,
    mut request: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    let limits = &deployment.limits;
    let function_permit = deployment
        .concurrency
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "concurrency_limit",
                format!(
                    "function `{}` is already running {} invocations (limits.max_concurrency)",
                    deployment.name, limits.max_concurrency
                ),
            )
            .retry_after(1)
        })?;
    let node_permit = node.instances.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the node is running as many instances as it can (node.max_instances); retry shortly",
        )
        .retry_after(1)
    })?;

    let max_request_body = limits.max_request_body.0;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_request_body) {
        return Err(body_too_large(max_request_body));
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
    let state = InvocationState::new(
        invocation_id,
        &deployment.env,
        deployment.config_vars.clone(),
        deployment.outbound.clone(),
        InvocationLimiter::new(limits.memory.as_usize()),
        output.clone(),
    );
    let mut store = Store::new(deployment.pre.engine(), state);
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
    let guest = GuestRun {
        node: node.clone(),
        deployment: deployment.clone(),
        invocation_id: invocation_id.to_owned(),
        output,
        permits: (function_permit, node_permit),
    };
    let task = tokio::spawn(guest.run(store, request, head_tx, deadline));
    let mut task = AbortOnDrop(Some(task));

    let head = match head_rx.await {
        Ok(head) => head,
        Err(_) => {
            // The guest finished or failed without answering.
            let outcome = match task.0.take() {
                Some(handle) => handle
                    .await
                    .unwrap_or_else(|e| Err(Failure::Internal(e.to_string()))),
                None => Err(Failure::Internal("guest task missing".into())),
            };
            if request_too_large.load(Ordering::Relaxed) {
                return Err(body_too_large(max_request_body));
            }
            return Err(match outcome {
                Ok(()) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no_response",
                    "the function returned without sending a response",
                ),
                Err(failure) => failure_to_error(failure, deployment),
            });
        }
    };
    if request_too_large.load(Ordering::Relaxed) {
        return Err(body_too_large(max_request_body));
    }
    let response = head.map_err(|code| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_error",
            format!("the function answered with an error: {code:?}"),
        )
    })?;
    let max_response_body = limits.max_response_body.0;
    let declared = response
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_response_body) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "response_too_large",
            format!(
                "the function's response is larger than limits.max_response_body ({max_response_body} bytes)"
            ),
        ));
    }
    let (mut parts, body) = response.into_parts();
    if let Ok(id) = HeaderValue::from_str(invocation_id) {
        parts.headers.insert(INVOCATION_ID_HEADER, id);
    }
    let body = LimitedResponseBody {
        inner: body,
        sent: 0,
        max: max_response_body,
        guest: task,
        function: deployment.name.clone(),
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn body_too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!(
            "the request body is larger than this function's limits.max_request_body ({max} bytes)"
        ),
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
    if let Ok(value) = HeaderValue::from_str(if path_info.is_empty() {
        "/"
    } else {
        &path_info
    }) {
        headers.insert(PATH_INFO_HEADER, value);
    }
    if !headers.contains_key(axum::http::header::HOST) && request.uri().authority().is_none() {
        request.headers_mut().insert(
            axum::http::header::HOST,
            HeaderValue::from_static("localhost"),
        );
    }
}

fn failure_to_error(failure: Failure, deployment: &Deployment) -> ApiError {
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
        Failure::Internal(detail) => ApiError::internal(detail),
    }
}

/// Everything the guest task owns.
struct GuestRun {
    node: Arc<Node>,
    deployment: Arc<Deployment>,
    invocation_id: String,
    output: GuestOutput,
    /// Held until the guest is gone, not just until it answered.
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

type HeadSender = oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>;

impl GuestRun {
    async fn run(
        self,
        mut store: Store<InvocationState>,
        request: Request<LimitedRequestBody>,
        head: HeadSender,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let metrics = &self.node.metrics;
        metrics.live_instances.inc();
        let result = tokio::time::timeout_at(deadline.into(), async {
            let instantiate_started = Instant::now();
            let proxy = self.deployment.pre.instantiate_async(&mut store).await?;
            metrics
                .instantiation
                .observe(instantiate_started.elapsed().as_secs_f64());
            let request = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(head)?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        })
        .await;
        metrics.live_instances.dec();
        let outcome = match result {
            Err(_elapsed) => Err(Failure::Timeout),
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.classify(&store, error)),
        };
        let function = &self.deployment.name;
        self.node
            .logs
            .record_output(function, &self.invocation_id, self.output.take());
        match &outcome {
            Ok(()) => {}
            Err(Failure::Timeout) => {
                let limit = humantime::format_duration(self.deployment.limits.timeout);
                self.node.logs.record_system(
                    function,
                    &self.invocation_id,
                    format!("timed out after {limit}"),
                );
            }
            Err(Failure::OutOfMemory) => self.node.logs.record_system(
                function,
                &self.invocation_id,
                format!(
                    "stopped: memory limit of {} reached",
                    self.deployment.limits.memory
                ),
            ),
            Err(Failure::Trap(detail)) => {
                tracing::warn!(function = %function, invocation_id = %self.invocation_id, "guest trapped: {detail}");
            }
            Err(Failure::Capacity | Failure::Internal(_)) => {}
        }
        drop(self.permits);
        outcome
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
        self.node
            .logs
            .record_system(function, &self.invocation_id, format!("trap: {detail}"));
        Failure::Trap(summary)
    }
}

/// Aborts the guest task when the request is dropped before the guest has
/// finished (the client went away).
struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<(), Failure>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

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

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.seen)))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.max {
                        self.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(
                            self.seen,
                        )))));
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
/// function's limit. Dropping it before the end (client gone) stops the guest.
struct LimitedResponseBody {
    inner: HyperOutgoingBody,
    sent: u64,
    max: u64,
    guest: AbortOnDrop,
    function: String,
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
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(ResponseStreamError::Guest(format!("{error:?}")))))
            }
            Poll::Ready(None) => {
                // The body is complete: let the guest finish on its own.
                self.guest.0.take();
                Poll::Ready(None)
            }
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
