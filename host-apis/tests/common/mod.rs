//! Shared test helpers: the devices every test body runs on, random data,
//! and a plain f64 reference implementation of every op.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wafer_host_apis::tensor::backend::cuda;
use wafer_host_apis::tensor::{Budget, DType, Device, Exec, Tensor, TensorLimits};

/// Every device the test bodies run on: the CPU always, each CUDA GPU when
/// a driver and a GPU are present (else a note on stderr).
pub fn devices() -> Vec<Exec> {
    let mut out = vec![Exec::new(
        Device::cpu(0, 2).unwrap(),
        Budget::unlimited(),
        TensorLimits::default(),
    )];
    match cuda::probe() {
        Ok(gpus) => {
            for g in gpus {
                let dev = cuda::CudaDevice::new(g.ordinal).unwrap();
                out.push(Exec::new(
                    Device::new(Arc::new(dev)),
                    Budget::unlimited(),
                    TensorLimits::default(),
                ));
            }
        }
        Err(why) => {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| eprintln!("CUDA tests skipped: {why}"));
        }
    }
    out
}

/// Defines a `#[test]` that runs `$body` with `$exec` bound to each device.
#[macro_export]
macro_rules! device_test {
    ($name:ident, |$exec:ident, $rng:ident| $body:block) => {
        #[test]
        fn $name() {
            for $exec in common::devices() {
                let mut $rng = common::rng(stringify!($name));
                let $exec = &$exec;
                eprintln!("{} on {}", stringify!($name), $exec.device().id());
                $body
            }
        }
    };
}

/// A seeded RNG per test name, so failures reproduce.
pub fn rng(name: &str) -> StdRng {
    let seed = name
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    StdRng::seed_from_u64(seed)
}

/// A dense f64 array in row-major order: the reference's tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Arr {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
}

pub fn numel(d: &[usize]) -> usize {
    d.iter().product()
}

pub fn strides(d: &[usize]) -> Vec<usize> {
    let mut s = vec![1; d.len()];
    for i in (0..d.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * d[i + 1];
    }
    s
}

pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = i % dims[d];
        i /= dims[d];
    }
    idx
}

impl Arr {
    pub fn new(dims: &[usize], data: Vec<f64>) -> Self {
        assert_eq!(numel(dims), data.len());
        Arr {
            dims: dims.to_vec(),
            data,
        }
    }

    pub fn at(&self, idx: &[usize]) -> f64 {
        let s = strides(&self.dims);
        self.data[idx.iter().zip(&s).map(|(i, s)| i * s).sum::<usize>()]
    }

    /// Reads `self` broadcast to `out` at output index `idx`.
    pub fn at_broadcast(&self, idx: &[usize]) -> f64 {
        let off = idx.len() - self.dims.len();
        let own: Vec<usize> = self
            .dims
            .iter()
            .enumerate()
            .map(|(d, &n)| if n == 1 { 0 } else { idx[off + d] })
            .collect();
        self.at(&own)
    }
}

/// Random values for `dtype`: floats in [-2, 2]; integers small, so the
/// reference needs no overflow handling beyond the dtype's wrap.
pub fn random_values(rng: &mut StdRng, dtype: DType, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| match dtype {
            DType::U8 => rng.random_range(0..=255) as f64,
            DType::I32 | DType::I64 => rng.random_range(-50..=50) as f64,
            _ => rng.random_range(-2.0..2.0),
        })
        .collect()
}

/// Makes a tensor of `dtype` from f64 values and returns it with the values
/// it actually holds (rounded to the dtype), which the reference then uses.
pub fn make(exec: &Exec, dims: &[usize], dtype: DType, values: &[f64]) -> (Tensor, Arr) {
    let mut bytes = Vec::new();
    for &v in values {
        match dtype {
            DType::F32 => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F16 => bytes.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            DType::Bf16 => bytes.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            DType::I32 => bytes.extend_from_slice(&(v as i32).to_le_bytes()),
            DType::I64 => bytes.extend_from_slice(&(v as i64).to_le_bytes()),
            DType::U8 => bytes.extend_from_slice(&(v as u8).to_le_bytes()),
        }
    }
    let t = exec.from_bytes(dims, dtype, &bytes).unwrap();
    let held = exec.to_f64(&t).unwrap();
    (t, Arr::new(dims, held))
}

pub fn random(exec: &Exec, rng: &mut StdRng, dims: &[usize], dtype: DType) -> (Tensor, Arr) {
    let v = random_values(rng, dtype, numel(dims));
    make(exec, dims, dtype, &v)
}

pub fn random_dims(rng: &mut StdRng, max_rank: usize, max_dim: usize) -> Vec<usize> {
    let rank = rng.random_range(0..=max_rank);
    (0..rank).map(|_| rng.random_range(0..=max_dim)).collect()
}

/// Relative tolerance for results stored in `dtype`.
pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 2e-5,
        DType::F16 => 4e-3,
        DType::Bf16 => 2e-2,
        _ => 0.0,
    }
}

/// Asserts `t` holds `want` (same dims; values within `rtol`·max(1, |want|)).
#[track_caller]
pub fn assert_close(exec: &Exec, t: &Tensor, want: &Arr, rtol: f64, what: &str) {
    assert_eq!(t.dims(), want.dims.as_slice(), "{what}: dims");
    let got = exec.to_f64(t).unwrap();
    assert_eq!(got.len(), want.data.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= rtol * w.abs().max(1.0);
        assert!(
            ok,
            "{what}: element {i} ({:?}): got {g}, want {w}",
            unravel(i, &want.dims)
        );
    }
}

// ---- the reference -------------------------------------------------------------

pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

pub fn zip(a: &Arr, b: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
    let dims = broadcast_dims(&a.dims, &b.dims).unwrap();
    let data = (0..numel(&dims))
        .map(|i| {
            let idx = unravel(i, &dims);
            f(a.at_broadcast(&idx), b.at_broadcast(&idx))
        })
        .collect();
    Arr { dims, data }
}

pub fn map(a: &Arr, f: impl Fn(f64) -> f64) -> Arr {
    Arr {
        dims: a.dims.clone(),
        data: a.data.iter().map(|&x| f(x)).collect(),
    }
}

/// Wraps an integer result into `dtype`'s range, as the backends do.
pub fn wrap(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::U8 => (v as i64).rem_euclid(256) as f64,
        DType::I32 => (v as i64) as i32 as f64,
        _ => v,
    }
}

pub fn matmul(a: &Arr, b: &Arr) -> Arr {
    let (m, k) = (a.dims[a.dims.len() - 2], a.dims[a.dims.len() - 1]);
    let n = b.dims[b.dims.len() - 1];
    let batch = broadcast_dims(&a.dims[..a.dims.len() - 2], &b.dims[..b.dims.len() - 2]).unwrap();
    let mut dims = batch.clone();
    dims.extend([m, n]);
    let mut data = vec![0.0; numel(&dims)];
    for bi in 0..numel(&batch) {
        let bidx = unravel(bi, &batch);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let mut ia = bidx.clone();
                    ia.extend([i, p]);
                    let mut ib = bidx.clone();
                    ib.extend([p, j]);
                    s += a.at_broadcast(&ia) * b.at_broadcast(&ib);
                }
                data[(bi * m + i) * n + j] = s;
            }
        }
    }
    Arr { dims, data }
}

/// Applies `f` to each line along `axis`, which maps the line to a new line.
pub fn along(a: &Arr, axis: usize, out_len: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Arr {
    let outer: usize = a.dims[..axis].iter().product();
    let len = a.dims[axis];
    let inner: usize = a.dims[axis + 1..].iter().product();
    let mut dims = a.dims.clone();
    dims[axis] = out_len;
    let mut data = vec![0.0; outer * out_len * inner];
    for o in 0..outer {
        for j in 0..inner {
            let line: Vec<f64> = (0..len).map(|i| a.data[(o * len + i) * inner + j]).collect();
            for (i, v) in f(&line).into_iter().enumerate() {
                data[(o * out_len + i) * inner + j] = v;
            }
        }
    }
    Arr { dims, data }
}

pub fn softmax(a: &Arr, axis: usize, log: bool) -> Arr {
    along(a, axis, a.dims[axis], |l| {
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = l.iter().map(|x| (x - m).exp()).sum();
        l.iter()
            .map(|x| if log { x - m - s.ln() } else { (x - m).exp() / s })
            .collect()
    })
}

pub fn permute(a: &Arr, perm: &[usize]) -> Arr {
    let dims: Vec<usize> = perm.iter().map(|&p| a.dims[p]).collect();
    let data = (0..numel(&dims))
        .map(|i| {
            let idx = unravel(i, &dims);
            let mut src = vec![0; dims.len()];
            for (o, &p) in perm.iter().enumerate() {
                src[p] = idx[o];
            }
            a.at(&src)
        })
        .collect();
    Arr { dims, data }
}

pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
