//! matmul against an f64 reference on dequantized weights, SIMD vs scalar, and bad inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod quant_common;
use quant_common as common;

use bytes::Bytes;
use common::*;
use wafer_host_apis::model::quant::{Activations, GgmlType, QMatrix, QuantError, matmul, testing};

struct Case {
    m: QMatrix,
    /// Dequantized weights (exactly what the kernels see).
    w: Vec<f32>,
}

fn make(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Case {
    let mut rng = rng(seed);
    let x = random_vec(&mut rng, rows * cols, 0.5);
    let (raw, w) = quantize(ty, &x);
    Case {
        m: QMatrix::new(ty, rows, cols, Bytes::from(raw)).unwrap(),
        w,
    }
}

/// Allowed |got - ref| for one output.
///
/// Legacy quants multiply with Q8-quantized activations: per block of 32 the activation error is
/// at most d/2 (d = amax/127) per element, and f16 storage of d (and of s = d*sum(q)) adds
/// relative 2^-11 on the block's partial sums; 2^-9 covers both with margin. Weights of min-
/// offset types are bounded by the block's max |w|. On top, f32 accumulation: 1e-5 * sum|w x|.
/// The f32-path types (F32/F16/BF16/k-quants not interleaved) only have the accumulation
/// term. `q8`: the weights multiply 8-bit activations (legacy types, interleaved k-quants).
fn tolerance_q8(q8: bool, w: &[f32], x: &[f32]) -> f64 {
    let abs_sum: f64 = w.iter().zip(x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
    let mut tol = 1e-5 * abs_sum + 1e-6;
    if q8 {
        for (wb, xb) in w.chunks(32).zip(x.chunks(32)) {
            let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 / 127.0 * 1.001;
            let wmax = wb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
            let xsum: f64 = xb.iter().map(|v| v.abs() as f64 + d / 2.0).sum();
            tol += d / 2.0 * wsum + 2f64.powi(-9) * wmax * xsum;
        }
    }
    tol
}

fn check_against_reference(cases: &[&Case], x: &[f32], tokens: usize, threads: usize) {
    let cols = cases[0].m.cols();
    let types: Vec<GgmlType> = cases.iter().map(|c| c.m.ty()).collect();
    let acts = Activations::prepare(x, tokens, cols, &types).unwrap();
    let mut bufs: Vec<Vec<f32>> = cases.iter().map(|c| vec![f32::NAN; tokens * c.m.rows()]).collect();
    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    let weights: Vec<&QMatrix> = cases.iter().map(|c| &c.m).collect();
    matmul(&weights, &acts, &mut outs, &pool(threads)).unwrap();
    for (c, out) in cases.iter().zip(&bufs) {
        let rows = c.m.rows();
        for t in 0..tokens {
            let xt = &x[t * cols..(t + 1) * cols];
            for r in 0..rows {
                let wr = &c.w[r * cols..(r + 1) * cols];
                let want: f64 = wr.iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum();
                let got = out[t * rows + r] as f64;
                // Interleaved Q4_K multiplies 8-bit activations, like the legacy types.
                let k_quant = matches!(c.m.ty(), GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K);
                let q8 = is_legacy(c.m.ty()) || (k_quant && c.m.is_interleaved());
                let tol = tolerance_q8(q8, wr, xt);
                assert!(
                    (got - want).abs() <= tol,
                    "{:?} tokens {tokens} threads {threads} t {t} r {r}: got {got}, want {want}, tol {tol}",
                    c.m.ty()
                );
            }
        }
    }
}

/// (2) Every type, several batch sizes (covering the 4-token kernel and remainders) and thread
/// counts (chunk boundaries at odd rows).
#[test]
fn matmul_matches_f64_reference_every_type() {
    let cols = 512;
    for (i, ty) in ALL_TYPES.into_iter().enumerate() {
        let case = make(ty, 37, cols, 100 + i as u64);
        for tokens in [1, 2, 3, 4, 5, 9, 17] {
            let x = random_vec(&mut rng(7 + tokens as u64), tokens * cols, 1.0);
            for threads in [1, 2, 3] {
                check_against_reference(&[&case], &x, tokens, threads);
            }
        }
    }
}

/// Several weights of mixed types in one call give the same numbers as separate calls.
#[test]
fn fused_weights_equal_separate_calls() {
    let cols = 256;
    let cases = [
        make(GgmlType::Q4_1, 37, cols, 1),
        make(GgmlType::Q8_0, 5, cols, 2),
        make(GgmlType::F16, 11, cols, 3),
        make(GgmlType::Q4K, 3, cols, 4),
        make(GgmlType::Q4_0, 64, cols, 5),
    ];
    let refs: Vec<&Case> = cases.iter().collect();
    let types: Vec<GgmlType> = cases.iter().map(|c| c.m.ty()).collect();
    for tokens in [1, 6] {
        let x = random_vec(&mut rng(tokens as u64), tokens * cols, 1.0);
        check_against_reference(&refs, &x, tokens, 2);
        let acts = Activations::prepare(&x, tokens, cols, &types).unwrap();
        let pool = pool(2);
        let mut fused: Vec<Vec<f32>> = cases.iter().map(|c| vec![0.0; tokens * c.m.rows()]).collect();
        {
            let mut outs: Vec<&mut [f32]> = fused.iter_mut().map(|b| b.as_mut_slice()).collect();
            let w: Vec<&QMatrix> = cases.iter().map(|c| &c.m).collect();
            matmul(&w, &acts, &mut outs, &pool).unwrap();
        }
        for (c, f) in cases.iter().zip(&fused) {
            let mut single = vec![0.0; tokens * c.m.rows()];
            matmul(&[&c.m], &acts, &mut [single.as_mut_slice()], &pool).unwrap();
            assert_eq!(&single, f, "{:?}", c.m.ty());
        }
    }
}

/// (3) SIMD kernels == scalar kernels within 1e-5 of the summed term magnitudes
/// (sum |w_j x_j|); they differ only in f32 summation order and FMA rounding.
#[test]
fn simd_matches_scalar() {
    if !testing::simd_available() {
        eprintln!("no AVX2/FMA/F16C on this CPU: SIMD path not exercised");
        return;
    }
    let cols = 1024;
    let pool = pool(2);
    for (i, ty) in ALL_TYPES.into_iter().enumerate() {
        let case = make(ty, 33, cols, 200 + i as u64);
        for tokens in [1, 3, 4, 8] {
            let x = random_vec(&mut rng(300 + tokens as u64), tokens * cols, 1.0);
            let acts = Activations::prepare(&x, tokens, cols, &[ty]).unwrap();
            let mut a = vec![0.0; tokens * 33];
            let mut b = vec![0.0; tokens * 33];
            testing::matmul_with(&[&case.m], &acts, &mut [a.as_mut_slice()], &pool, true).unwrap();
            testing::matmul_with(&[&case.m], &acts, &mut [b.as_mut_slice()], &pool, false).unwrap();
            for t in 0..tokens {
                for r in 0..33 {
                    let wr = &case.w[r * cols..(r + 1) * cols];
                    let mag: f32 = wr
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(p, q)| (p * q).abs())
                        .sum();
                    let (s, v) = (a[t * 33 + r], b[t * 33 + r]);
                    assert!(
                        (s - v).abs() <= 1e-5 * mag + 1e-7,
                        "{ty:?} t {t} r {r}: simd {s} scalar {v}"
                    );
                }
            }
        }
    }
}

/// Weights interleaved in groups of eight rows (the batched kernels) give the GGML layout's
/// numbers: checked against the f64 reference, and against the row kernels within f32
/// summation-order rounding, for every token tile size and for chunk boundaries that do not
/// fall on a group (a 5-row weight before it shifts them).
#[test]
fn interleaved_rows_match_ggml_layout() {
    if !testing::simd_available() {
        eprintln!("no AVX2/FMA/F16C on this CPU: interleaved kernels not exercised");
        return;
    }
    let cols = 256;
    let odd = make(GgmlType::Q4_1, 5, cols, 41);
    for (i, ty) in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ]
    .into_iter()
    .enumerate()
    {
        let plain = make(ty, 48, cols, 400 + i as u64);
        let inter = Case {
            m: plain.m.clone().interleaved(),
            w: plain.w.clone(),
        };
        assert!(inter.m.is_interleaved() && !plain.m.is_interleaved(), "{ty:?}");
        for tokens in [1, 2, 3, 4, 5, 8, 9, 17] {
            let x = random_vec(&mut rng(500 + tokens as u64), tokens * cols, 1.0);
            let acts = Activations::prepare(&x, tokens, cols, &[ty, GgmlType::Q4_1]).unwrap();
            for threads in [1, 2, 3] {
                check_against_reference(&[&inter], &x, tokens, threads);
                check_against_reference(&[&odd, &inter], &x, tokens, threads);
                let run = |m: &QMatrix| {
                    let mut a = vec![0.0; tokens * 5];
                    let mut b = vec![0.0; tokens * 48];
                    matmul(
                        &[&odd.m, m],
                        &acts,
                        &mut [a.as_mut_slice(), b.as_mut_slice()],
                        &pool(threads),
                    )
                    .unwrap();
                    (a, b)
                };
                let ((odd_i, got), (odd_p, want)) = (run(&inter.m), run(&plain.m));
                assert_eq!(odd_i, odd_p, "{ty:?}: the plain neighbour must not change");
                if matches!(ty, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K) {
                    // Plain k-quants multiply f32 activations: only the reference applies.
                    continue;
                }
                for t in 0..tokens {
                    for r in 0..48 {
                        let mag: f32 = plain.w[r * cols..(r + 1) * cols]
                            .iter()
                            .zip(&x[t * cols..(t + 1) * cols])
                            .map(|(p, q)| (p * q).abs())
                            .sum();
                        let (g, w) = (got[t * 48 + r], want[t * 48 + r]);
                        assert!(
                            (g - w).abs() <= 1e-5 * mag + 1e-7,
                            "{ty:?} tokens {tokens} threads {threads} t {t} r {r}: interleaved {g} ggml {w}"
                        );
                    }
                }
            }
        }
    }
    // Types and shapes without a layout are left as they are.
    assert!(!make(GgmlType::Q4_1, 37, cols, 1).m.interleaved().is_interleaved());
    assert!(!make(GgmlType::F16, 8, cols, 1).m.interleaved().is_interleaved());
}

/// Activation quantization rounds like ggml's quantize_row_q8_0_ref: d = amax/127 stored as
/// f16, q = round-half-away-from-zero(x / d). Probed with one-hot Q8_0 weight rows (d = 1).
#[test]
fn activation_rounding_matches_ggml() {
    let cols = 32;
    let mut x = vec![0.0f32; cols];
    x[..6].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.49, 100.7]);
    let mut raw = Vec::new();
    for j in 0..cols {
        raw.extend_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
        raw.extend((0..32).map(|k| u8::from(k == j)));
    }
    let m = QMatrix::new(GgmlType::Q8_0, cols, cols, Bytes::from(raw)).unwrap();
    let acts = Activations::prepare(&x, 1, cols, &[GgmlType::Q8_0]).unwrap();
    for simd in [true, false] {
        let mut out = vec![0.0; cols];
        testing::matmul_with(&[&m], &acts, &mut [out.as_mut_slice()], &pool(2), simd).unwrap();
        assert_eq!(&out[..6], &[127.0, 3.0, -3.0, 1.0, 0.0, 101.0], "simd {simd}");
    }
}

/// (4) Bad inputs are errors, never panics.
#[test]
fn bad_inputs_are_errors() {
    let pool = pool(2);
    let w = make(GgmlType::Q4_1, 8, 64, 9).m;
    let x = vec![0.5f32; 2 * 64];
    let acts = Activations::prepare(&x, 2, 64, &[GgmlType::Q4_1]).unwrap();

    // Output length mismatch.
    let mut short = vec![0.0; 15];
    let e = matmul(&[&w], &acts, &mut [short.as_mut_slice()], &pool).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::Len {
                expected: 16,
                actual: 15,
                ..
            }
        ),
        "{e}"
    );

    // weights / outs count mismatch.
    let mut o = vec![0.0; 16];
    let e = matmul(&[&w, &w], &acts, &mut [o.as_mut_slice()], &pool).unwrap_err();
    assert!(matches!(e, QuantError::OutCount { weights: 2, outs: 1 }), "{e}");

    // cols mismatch between weight and activations.
    let w96 = make(GgmlType::Q4_1, 8, 96, 9).m;
    let e = matmul(
        &[&w, &w96],
        &acts,
        &mut [o.as_mut_slice(), vec![0.0; 16].as_mut_slice()],
        &pool,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::ColsMismatch {
                index: 1,
                weight_cols: 96,
                act_cols: 64
            }
        ),
        "{e}"
    );

    // Activations not prepared for this weight type.
    let wf = make(GgmlType::F16, 8, 64, 9).m;
    let e = matmul(&[&wf], &acts, &mut [o.as_mut_slice()], &pool).unwrap_err();
    assert!(matches!(e, QuantError::NotPrepared { ty: "F16" }), "{e}");

    // Activation length / block mismatches.
    assert!(matches!(
        Activations::prepare(&x, 3, 64, &[GgmlType::Q4_1]),
        Err(QuantError::Len { .. })
    ));
    let x48 = vec![0.0f32; 48];
    assert!(matches!(
        Activations::prepare(&x48, 1, 48, &[GgmlType::Q8_0]),
        Err(QuantError::ColsNotBlockMultiple { .. })
    ));
    assert!(Activations::prepare(&x, 1, 128, &[GgmlType::Q4K]).is_err());
    assert!(Activations::prepare(&x, usize::MAX, 2, &[]).is_err());

    // Empty work is fine.
    let acts0 = Activations::prepare(&[], 0, 64, &[GgmlType::Q4_1]).unwrap();
    matmul(&[&w], &acts0, &mut [&mut []], &pool).unwrap();
    matmul(&[], &acts, &mut [], &pool).unwrap();
}
