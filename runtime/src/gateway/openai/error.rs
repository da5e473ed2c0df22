//! Errors in OpenAI's shape, `{"error": {"message", "type", "param",
//! "code"}}`, with the statuses OpenAI's clients act on: they raise a typed
//! exception per status and retry 408, 409, 429 and 5xx unless the
//! response says `x-should-retry: false`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::billing::quotas::QuotaRefusal;
use wafer_host_apis::model::EngineError;

/// An error answer of the OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `requests`,
    /// `insufficient_quota`, `server_error`.
    pub kind: &'static str,
    /// A stable code (`model_not_found`, `invalid_api_key`, ...).
    pub code: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// What happened and, where it helps, what to do.
    pub message: String,
    /// Seconds to wait before retrying.
    pub retry_after: Option<u32>,
    /// Tells OpenAI's clients not to retry (a spent budget stays spent).
    pub no_retry: bool,
}

/// The error object, as it appears in a body or in a stream's `data:` line.
#[derive(Serialize)]
pub struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

impl OpenAiError {
    /// A new error.
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        OpenAiError {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
            retry_after: None,
            no_retry: false,
        }
    }

    /// Names the request field at fault.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message).param(param)
    }

    /// 400 for a parameter this server does not implement.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(param, "unsupported_parameter", message)
    }

    /// 401: no key, or one the node does not know.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or invalid API key: send `Authorization: Bearer wk_...` with a key of scope `invoke` \
             (`wafer keys create --tenant T --scope invoke`)",
        )
    }

    /// 403: a valid key without the `invoke` scope.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "insufficient_permissions",
            "this key may not call models: it needs the `invoke` scope",
        )
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(name: &str, loaded: &[&str]) -> Self {
        let loaded = if loaded.is_empty() {
            "none".to_owned()
        } else {
            loaded.join(", ")
        };
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{name}` does not exist on this node (models: {loaded}); see GET /v1/models"),
        )
        .param("model")
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 429 that clients should not retry: the tenant's budget or monthly
    /// tokens are spent. OpenAI answers a spent quota the same way.
    pub fn insufficient_quota(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
            message,
        );
        e.no_retry = true;
        e
    }

    /// 500; `detail` is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "openai api: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "internal error; see the node's log",
        )
    }

    /// The error object for a body or a stream.
    pub fn object(&self) -> ErrorObject<'_> {
        ErrorObject {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
        }
    }

    /// `{"error": {...}}` as JSON text (a stream's last `data:` line when
    /// a generation fails after it started).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorBody { error: self.object() }).unwrap_or_default()
    }
}

impl From<EngineError> for OpenAiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::InvalidParams(m) => {
                OpenAiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request", m)
            }
            EngineError::Overloaded(m) => {
                let mut e = OpenAiError::new(StatusCode::TOO_MANY_REQUESTS, "requests", "engine_overloaded", m);
                e.retry_after = Some(1);
                e
            }
            EngineError::Timeout(m) => OpenAiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", "timeout", m),
            EngineError::Internal(m) => OpenAiError::internal(m),
        }
    }
}

/// A quota refusal from [`crate::billing::Billing::admit`].
pub fn quota_refusal(tenant: &str, refusal: QuotaRefusal) -> OpenAiError {
    match refusal {
        QuotaRefusal::Rate { retry_after } => {
            let mut e = OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "rate_limit_exceeded",
                format!("tenant `{tenant}` is over its request rate (quotas.requests_per_second)"),
            );
            e.retry_after = Some(retry_after);
            e
        }
        QuotaRefusal::Concurrency(limit) => {
            let mut e = OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "rate_limit_exceeded",
                format!("tenant `{tenant}` already runs {limit} requests (quotas.max_concurrency)"),
            );
            e.retry_after = Some(1);
            e
        }
        QuotaRefusal::Budget(budget) => OpenAiError::insufficient_quota(format!(
            "tenant `{tenant}` has spent its monthly budget of {budget} micro-units (quotas.monthly_budget_micros)"
        )),
        QuotaRefusal::Tokens(limit) => OpenAiError::insufficient_quota(format!(
            "tenant `{tenant}` has used its {limit} model tokens this month (quotas.monthly_tokens)"
        )),
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.object() })).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.no_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}
