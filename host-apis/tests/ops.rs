//! Every tensor op against the f64 reference in `common`, on random shapes
//! (seeded), on every device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Arr, assert_close, make, numel, random, random_dims, tol};
use rand::Rng;
use rand::rngs::StdRng;
use wafer_host_apis::tensor::{BinaryOp, DType, ReduceOp, TensorError, UnaryOp};

const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

/// Two shapes that broadcast: an output shape, each side with some leading
/// dims dropped and some set to 1.
fn broadcast_pair(rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let out = random_dims(rng, 4, 5);
    let side = |rng: &mut StdRng| -> Vec<usize> {
        let drop = rng.random_range(0..=out.len());
        out[drop..]
            .iter()
            .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
            .collect()
    };
    (side(rng), side(rng))
}

device_test!(binary_ops_broadcast_on_every_dtype, |exec, rng| {
    for _ in 0..40 {
        for dtype in DType::ALL {
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                let (da, db) = broadcast_pair(&mut rng);
                let (a, ra) = random(exec, &mut rng, &da, dtype);
                let mut bv = common::random_values(&mut rng, dtype, numel(&db));
                if op == BinaryOp::Div && dtype.is_float() {
                    // Keep denominators away from 0, where f16 rounding explodes.
                    bv.iter_mut().for_each(|v| *v = v.signum() * (v.abs() + 0.5));
                }
                let (b, rb) = make(exec, &db, dtype, &bv);
                let got = exec.binary(op, &a, &b).unwrap();
                let want = common::zip(&ra, &rb, |x, y| {
                    let v = match op {
                        BinaryOp::Add => x + y,
                        BinaryOp::Sub => x - y,
                        BinaryOp::Mul => x * y,
                        BinaryOp::Div if dtype.is_float() => x / y,
                        BinaryOp::Div if y == 0.0 => 0.0,
                        BinaryOp::Div => (x / y).trunc(),
                    };
                    common::wrap(dtype, v)
                });
                assert_close(
                    exec,
                    &got,
                    &want,
                    2.0 * tol(dtype),
                    &format!("{op:?} {dtype} {da:?} {db:?}"),
                );
            }
        }
    }
});

device_test!(binary_ops_report_both_shapes_on_mismatch, |exec, rng| {
    let (a, _) = random(exec, &mut rng, &[2, 3], DType::F32);
    let (b, _) = random(exec, &mut rng, &[4], DType::F32);
    let e = exec.add(&a, &b).unwrap_err();
    assert_eq!(e.to_string(), "shape mismatch in add: [2, 3] and [4]");
    let (c, _) = random(exec, &mut rng, &[2, 3], DType::I32);
    assert!(matches!(exec.add(&a, &c), Err(TensorError::InvalidArgument(_))));
});

device_test!(scalar_forms, |exec, rng| {
    for dtype in DType::ALL {
        let (a, ra) = random(exec, &mut rng, &[3, 4], dtype);
        for (op, s) in [
            (BinaryOp::Add, 3.0f64),
            (BinaryOp::Sub, 2.0),
            (BinaryOp::Mul, -2.0),
            (BinaryOp::Div, 4.0),
        ] {
            let s = if dtype == DType::U8 { s.abs() } else { s };
            let got = exec.binary_scalar(op, &a, s).unwrap();
            let want = common::map(&ra, |x| {
                let v = match op {
                    BinaryOp::Add => x + s,
                    BinaryOp::Sub => x - s,
                    BinaryOp::Mul => x * s,
                    BinaryOp::Div if dtype.is_float() => x / s,
                    BinaryOp::Div => (x / s).trunc(),
                };
                common::wrap(dtype, v)
            });
            assert_close(exec, &got, &want, 2.0 * tol(dtype), &format!("{op:?} scalar {dtype}"));
        }
    }
});

device_test!(integer_division_by_zero_is_zero, |exec, _rng| {
    for dtype in [DType::I32, DType::I64, DType::U8] {
        let (a, _) = make(exec, &[3], dtype, &[7.0, 0.0, 5.0]);
        let (b, _) = make(exec, &[3], dtype, &[0.0, 0.0, 2.0]);
        let q = exec.div(&a, &b).unwrap();
        assert_eq!(exec.to_f64(&q).unwrap(), vec![0.0, 0.0, 2.0], "{dtype}");
    }
    let (a, _) = make(exec, &[1], DType::I32, &[i32::MIN as f64]);
    let (b, _) = make(exec, &[1], DType::I32, &[-1.0]);
    assert_eq!(exec.to_vec::<i32>(&exec.div(&a, &b).unwrap()).unwrap(), vec![i32::MIN]);
});

device_test!(unary_ops, |exec, rng| {
    for _ in 0..10 {
        for dtype in FLOATS {
            let dims = random_dims(&mut rng, 3, 6);
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            for (op, f) in [
                (UnaryOp::Relu, (|x: f64| x.max(0.0)) as fn(f64) -> f64),
                (UnaryOp::Gelu, common::gelu),
                (UnaryOp::Silu, |x| x * common::sigmoid(x)),
                (UnaryOp::Sigmoid, common::sigmoid),
                (UnaryOp::Tanh, f64::tanh),
                (UnaryOp::Exp, f64::exp),
            ] {
                let got = exec.unary(op, &x).unwrap();
                assert_close(
                    exec,
                    &got,
                    &common::map(&rx, f),
                    4.0 * tol(dtype).max(1e-6),
                    &format!("{op:?} {dtype}"),
                );
            }
        }
        let (i, _) = random(exec, &mut rng, &[3], DType::I32);
        assert!(matches!(
            exec.unary(UnaryOp::Relu, &i),
            Err(TensorError::UnsupportedDtype { .. })
        ));
    }
});

device_test!(matmul_batched_and_broadcast, |exec, rng| {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![1, 1], vec![1, 1]),
        (vec![3, 4], vec![4, 5]),
        (vec![2, 3, 4], vec![2, 4, 5]),
        (vec![3, 4], vec![6, 4, 2]),
        (vec![2, 1, 3, 4], vec![5, 4, 2]),
        (vec![7, 1, 4], vec![1, 4, 3]),
        (vec![0, 3, 4], vec![4, 2]),
        (vec![3, 0], vec![0, 5]),
        (vec![2, 3, 5], vec![5, 0]),
        (vec![65, 130], vec![130, 97]),
    ];
    for dtype in FLOATS {
        for (da, db) in &cases {
            let (a, ra) = random(exec, &mut rng, da, dtype);
            let (b, rb) = random(exec, &mut rng, db, dtype);
            let got = exec.matmul(&a, &b).unwrap();
            let k = da[da.len() - 1] as f64;
            let rtol = tol(dtype) * (k.sqrt() + 1.0) * 2.0;
            assert_close(
                exec,
                &got,
                &common::matmul(&ra, &rb),
                rtol,
                &format!("matmul {dtype} {da:?} {db:?}"),
            );
        }
    }
    // Random batched shapes.
    for _ in 0..20 {
        let (m, k, n) = (rng.random_range(1..9), rng.random_range(1..9), rng.random_range(1..9));
        let (ba, bb) = broadcast_pair(&mut rng);
        let (ba, bb) = (
            ba.into_iter().take(2).collect::<Vec<_>>(),
            bb.into_iter().take(2).collect::<Vec<_>>(),
        );
        if common::broadcast_dims(&ba, &bb).is_none() {
            continue;
        }
        let mut da = ba.clone();
        da.extend([m, k]);
        let mut db = bb.clone();
        db.extend([k, n]);
        let (a, ra) = random(exec, &mut rng, &da, DType::F32);
        let (b, rb) = random(exec, &mut rng, &db, DType::F32);
        let got = exec.matmul(&a, &b).unwrap();
        assert_close(
            exec,
            &got,
            &common::matmul(&ra, &rb),
            1e-4,
            &format!("matmul {da:?} {db:?}"),
        );
    }
});

device_test!(matmul_of_transposed_operands, |exec, rng| {
    // Non-contiguous inputs: transpose materialises, so the product sees
    // the permuted data.
    let (a, ra) = random(exec, &mut rng, &[2, 6, 5], DType::F32);
    let (b, rb) = random(exec, &mut rng, &[7, 6], DType::F32);
    let at = exec.transpose(&a, 1, 2).unwrap(); // [2, 5, 6]
    let bt = exec.transpose(&b, 0, 1).unwrap(); // [6, 7]
    let got = exec.matmul(&at, &bt).unwrap();
    let want = common::matmul(&common::permute(&ra, &[0, 2, 1]), &common::permute(&rb, &[1, 0]));
    assert_close(exec, &got, &want, 1e-4, "matmul of transposes");
});

device_test!(matmul_large, |exec, rng| {
    let (a, ra) = random(exec, &mut rng, &[192, 257], DType::F32);
    let (b, rb) = random(exec, &mut rng, &[257, 131], DType::F32);
    let got = exec.matmul(&a, &b).unwrap();
    assert_close(exec, &got, &common::matmul(&ra, &rb), 1e-4, "large matmul");
});

device_test!(matmul_rejects_bad_operands, |exec, rng| {
    let (a, _) = random(exec, &mut rng, &[3, 4], DType::F32);
    let (b, _) = random(exec, &mut rng, &[5, 2], DType::F32);
    let e = exec.matmul(&a, &b).unwrap_err();
    assert_eq!(e.to_string(), "shape mismatch in matmul: [3, 4] and [5, 2]");
    let (v, _) = random(exec, &mut rng, &[4], DType::F32);
    assert!(matches!(exec.matmul(&a, &v), Err(TensorError::ShapeMismatch { .. })));
    let (i, _) = random(exec, &mut rng, &[4, 4], DType::I32);
    assert!(matches!(exec.matmul(&i, &i), Err(TensorError::UnsupportedDtype { .. })));
    let (x, _) = random(exec, &mut rng, &[2, 3, 4], DType::F32);
    let (y, _) = random(exec, &mut rng, &[3, 4, 2], DType::F32);
    assert!(matches!(exec.matmul(&x, &y), Err(TensorError::ShapeMismatch { .. })));
});

device_test!(softmax_and_log_softmax, |exec, rng| {
    for _ in 0..20 {
        for dtype in FLOATS {
            let mut dims = random_dims(&mut rng, 3, 6);
            dims.push(rng.random_range(1..40));
            let axis = rng.random_range(0..dims.len());
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            let neg = axis as i64 - dims.len() as i64;
            let s = exec.softmax(&x, neg).unwrap();
            assert_close(
                exec,
                &s,
                &common::softmax(&rx, axis, false),
                4.0 * tol(dtype),
                "softmax",
            );
            let l = exec.log_softmax(&x, axis as i64).unwrap();
            assert_close(
                exec,
                &l,
                &common::softmax(&rx, axis, true),
                4.0 * tol(dtype),
                "log_softmax",
            );
        }
    }
    // Large rows (a vocabulary) and large magnitudes stay finite.
    let (x, _) = make(exec, &[2, 3], DType::F32, &[1000.0, 0.0, -1000.0, 5.0, 5.0, 5.0]);
    let s = exec.to_f64(&exec.softmax(&x, -1).unwrap()).unwrap();
    assert!((s[0] - 1.0).abs() < 1e-6 && (s[3] - 1.0 / 3.0).abs() < 1e-6, "{s:?}");
    let (x, rx) = random(exec, &mut rng, &[3, 5000], DType::F32);
    assert_close(
        exec,
        &exec.softmax(&x, 1).unwrap(),
        &common::softmax(&rx, 1, false),
        1e-5,
        "wide softmax",
    );
});

device_test!(layer_and_rms_norm, |exec, rng| {
    for _ in 0..10 {
        for dtype in FLOATS {
            let mut dims = random_dims(&mut rng, 2, 5);
            let cols = rng.random_range(1..300);
            dims.push(cols);
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            let (w, rw) = random(exec, &mut rng, &[cols], dtype);
            let (b, rb) = random(exec, &mut rng, &[cols], dtype);
            let eps = 1e-5;
            let last = dims.len() - 1;
            let ln = |l: &[f64], w: bool, b: bool| -> Vec<f64> {
                let n = l.len() as f64;
                let mean = l.iter().sum::<f64>() / n;
                let var = l.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                l.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let mut y = (x - mean) / (var + eps).sqrt();
                        if w {
                            y *= rw.data[i]
                        }
                        if b {
                            y += rb.data[i]
                        }
                        y
                    })
                    .collect()
            };
            let got = exec.layer_norm(&x, Some(&w), Some(&b), eps as f32).unwrap();
            assert_close(
                exec,
                &got,
                &common::along(&rx, last, cols, |l| ln(l, true, true)),
                20.0 * tol(dtype),
                "layer_norm",
            );
            let got = exec.layer_norm(&x, None, None, eps as f32).unwrap();
            assert_close(
                exec,
                &got,
                &common::along(&rx, last, cols, |l| ln(l, false, false)),
                20.0 * tol(dtype),
                "layer_norm bare",
            );
            let got = exec.rms_norm(&x, Some(&w), eps as f32).unwrap();
            let rms = common::along(&rx, last, cols, |l| {
                let ms = l.iter().map(|x| x * x).sum::<f64>() / l.len() as f64;
                l.iter()
                    .enumerate()
                    .map(|(i, x)| x / (ms + eps).sqrt() * rw.data[i])
                    .collect()
            });
            assert_close(exec, &got, &rms, 20.0 * tol(dtype), "rms_norm");
        }
    }
    let (x, _) = random(exec, &mut rng, &[2, 4], DType::F32);
    let (w, _) = random(exec, &mut rng, &[3], DType::F32);
    assert!(matches!(
        exec.rms_norm(&x, Some(&w), 1e-5),
        Err(TensorError::ShapeMismatch { .. })
    ));
});

device_test!(reductions_on_every_dtype, |exec, rng| {
    for _ in 0..20 {
        for dtype in DType::ALL {
            let mut dims: Vec<usize> = random_dims(&mut rng, 3, 5).into_iter().map(|d| d.max(1)).collect();
            dims.push(rng.random_range(1..7));
            let axis = rng.random_range(0..dims.len());
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            let keep = rng.random_bool(0.5);
            let reshape = |a: Arr| -> Arr {
                let mut d = a.dims.clone();
                if !keep {
                    d.remove(axis);
                }
                Arr { dims: d, data: a.data }
            };
            let sum = exec.sum(&x, axis as i64, keep).unwrap();
            let want = reshape(common::along(&rx, axis, 1, |l| {
                vec![common::wrap(dtype, l.iter().sum())]
            }));
            assert_close(exec, &sum, &want, 4.0 * tol(dtype), &format!("sum {dtype}"));
            let max = exec.max(&x, axis as i64, keep).unwrap();
            let want = reshape(common::along(&rx, axis, 1, |l| {
                vec![l.iter().cloned().fold(f64::MIN, f64::max)]
            }));
            assert_close(exec, &max, &want, 0.0, &format!("max {dtype}"));
            let am = exec.argmax(&x, axis as i64, keep).unwrap();
            assert_eq!(am.dtype(), DType::I64);
            let want = reshape(common::along(&rx, axis, 1, |l| {
                let m = l.iter().cloned().fold(f64::MIN, f64::max);
                vec![l.iter().position(|&v| v == m).unwrap_or(0) as f64]
            }));
            assert_close(exec, &am, &want, 0.0, &format!("argmax {dtype}"));
            if dtype.is_float() {
                let mean = exec.mean(&x, axis as i64, keep).unwrap();
                let want = reshape(common::along(&rx, axis, 1, |l| {
                    vec![l.iter().sum::<f64>() / l.len() as f64]
                }));
                assert_close(exec, &mean, &want, 4.0 * tol(dtype), &format!("mean {dtype}"));
            } else {
                assert!(matches!(
                    exec.mean(&x, 0, false),
                    Err(TensorError::UnsupportedDtype { .. })
                ));
            }
        }
    }
    let (e, _) = random(exec, &mut rng, &[3, 0], DType::F32);
    assert!(matches!(exec.max(&e, 1, false), Err(TensorError::InvalidArgument(_))));
    let s = exec.sum(&e, 1, false).unwrap();
    assert_eq!(exec.to_f64(&s).unwrap(), vec![0.0; 3]);
});

device_test!(top_k_orders_ties_by_index, |exec, rng| {
    let (x, _) = make(
        exec,
        &[2, 5],
        DType::I32,
        &[3.0, 1.0, 3.0, 2.0, 3.0, 0.0, 9.0, 9.0, -1.0, 4.0],
    );
    let (v, i) = exec.top_k(&x, 3).unwrap();
    assert_eq!(exec.to_vec::<i32>(&v).unwrap(), vec![3, 3, 3, 9, 9, 4]);
    assert_eq!(exec.to_vec::<i64>(&i).unwrap(), vec![0, 2, 4, 1, 2, 4]);
    for _ in 0..20 {
        for dtype in DType::ALL {
            let mut dims = random_dims(&mut rng, 2, 4);
            let len = rng.random_range(1..50);
            dims.push(len);
            let k = rng.random_range(0..=len);
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            let (v, i) = exec.top_k(&x, k).unwrap();
            let last = dims.len() - 1;
            let order = |l: &[f64]| {
                let mut idx: Vec<usize> = (0..l.len()).collect();
                idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
                idx.truncate(k);
                idx
            };
            let wv = common::along(&rx, last, k, |l| order(l).into_iter().map(|j| l[j]).collect());
            let wi = common::along(&rx, last, k, |l| order(l).into_iter().map(|j| j as f64).collect());
            assert_close(exec, &v, &wv, 0.0, &format!("top_k values {dtype}"));
            assert_close(exec, &i, &wi, 0.0, &format!("top_k indices {dtype}"));
        }
    }
    let (x, _) = random(exec, &mut rng, &[2, 3], DType::F32);
    assert!(matches!(exec.top_k(&x, 4), Err(TensorError::InvalidArgument(_))));
});

device_test!(layout_ops, |exec, rng| {
    for _ in 0..20 {
        for dtype in DType::ALL {
            let dims = random_dims(&mut rng, 4, 4);
            let (x, rx) = random(exec, &mut rng, &dims, dtype);
            // permute
            let mut perm: Vec<usize> = (0..dims.len()).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.random_range(0..=i));
            }
            let p = exec.permute(&x, &perm).unwrap();
            assert_close(exec, &p, &common::permute(&rx, &perm), 0.0, "permute");
            // reshape round trip through a flat view
            let flat = exec.reshape(&x, &[numel(&dims)]).unwrap();
            assert_eq!(exec.to_f64(&flat).unwrap(), rx.data);
            if dims.is_empty() {
                continue;
            }
            // slice
            let axis = rng.random_range(0..dims.len());
            let start = rng.random_range(0..=dims[axis]);
            let end = rng.random_range(start..=dims[axis]);
            let s = exec.slice(&x, axis as i64, start, end).unwrap();
            let want = common::along(&rx, axis, end - start, |l| l[start..end].to_vec());
            assert_close(exec, &s, &want, 0.0, "slice");
            // slice of a permuted tensor (non-contiguous source)
            let pa = perm.iter().position(|&q| q == axis).unwrap();
            let ps = exec.slice(&p, pa as i64, start, end).unwrap();
            let want_p = common::permute(&want, &perm);
            assert_close(exec, &ps, &want_p, 0.0, "slice of permute");
            // concat of three pieces along the axis
            let mut others = Vec::new();
            let mut want_parts = vec![rx.clone()];
            for _ in 0..2 {
                let mut d = dims.clone();
                d[axis] = rng.random_range(0..3);
                let (t, r) = random(exec, &mut rng, &d, dtype);
                others.push(t);
                want_parts.push(r);
            }
            let c = exec.concat(&[&x, &others[0], &others[1]], axis as i64).unwrap();
            let total: usize = want_parts.iter().map(|a| a.dims[axis]).sum();
            let mut wd = dims.clone();
            wd[axis] = total;
            let want = Arr {
                data: (0..numel(&wd))
                    .map(|i| {
                        let mut idx = common::unravel(i, &wd);
                        let mut part = 0;
                        while idx[axis] >= want_parts[part].dims[axis] {
                            idx[axis] -= want_parts[part].dims[axis];
                            part += 1;
                        }
                        want_parts[part].at(&idx)
                    })
                    .collect(),
                dims: wd,
            };
            assert_close(exec, &c, &want, 0.0, "concat");
        }
    }
    let (x, _) = random(exec, &mut rng, &[2, 3], DType::F32);
    assert!(matches!(
        exec.reshape(&x, &[4, 2]),
        Err(TensorError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        exec.permute(&x, &[0, 0]),
        Err(TensorError::InvalidArgument(_))
    ));
    assert!(matches!(exec.slice(&x, 1, 2, 4), Err(TensorError::InvalidArgument(_))));
    assert!(matches!(exec.slice(&x, 2, 0, 1), Err(TensorError::InvalidArgument(_))));
    let (y, _) = random(exec, &mut rng, &[3, 3], DType::F32);
    assert!(matches!(
        exec.concat(&[&x, &y], 1),
        Err(TensorError::ShapeMismatch { .. })
    ));
});

device_test!(gather_rows, |exec, rng| {
    for dtype in DType::ALL {
        for idx_dtype in [DType::I32, DType::I64] {
            let (table, rt) = random(exec, &mut rng, &[10, 3, 2], dtype);
            let idx_dims = random_dims(&mut rng, 2, 4);
            let iv: Vec<f64> = (0..numel(&idx_dims)).map(|_| rng.random_range(0..10) as f64).collect();
            let (idx, _) = make(exec, &idx_dims, idx_dtype, &iv);
            let got = exec.gather(&table, &idx).unwrap();
            let mut wd = idx_dims.clone();
            wd.extend([3, 2]);
            let want = Arr {
                data: iv
                    .iter()
                    .flat_map(|&i| rt.data[i as usize * 6..i as usize * 6 + 6].to_vec())
                    .collect(),
                dims: wd,
            };
            assert_close(exec, &got, &want, 0.0, &format!("gather {dtype} by {idx_dtype}"));
            let (bad, _) = make(exec, &[2], idx_dtype, &[3.0, 10.0]);
            assert!(matches!(
                exec.gather(&table, &bad),
                Err(TensorError::InvalidArgument(_))
            ));
            let (neg, _) = make(exec, &[1], idx_dtype, &[-1.0]);
            assert!(matches!(
                exec.gather(&table, &neg),
                Err(TensorError::InvalidArgument(_))
            ));
        }
    }
    let (table, _) = random(exec, &mut rng, &[4, 2], DType::F32);
    let (fidx, _) = random(exec, &mut rng, &[2], DType::F32);
    assert!(matches!(
        exec.gather(&table, &fidx),
        Err(TensorError::UnsupportedDtype { .. })
    ));
});

device_test!(casts_between_every_pair, |exec, rng| {
    for from in DType::ALL {
        for to in DType::ALL {
            // Values every pair represents exactly.
            let vals: Vec<f64> = (0..30)
                .map(|_| match (from, to) {
                    (DType::U8, _) | (_, DType::U8) => rng.random_range(0..=100) as f64,
                    _ => rng.random_range(-100..=100) as f64,
                })
                .collect();
            let (x, rx) = make(exec, &[5, 6], from, &vals);
            let y = exec.cast(&x, to).unwrap();
            assert_eq!(y.dtype(), to);
            assert_close(exec, &y, &rx, 0.0, &format!("cast {from} -> {to}"));
        }
    }
    // Fractions truncate toward zero; out of range saturates; NaN is 0.
    let (x, _) = make(exec, &[6], DType::F32, &[2.7, -2.7, 1e10, -1e10, f64::NAN, 300.0]);
    let i = exec.cast(&x, DType::I32).unwrap();
    assert_eq!(exec.to_vec::<i32>(&i).unwrap(), vec![2, -2, i32::MAX, i32::MIN, 0, 300]);
    let u = exec.cast(&x, DType::U8).unwrap();
    assert_eq!(exec.to_vec::<u8>(&u).unwrap(), vec![2, 0, 255, 0, 0, 255]);
    let h = exec.cast(&x, DType::F16).unwrap();
    let back = exec.to_f64(&h).unwrap();
    assert!(
        (back[0] - 2.7).abs() < 2e-3 && back[2].is_infinite() && back[4].is_nan(),
        "{back:?}"
    );
});

device_test!(empty_and_scalar_tensors, |exec, rng| {
    let (s, _) = make(exec, &[], DType::F32, &[2.5]);
    assert_eq!(s.dims(), &[] as &[usize]);
    let (v, rv) = random(exec, &mut rng, &[4], DType::F32);
    let sum = exec.add(&s, &v).unwrap();
    assert_close(exec, &sum, &common::map(&rv, |x| x + 2.5), 1e-6, "scalar + vector");
    let e = exec.unary(UnaryOp::Exp, &s).unwrap();
    assert!((exec.to_f64(&e).unwrap()[0] - 2.5f64.exp()).abs() < 1e-4);
    for dims in [vec![0], vec![2, 0, 3], vec![0, 0]] {
        for dtype in DType::ALL {
            let (x, _) = make(exec, &dims, dtype, &[]);
            assert_eq!(exec.to_bytes(&x).unwrap(), Vec::<u8>::new());
            let y = exec.add(&x, &x).unwrap();
            assert_eq!(y.dims(), dims.as_slice());
            let c = exec.cast(&x, DType::F32).unwrap();
            assert_eq!(c.dims(), dims.as_slice());
            let p = exec.transpose(&x, 0, -1).unwrap();
            assert_eq!(exec.to_f64(&p).unwrap().len(), 0);
            if dtype.is_float() {
                let sm = exec.softmax(&x, -1).unwrap();
                assert_eq!(sm.dims(), dims.as_slice());
            }
        }
    }
    let (a, _) = make(exec, &[1, 1], DType::F32, &[3.0]);
    let (b, _) = make(exec, &[1, 1], DType::F32, &[-2.0]);
    assert_eq!(exec.to_vec::<f32>(&exec.matmul(&a, &b).unwrap()).unwrap(), vec![-6.0]);
});

device_test!(large_elementwise_runs_in_parallel_and_matches, |exec, rng| {
    // Above the CPU's parallel threshold, with broadcasting of a row.
    let (a, ra) = random(exec, &mut rng, &[300, 1000], DType::F32);
    let (b, rb) = random(exec, &mut rng, &[1000], DType::F32);
    let got = exec.mul(&a, &b).unwrap();
    assert_close(exec, &got, &common::zip(&ra, &rb, |x, y| x * y), 1e-6, "large mul");
    let g = exec.unary(UnaryOp::Gelu, &a).unwrap();
    assert_close(exec, &g, &common::map(&ra, common::gelu), 1e-5, "large gelu");
    let r = exec.reduce(ReduceOp::Sum, &a, 0, false).unwrap();
    let want = common::along(&ra, 0, 1, |l| vec![l.iter().sum()]);
    let want = Arr {
        dims: vec![1000],
        data: want.data,
    };
    assert_close(exec, &r, &want, 1e-5, "large sum");
});

device_test!(bytes_round_trip_and_length_is_checked, |exec, _rng| {
    let x = exec.from_slice(&[2, 2], &[1i64, -2, 3, i64::MAX]).unwrap();
    assert_eq!(exec.to_vec::<i64>(&x).unwrap(), vec![1, -2, 3, i64::MAX]);
    assert!(matches!(exec.to_vec::<i32>(&x), Err(TensorError::InvalidArgument(_))));
    let e = exec.from_bytes(&[2, 2], DType::F32, &[0; 15]).unwrap_err();
    assert!(e.to_string().contains("needs 16 bytes, got 15"), "{e}");
    assert!(exec.from_bytes(&[usize::MAX, 2], DType::F32, &[]).is_err());
    assert_eq!(format!("{x:?}"), format!("Tensor([2, 2], i64, {})", exec.device().id()));
});
