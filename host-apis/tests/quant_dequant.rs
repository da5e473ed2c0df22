//! Dequantization: reference-quantizer round trips and gguf-py fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod quant_common;
use quant_common as common;

use common::*;
use wafer_host_apis::model::quant::{GgmlType, QMatrix, QuantError, dequantize_row};

#[test]
fn type_ids_names_and_sizes() {
    let table = [
        (0, "F32", 1, 4),
        (1, "F16", 1, 2),
        (2, "Q4_0", 32, 18),
        (3, "Q4_1", 32, 20),
        (6, "Q5_0", 32, 22),
        (7, "Q5_1", 32, 24),
        (8, "Q8_0", 32, 34),
        (12, "Q4_K", 256, 144),
        (13, "Q5_K", 256, 176),
        (14, "Q6_K", 256, 210),
        (30, "BF16", 1, 2),
    ];
    for (id, name, len, bytes) in table {
        let ty = GgmlType::from_id(id).unwrap();
        assert_eq!(
            (ty.id(), ty.name(), ty.block_len(), ty.block_bytes()),
            (id, name, len, bytes)
        );
    }
    let err = GgmlType::from_id(10).unwrap_err();
    assert!(
        err.to_string().contains("Q2_K") && err.to_string().contains("not supported"),
        "{err}"
    );
    assert!(matches!(
        GgmlType::from_id(1000),
        Err(QuantError::UnknownType { id: 1000 })
    ));
    assert_eq!(GgmlType::Q4_1.row_bytes(576).unwrap(), 360);
    assert!(matches!(
        GgmlType::Q4K.row_bytes(576),
        Err(QuantError::ColsNotBlockMultiple { .. })
    ));
}

/// (1) Quantize random data with the reference quantizers, dequantize with the module: the
/// result equals (bit for bit) the values implied by the quants, and is within each type's
/// quantization step of the input.
#[test]
fn roundtrip_every_type() {
    let mut rng = rng(1);
    for ty in ALL_TYPES {
        for trial in 0..20 {
            let cols = 512;
            let mut x = random_vec(&mut rng, cols, 1.0 + trial as f32);
            if trial == 1 {
                x[..64].fill(0.0); // zero blocks exercise d == 0
            }
            let (raw, expected) = quantize(ty, &x);
            assert_eq!(raw.len(), ty.row_bytes(cols).unwrap(), "{ty:?}");
            let mut got = vec![f32::NAN; cols];
            dequantize_row(ty, &raw, &mut got).unwrap();
            for i in 0..cols {
                assert_eq!(got[i].to_bits(), expected[i].to_bits(), "{ty:?} trial {trial} elem {i}");
            }
            // Coarse sanity bound: error within one quantization step of the block's range.
            let bl = ty.block_len().max(32);
            for (xb, gb) in x.chunks(bl).zip(got.chunks(bl)) {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let step = match ty {
                    GgmlType::F32 => 0.0,
                    GgmlType::F16 => amax * 1e-3,
                    GgmlType::BF16 => amax * 8e-3,
                    GgmlType::Q8_0 => amax / 127.0 * 0.6,
                    GgmlType::Q4_0 => amax / 8.0 * 1.05,
                    GgmlType::Q5_0 => amax / 16.0 * 1.05,
                    GgmlType::Q4_1 | GgmlType::Q4K => 2.0 * amax / 15.0 * 0.55,
                    GgmlType::Q5_1 | GgmlType::Q5K => 2.0 * amax / 31.0 * 0.55,
                    // Q6_K here: per-16 symmetric scale, 8-bit scale quantization.
                    _ => amax / 31.0 * 0.6,
                };
                for (a, b) in xb.iter().zip(gb) {
                    assert!((a - b).abs() <= step + 1e-6, "{ty:?}: {a} vs {b} (step {step})");
                }
            }
        }
    }
}

#[test]
fn row_into_matches_dequantize_row() {
    let mut rng = rng(2);
    let (rows, cols) = (5, 256);
    let x = random_vec(&mut rng, rows * cols, 1.0);
    for ty in ALL_TYPES {
        let (raw, expected) = quantize(ty, &x);
        let m = QMatrix::new(ty, rows, cols, bytes::Bytes::from(raw)).unwrap();
        let mut dst = vec![0.0; cols];
        for r in 0..rows {
            m.row_into(r, &mut dst).unwrap();
            assert_eq!(dst, expected[r * cols..(r + 1) * cols], "{ty:?} row {r}");
        }
    }
}

/// (5) Rows dumped by tests/fixtures/make_fixtures.py: real Q4_1/Q8_0 rows of SmolLM2-135M and
/// synthesized rows of the other types, dequantized by gguf-py. Must match bit for bit.
#[test]
fn gguf_py_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");
    let manifest = std::fs::read_to_string(format!("{dir}/manifest.txt")).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, id, rows, cols): (&str, u32, usize, usize) = (
            f[0],
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let ty = GgmlType::from_id(id).unwrap();
        seen.insert(ty);
        let raw = std::fs::read(format!("{dir}/{name}.raw")).unwrap();
        let vals: Vec<f32> = std::fs::read(format!("{dir}/{name}.f32"))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(vals.len(), rows * cols, "{name}");
        let m = QMatrix::new(ty, rows, cols, bytes::Bytes::from(raw)).unwrap();
        let mut dst = vec![0.0f32; cols];
        for r in 0..rows {
            m.row_into(r, &mut dst).unwrap();
            for (i, (a, b)) in dst.iter().zip(&vals[r * cols..(r + 1) * cols]).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{name} row {r} elem {i}: {a} vs {b}");
            }
        }
    }
    // Every type except F32 (trivial) has a fixture.
    assert_eq!(seen.len(), ALL_TYPES.len() - 1, "{seen:?}");
}

#[test]
fn dequantize_row_rejects_bad_lengths() {
    let mut dst = vec![0.0; 64];
    let e = dequantize_row(GgmlType::Q4_1, &[0u8; 39], &mut dst).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::DataLength {
                expected: 40,
                actual: 39,
                ..
            }
        ),
        "{e}"
    );
    let mut dst = vec![0.0; 48];
    let e = dequantize_row(GgmlType::Q8_0, &[0u8; 51], &mut dst).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::ColsNotBlockMultiple {
                cols: 48,
                block_len: 32,
                ..
            }
        ),
        "{e}"
    );
    let mut dst = vec![0.0; 256];
    assert!(dequantize_row(GgmlType::Q6K, &[0u8; 211], &mut dst).is_err());
}

#[test]
fn qmatrix_rejects_bad_shapes() {
    let e = QMatrix::new(GgmlType::Q4_1, 4, 64, bytes::Bytes::from(vec![0u8; 159])).unwrap_err();
    assert!(
        matches!(
            e,
            QuantError::DataLength {
                expected: 160,
                actual: 159,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Q4_1 matrix [4 x 64]"), "{e}");
    let e = QMatrix::new(GgmlType::Q4K, 1, 128, bytes::Bytes::new()).unwrap_err();
    assert!(matches!(e, QuantError::ColsNotBlockMultiple { .. }), "{e}");
    assert!(QMatrix::new(GgmlType::F32, usize::MAX, 2, bytes::Bytes::new()).is_err());
    let m = QMatrix::new(GgmlType::Q8_0, 2, 32, bytes::Bytes::from(vec![0u8; 68])).unwrap();
    let mut dst = vec![0.0; 32];
    assert!(matches!(
        m.row_into(2, &mut dst),
        Err(QuantError::RowOutOfRange { row: 2, rows: 2 })
    ));
    assert!(matches!(m.row_into(0, &mut dst[..31]), Err(QuantError::Len { .. })));
}
