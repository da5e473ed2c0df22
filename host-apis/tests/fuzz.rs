//! Seeded random op sequences, valid and invalid, against a session with
//! small limits: every call returns a value or a typed caller error, never
//! panics, and never a `Device` error (which would be a host bug, e.g. a
//! backend panic caught by the last line of defence).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use rand::Rng;
use rand::rngs::StdRng;
use wafer_host_apis::tensor::{
    BinaryOp, Budget, DType, Exec, ReduceOp, TensorError, TensorId, TensorLimits, TensorSession, UnaryOp,
};

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

fn dims(rng: &mut StdRng) -> Vec<usize> {
    match rng.random_range(0..20) {
        0 => vec![usize::MAX, 3],
        1 => vec![1 << 33, 1 << 33],
        2 => vec![1; 9],
        3 => vec![0, 4],
        _ => {
            let rank = rng.random_range(0..4);
            (0..rank).map(|_| rng.random_range(1..5)).collect()
        }
    }
}

fn handle(rng: &mut StdRng, live: &[TensorId]) -> TensorId {
    if live.is_empty() || rng.random_range(0..12) == 0 {
        TensorId(rng.random_range(0..10_000))
    } else {
        live[rng.random_range(0..live.len())]
    }
}

fn axis(rng: &mut StdRng) -> i64 {
    rng.random_range(-5..5)
}

fn run(exec: Exec, seed: u64, steps: usize) -> (usize, usize) {
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed);
    let mut s = TensorSession::from_exec(exec);
    let mut live: Vec<TensorId> = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for step in 0..steps {
        let a = handle(&mut rng, &live);
        let b = handle(&mut rng, &live);
        let r: Result<Vec<TensorId>, TensorError> = match rng.random_range(0..22) {
            0..=2 => {
                let d = dims(&mut rng);
                let dtype = pick(&mut rng, &DType::ALL);
                let n = d
                    .iter()
                    .try_fold(1usize, |a, &b| a.checked_mul(b))
                    .unwrap_or(0)
                    .min(4096);
                // Sometimes the wrong number of bytes.
                let len = n * dtype.size() + usize::from(rng.random_range(0..8) == 0);
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                s.create(&d, dtype, &bytes).map(|t| vec![t])
            }
            3 => s.matmul(a, b).map(|t| vec![t]),
            4 => s
                .binary(
                    pick(&mut rng, &[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div]),
                    a,
                    b,
                )
                .map(|t| vec![t]),
            5 => s
                .binary_scalar(BinaryOp::Div, a, pick(&mut rng, &[0.0, -1.0, 1e30, f64::NAN]))
                .map(|t| vec![t]),
            6 => s
                .unary(
                    pick(
                        &mut rng,
                        &[
                            UnaryOp::Relu,
                            UnaryOp::Gelu,
                            UnaryOp::Silu,
                            UnaryOp::Sigmoid,
                            UnaryOp::Tanh,
                            UnaryOp::Exp,
                        ],
                    ),
                    a,
                )
                .map(|t| vec![t]),
            7 => s.softmax(a, axis(&mut rng), rng.random()).map(|t| vec![t]),
            8 => s
                .layer_norm(a, rng.random::<bool>().then_some(b), None, 1e-5)
                .map(|t| vec![t]),
            9 => s.rms_norm(a, Some(b), 0.0).map(|t| vec![t]),
            10 => {
                let d = dims(&mut rng);
                s.reshape(a, &d).map(|t| vec![t])
            }
            11 => {
                let n = rng.random_range(0..5);
                let perm: Vec<usize> = (0..n).map(|_| rng.random_range(0..5)).collect();
                s.permute(a, &perm).map(|t| vec![t])
            }
            12 => s.transpose(a, axis(&mut rng), axis(&mut rng)).map(|t| vec![t]),
            13 => {
                let (st, en) = (rng.random_range(0..6), rng.random_range(0..6));
                s.slice(a, axis(&mut rng), st, en).map(|t| vec![t])
            }
            14 => s.concat(&[a, b, a], axis(&mut rng)).map(|t| vec![t]),
            15 => s.gather(a, b).map(|t| vec![t]),
            16 => s
                .reduce(
                    pick(
                        &mut rng,
                        &[ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::ArgMax],
                    ),
                    a,
                    axis(&mut rng),
                    rng.random(),
                )
                .map(|t| vec![t]),
            17 => s.top_k(a, rng.random_range(0..6)).map(|(v, i)| vec![v, i]),
            18 => s.cast(a, pick(&mut rng, &DType::ALL)).map(|t| vec![t]),
            19 => s.read(a).map(|_| vec![]),
            20 => s.dims(a).and(s.dtype(a)).map(|_| vec![]),
            _ => {
                let r = s.remove(a).map(|_| vec![]);
                live.retain(|&x| x != a);
                r
            }
        };
        match r {
            Ok(new) => {
                ok += 1;
                live.extend(new);
            }
            Err(TensorError::Device(e)) => panic!("seed {seed} step {step}: host bug: {e}"),
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

#[test]
fn random_op_sequences_never_panic() {
    let limits = TensorLimits {
        max_live_tensors: 64,
        max_elements: 4096,
        max_bytes_per_invocation: 256 * 1024,
        ..Default::default()
    };
    for exec in common::devices() {
        let exec = Exec::new(exec.device().clone(), Budget::unlimited(), limits.clone());
        for seed in 0..8 {
            let (ok, failed) = run(exec.clone(), seed, 1500);
            // The mix must exercise both paths.
            assert!(ok > 200 && failed > 200, "seed {seed}: {ok} ok, {failed} failed");
        }
    }
}
