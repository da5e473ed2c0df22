//! `wafer-test-tensor`: a wasi:http component that drives `wafer:ai/tensor`
//! through `wafer_sdk::tensor`, for the runtime's integration tests and the
//! guest-side tensor benchmark (`bench/tensor-guest`).
//!
//! The handler dispatches on the LAST path segment (so it works under any
//! route prefix); see the table in `test-programs/README.md`. Tensor errors
//! answer 422 with the error's text (`<kind>: <host message>`), malformed
//! requests 400.
//!
//! Build: `cd test-programs && cargo build --target wasm32-wasip2 --release`
//! Output: `test-programs/target/wasm32-wasip2/release/wafer_test_tensor.wasm`

use serde::{Deserialize, Serialize};
use wafer_sdk::http::{Request, Response};
use wafer_sdk::tensor::{DType, Tensor, TensorError};

/// The most tensors `leak` creates, so a host without a live-tensor limit
/// still gets an answer (and the guest's own `Vec` stays small).
const MAX_LEAK: usize = 1_000_000;

/// Why a request failed.
enum Fail {
    /// The request itself is wrong (400).
    BadRequest(String),
    /// The host refused a tensor operation (422).
    Tensor(TensorError),
}

impl From<TensorError> for Fail {
    fn from(e: TensorError) -> Self {
        Self::Tensor(e)
    }
}

type Result<T, E = Fail> = std::result::Result<T, E>;

fn bad(msg: impl Into<String>) -> Fail {
    Fail::BadRequest(msg.into())
}

fn handle(mut req: Request) -> Response {
    let name = req
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let result = match name.as_str() {
        "matmul" => matmul(&mut req),
        "op" => op(&mut req),
        "error-shape" => error_shape(),
        "error-data" => error_data(),
        "leak" => leak(&req),
        "trivial" => trivial(&req),
        "device" => Tensor::scalar(DType::F32, 0.0)
            .map(|t| Response::text(200, t.device()))
            .map_err(Fail::from),
        _ => Ok(Response::text(404, "no such test")),
    };
    match result {
        Ok(resp) => resp,
        Err(Fail::BadRequest(msg)) => Response::text(400, msg),
        Err(Fail::Tensor(e)) => Response::text(422, e.to_string()),
    }
}

wafer_sdk::http_handler!(handle);

/// A tensor as JSON. `dtype` defaults to `f32`; `i64` data is sent as
/// integers, any other dtype is sent as `f32` and cast on the host.
#[derive(Deserialize)]
struct TensorIn {
    shape: Vec<usize>,
    data: Vec<f64>,
    #[serde(default)]
    dtype: Option<String>,
}

impl TensorIn {
    fn upload(&self) -> Result<Tensor> {
        let dtype = match self.dtype.as_deref() {
            None => DType::F32,
            Some(name) => DType::from_name(name).ok_or_else(|| bad(format!("unknown dtype {name:?}")))?,
        };
        Ok(match dtype {
            // Indices beyond 2^53 do not survive JSON numbers anyway.
            DType::I64 => Tensor::from_i64(&self.shape, &self.data.iter().map(|&v| v as i64).collect::<Vec<_>>())?,
            DType::F32 => self.upload_f32()?,
            other => self.upload_f32()?.cast(other)?,
        })
    }

    fn upload_f32(&self) -> Result<Tensor> {
        let data: Vec<f32> = self.data.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_f32(&self.shape, &data)?)
    }
}

/// A tensor in a response: data converted to `f32` (exact for indices below
/// 2^24) plus the dtype it had on the host.
#[derive(Serialize)]
struct TensorOut {
    shape: Vec<usize>,
    dtype: String,
    data: Vec<f32>,
}

impl TensorOut {
    fn download(t: &Tensor) -> Result<Self> {
        Ok(Self {
            shape: t.shape(),
            dtype: t.dtype().to_string(),
            data: t.to_f32()?,
        })
    }
}

#[derive(Deserialize)]
struct MatmulIn {
    a: TensorIn,
    b: TensorIn,
}

fn matmul(req: &mut Request) -> Result<Response> {
    let body: MatmulIn = req.json().map_err(|e| bad(e.to_string()))?;
    let out = body.a.upload()?.matmul(&body.b.upload()?)?;
    Ok(Response::json(200, &TensorOut::download(&out)?))
}

/// One operation and its arguments; which fields are read depends on `op`.
#[derive(Deserialize)]
struct OpIn {
    op: String,
    x: TensorIn,
    /// Second operand of binary ops and `concat`.
    y: Option<TensorIn>,
    weight: Option<TensorIn>,
    bias: Option<TensorIn>,
    indices: Option<TensorIn>,
    value: Option<f64>,
    axis: Option<i32>,
    #[serde(default)]
    keep_dims: bool,
    eps: Option<f32>,
    shape: Option<Vec<usize>>,
    perm: Option<Vec<usize>>,
    a: Option<i32>,
    b: Option<i32>,
    start: Option<usize>,
    end: Option<usize>,
    k: Option<usize>,
    dtype: Option<String>,
}

fn need<T>(value: Option<T>, field: &str, op: &str) -> Result<T> {
    value.ok_or_else(|| bad(format!("op {op:?} needs field {field:?}")))
}

fn upload_opt(t: Option<&TensorIn>) -> Result<Option<Tensor>> {
    t.map(TensorIn::upload).transpose()
}

fn op(req: &mut Request) -> Result<Response> {
    let p: OpIn = req.json().map_err(|e| bad(e.to_string()))?;
    let op = p.op.as_str();
    let x = p.x.upload()?;
    let axis = p.axis.unwrap_or(-1);
    let y = || -> Result<Tensor> { need(p.y.as_ref(), "y", op)?.upload() };
    let value = || need(p.value, "value", op);
    let out = match op {
        "add" => (&x + &y()?)?,
        "sub" => (&x - &y()?)?,
        "mul" => (&x * &y()?)?,
        "div" => (&x / &y()?)?,
        "add_scalar" => (&x + value()?)?,
        "sub_scalar" => (&x - value()?)?,
        "mul_scalar" => (&x * value()?)?,
        "div_scalar" => (&x / value()?)?,
        "neg" => (-&x)?,
        "matmul" => x.matmul(&y()?)?,
        "relu" => x.relu()?,
        "gelu" => x.gelu()?,
        "silu" => x.silu()?,
        "sigmoid" => x.sigmoid()?,
        "tanh" => x.tanh()?,
        "exp" => x.exp()?,
        "softmax" => x.softmax(axis)?,
        "log_softmax" => x.log_softmax(axis)?,
        "layer_norm" => {
            let (w, b) = (upload_opt(p.weight.as_ref())?, upload_opt(p.bias.as_ref())?);
            x.layer_norm(w.as_ref(), b.as_ref(), p.eps.unwrap_or(1e-5))?
        }
        "rms_norm" => {
            let w = upload_opt(p.weight.as_ref())?;
            x.rms_norm(w.as_ref(), p.eps.unwrap_or(1e-6))?
        }
        "reshape" => x.reshape(&need(p.shape, "shape", op)?)?,
        "permute" => x.permute(&need(p.perm, "perm", op)?)?,
        "transpose" => x.transpose(p.a.unwrap_or(-2), p.b.unwrap_or(-1))?,
        "slice" => x.slice(axis, need(p.start, "start", op)?..need(p.end, "end", op)?)?,
        "concat" => Tensor::concat(&[&x, &y()?], axis)?,
        "gather" => x.gather(&need(p.indices.as_ref(), "indices", op)?.upload()?)?,
        "sum" => x.sum(axis, p.keep_dims)?,
        "mean" => x.mean(axis, p.keep_dims)?,
        "max" => x.max(axis, p.keep_dims)?,
        "argmax" => x.argmax(axis, p.keep_dims)?,
        "top_k" => {
            let (values, indices) = x.top_k(need(p.k, "k", op)?)?;
            let out = serde_json::json!({
                "values": TensorOut::download(&values)?,
                "indices": TensorOut::download(&indices)?,
                "indices_i64": indices.to_i64()?,
            });
            return Ok(Response::json(200, &out));
        }
        "cast" => {
            let name = need(p.dtype.as_deref(), "dtype", op)?;
            x.cast(DType::from_name(name).ok_or_else(|| bad(format!("unknown dtype {name:?}")))?)?
        }
        other => return Err(bad(format!("unknown op {other:?}"))),
    };
    Ok(Response::json(200, &TensorOut::download(&out)?))
}

/// A matmul whose inner dimensions differ: the host must refuse it.
fn error_shape() -> Result<Response> {
    let a = Tensor::from_f32(&[2, 3], &[0.0; 6])?;
    let b = Tensor::from_f32(&[4, 5], &[0.0; 20])?;
    let out = a.matmul(&b)?;
    Ok(Response::text(
        500,
        format!("matmul of [2, 3] and [4, 5] succeeded: {:?}", out.shape()),
    ))
}

/// Five values for a 2×3 tensor: the host must refuse it.
fn error_data() -> Result<Response> {
    let t = Tensor::from_f32(&[2, 3], &[0.0; 5])?;
    Ok(Response::text(
        500,
        format!("from_f32 with 5 values for [2, 3] succeeded: {:?}", t.shape()),
    ))
}

fn query_num(req: &Request, name: &str, default: usize) -> Result<usize> {
    match req.query_param(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("{name} must be a number, got {v:?}"))),
    }
}

/// Creates up to `n` tensors and keeps them all alive until the response is
/// built, to hit the live-tensor limit.
fn leak(req: &Request) -> Result<Response> {
    let n = query_num(req, "n", 1000)?.min(MAX_LEAK);
    let mut live = Vec::new();
    let mut error = None;
    for i in 0..n {
        match Tensor::from_f32(&[1], &[i as f32]) {
            Ok(t) => live.push(t),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let out = serde_json::json!({ "requested": n, "created": live.len(), "error": error });
    Ok(Response::json(200, &out))
}

/// Times `n` round trips of a trivial operation on a 1-element tensor.
///
/// `mode=create-op` (default): create a tensor, `relu` it, drop both (two
/// calls and two drops per iteration). `mode=op`: one tensor created up
/// front, then `n` × (`relu`, drop the result).
fn trivial(req: &Request) -> Result<Response> {
    let n = query_num(req, "n", 1000)?;
    let mode = req.query_param("mode").unwrap_or_else(|| "create-op".into());
    let start = wasip2::clocks::monotonic_clock::now();
    match mode.as_str() {
        "create-op" => {
            for i in 0..n {
                let t = Tensor::from_f32(&[1], &[i as f32])?;
                drop(t.relu()?);
            }
        }
        "op" => {
            let t = Tensor::from_f32(&[1], &[1.0])?;
            for _ in 0..n {
                drop(t.relu()?);
            }
        }
        other => return Err(bad(format!("mode must be create-op or op, got {other:?}"))),
    }
    let elapsed_ns = wasip2::clocks::monotonic_clock::now().saturating_sub(start);
    let per_iter_ns = if n == 0 { 0.0 } else { elapsed_ns as f64 / n as f64 };
    let out = serde_json::json!({ "n": n, "mode": mode, "elapsed_ns": elapsed_ns, "per_iter_ns": per_iter_ns });
    Ok(Response::json(200, &out))
}
