// Run with: wafer build examples/tensor-mlp && wafer deploy examples/tensor-mlp && curl -d '{"inputs":[[5.1,3.5,1.4,0.2]]}' localhost:8080/mlp
//! An Iris classifier whose forward pass runs on the platform's tensor
//! devices (`wafer:ai/tensor`).
//!
//! `POST /mlp` with `{"inputs": [[sepal length, sepal width, petal length,
//! petal width], ...]}` (centimetres) answers
//! `{"classes": ["setosa", ...], "probabilities": [[...], ...], ...}`.
//! `?engine=wasm` computes the same MLP in plain Rust inside the component
//! instead, for comparison (`bench/tensor-guest`). `GET /mlp` prints usage.
//!
//! The weights (`weights.json`) were trained offline by `train.py`; the
//! function uploads them with each request, since tensors live only as long
//! as one invocation.

mod model;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use wafer_sdk::http::{Request, Response};
use wafer_sdk::tensor::TensorError;

use model::{Mlp, Row, argmax};

/// The most rows one request may classify: keeps the request's tensors and
/// the response small (each row costs 16 bytes in and ~60 bytes out).
const MAX_ROWS: usize = 1024;

const USAGE: &str = "\
Iris classifier (4 -> 16 -> 3 MLP) running on Wafer's tensor devices.

POST /mlp with {\"inputs\": [[sepal_length, sepal_width, petal_length, petal_width], ...]} (cm, at most 1024 rows)
  -> {\"classes\": [...], \"probabilities\": [[setosa, versicolor, virginica], ...], \"engine\": \"host\", \"device\": \"cpu:0\"}
  ?engine=wasm computes the same MLP inside the component instead of on host tensors.
  The x-forward-ns header is the forward pass's time inside the function.

curl -d '{\"inputs\":[[5.1,3.5,1.4,0.2]]}' localhost:8080/mlp
";

#[derive(Deserialize)]
struct Input {
    inputs: Vec<Row>,
}

#[derive(Serialize)]
struct Output<'a> {
    classes: Vec<&'a str>,
    probabilities: Vec<Vec<f32>>,
    engine: &'static str,
    /// Where the host engine ran; absent for `engine=wasm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
}

/// A failed request: a stable code for clients, a message for people.
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "bad_request",
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        Response::json(self.status, &body)
    }
}

impl From<TensorError> for ApiError {
    fn from(e: TensorError) -> Self {
        // The inputs were checked before, so any tensor error is ours or the
        // platform's: log the detail, send a stable code.
        eprintln!("tensor-mlp: forward pass failed: {e}");
        let (status, code, message) = match e {
            TensorError::Unavailable(_) => (503, "tensors_unavailable", "tensor operations are not available here"),
            TensorError::OverQuota(_) | TensorError::OutOfMemory(_) => (
                503,
                "device_busy",
                "the tensor device is out of capacity; try again later",
            ),
            _ => (500, "forward_failed", "the forward pass failed"),
        };
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

fn handle(req: Request) -> Response {
    match req.method() {
        "GET" => Response::text(200, USAGE),
        "POST" => classify(req).unwrap_or_else(ApiError::into_response),
        _ => Response::text(405, "use GET for usage or POST to classify\n").with_header("allow", "GET, POST"),
    }
}

wafer_sdk::http_handler!(handle);

fn classify(mut req: Request) -> Result<Response, ApiError> {
    let use_host = match req.query_param("engine").as_deref() {
        None | Some("host") => true,
        Some("wasm") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "engine must be host or wasm, not {other:?}"
            )));
        }
    };
    let input: Input = req
        .json()
        .map_err(|e| ApiError::bad_request(format!("expected {{\"inputs\": [[4 numbers], ...]}}: {e}")))?;
    if input.inputs.is_empty() || input.inputs.len() > MAX_ROWS {
        return Err(ApiError::bad_request(format!(
            "inputs must have 1 to {MAX_ROWS} rows, not {}",
            input.inputs.len()
        )));
    }
    if input.inputs.iter().flatten().any(|v| !v.is_finite()) {
        return Err(ApiError::bad_request("inputs must be finite numbers"));
    }

    let mlp = Mlp::shipped().map_err(|e| {
        eprintln!("tensor-mlp: {e}");
        ApiError {
            status: 500,
            code: "model_unavailable",
            message: "the model could not be loaded".into(),
        }
    })?;
    let start = Instant::now();
    let (probabilities, device) = if use_host {
        let (p, device) = mlp.forward_tensor(&input.inputs)?;
        (p, Some(device))
    } else {
        (mlp.forward_reference(&input.inputs), None)
    };
    let forward_ns = start.elapsed().as_nanos();

    let names = mlp.classes();
    let classes = probabilities
        .iter()
        .map(|p| names.get(argmax(p)).map_or("?", String::as_str))
        .collect();
    let out = Output {
        classes,
        probabilities,
        engine: if use_host { "host" } else { "wasm" },
        device,
    };
    Ok(Response::json(200, &out).with_header("x-forward-ns", forward_ns.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(resp: &Response) -> serde_json::Value {
        serde_json::from_slice(resp.body().unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn get_prints_usage() {
        let resp = handle(Request::new("GET", "/mlp"));
        assert_eq!(resp.status(), 200);
        assert!(String::from_utf8_lossy(resp.body().unwrap_or_default()).contains("POST /mlp"));
    }

    #[test]
    fn wasm_engine_classifies() {
        let body = r#"{"inputs":[[5.1,3.5,1.4,0.2],[7.0,3.2,4.7,1.4],[6.3,3.3,6.0,2.5]]}"#;
        let resp = handle(Request::new("POST", "/mlp?engine=wasm").with_body(body));
        assert_eq!(resp.status(), 200);
        assert!(resp.header("x-forward-ns").is_some());
        let v = body_json(&resp);
        assert_eq!(
            v["classes"],
            serde_json::json!(["setosa", "versicolor", "virginica"]),
            "{v}"
        );
        assert_eq!(v["engine"], "wasm");
        assert_eq!(v["probabilities"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn host_engine_outside_wafer_is_503() {
        let resp = handle(Request::new("POST", "/mlp").with_body(r#"{"inputs":[[5.1,3.5,1.4,0.2]]}"#));
        assert_eq!(resp.status(), 503);
        assert_eq!(body_json(&resp)["error"]["code"], "tensors_unavailable");
    }

    #[test]
    fn bad_inputs_are_400() {
        let too_many = format!(r#"{{"inputs":[{}]}}"#, vec!["[1,2,3,4]"; MAX_ROWS + 1].join(","));
        for body in [
            "not json",
            r#"{"inputs":[]}"#,
            r#"{"inputs":[[1,2,3]]}"#,
            r#"{"inputs":[[1,2,3,4,5]]}"#,
            too_many.as_str(),
        ] {
            let resp = handle(Request::new("POST", "/mlp?engine=wasm").with_body(body));
            assert_eq!(resp.status(), 400, "{body}");
            assert_eq!(body_json(&resp)["error"]["code"], "bad_request");
        }
        let resp = handle(Request::new("POST", "/mlp?engine=gpu").with_body(r#"{"inputs":[[1,2,3,4]]}"#));
        assert_eq!(resp.status(), 400);
    }

    #[test]
    fn max_rows_is_accepted() {
        let body = format!(r#"{{"inputs":[{}]}}"#, vec!["[5.1,3.5,1.4,0.2]"; MAX_ROWS].join(","));
        let resp = handle(Request::new("POST", "/mlp?engine=wasm").with_body(body));
        assert_eq!(resp.status(), 200);
    }
}
