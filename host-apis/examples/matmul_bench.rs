//! Multiply-adds per second of the quantized matmul on SmolLM2-135M's shapes, by batch size,
//! with the GGML-layout row kernels and the interleaved group kernels. Prints one line per case.
//!
//! `cargo run --release -p wafer-host-apis --example matmul_bench -- [THREADS]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use bytes::Bytes;
use wafer_host_apis::model::quant::{Activations, GgmlType, QMatrix, matmul};

fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let bytes = ty.row_bytes(cols).unwrap() * rows;
    let mut state = seed;
    let mut data: Vec<u8> = (0..bytes)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    // Sane f16 scales: every block starts with d (and m) = 0.01.
    let bb = ty.block_bytes();
    let scales = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q4K | GgmlType::Q5K) {
        2
    } else {
        1
    };
    for blk in data.chunks_exact_mut(bb) {
        let d = half::f16::from_f32(0.01).to_le_bytes();
        if ty == GgmlType::Q6K {
            // Q6_K keeps its scale at the end of the block.
            blk[bb - 2..].copy_from_slice(&d);
            continue;
        }
        for s in 0..scales {
            blk[2 * s..2 * s + 2].copy_from_slice(&d);
        }
    }
    QMatrix::new(ty, rows, cols, Bytes::from(data)).unwrap()
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // (type, rows, cols) of one layer's products plus the output head, weighted by how often a
    // token meets them (30 layers).
    let shapes = [
        (GgmlType::Q4_1, 1536, 576, 60),
        (GgmlType::Q4_1, 576, 1536, 30),
        (GgmlType::Q4_1, 576, 576, 60),
        (GgmlType::Q8_0, 49152, 576, 1),
    ];
    for interleaved in [false, true] {
        for tokens in [1usize, 4, 8, 16] {
            let mut macs = 0f64;
            let mut secs = 0f64;
            for &(ty, rows, cols, times) in &shapes {
                let mut m = random_matrix(ty, rows, cols, rows as u64);
                if interleaved {
                    m = m.interleaved();
                }
                let x: Vec<f32> = (0..tokens * cols)
                    .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                    .collect();
                let acts = Activations::prepare(&x, tokens, cols, &[ty]).unwrap();
                let mut out = vec![0f32; tokens * rows];
                let reps = (times * 20).max(20);
                matmul(&[&m], &acts, &mut [out.as_mut_slice()], &pool).unwrap();
                let t = Instant::now();
                for _ in 0..reps {
                    matmul(&[&m], &acts, &mut [out.as_mut_slice()], &pool).unwrap();
                }
                secs += t.elapsed().as_secs_f64() / reps as f64 * times as f64;
                macs += (rows * cols * tokens * times) as f64;
            }
            println!(
                "interleaved {interleaved:5} tokens {tokens:2}: {:6.1} G MAC/s, {:6.1} tokens/s of matmul",
                macs / secs / 1e9,
                tokens as f64 / secs
            );
        }
    }
    // The k-quants (Qwen2.5's Q4_K_M files use Q4_K and Q6_K) on a Qwen2.5-0.5B feed-forward
    // shape: the f32 path (widen each row, f32 dots) against the interleaved group kernels.
    for (ty, interleaved) in [
        (GgmlType::Q4K, false),
        (GgmlType::Q4K, true),
        (GgmlType::Q5K, false),
        (GgmlType::Q5K, true),
        (GgmlType::Q6K, false),
        (GgmlType::Q6K, true),
    ] {
        let (rows, cols) = (896, 4864);
        let mut m = random_matrix(ty, rows, cols, 7);
        if interleaved {
            m = m.interleaved();
        }
        for tokens in [1usize, 8] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let acts = Activations::prepare(&x, tokens, cols, &[ty]).unwrap();
            let mut out = vec![0f32; tokens * rows];
            matmul(&[&m], &acts, &mut [out.as_mut_slice()], &pool).unwrap();
            let reps = 50;
            let t = Instant::now();
            for _ in 0..reps {
                matmul(&[&m], &acts, &mut [out.as_mut_slice()], &pool).unwrap();
            }
            let secs = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{} {rows}x{cols} interleaved {interleaved:5} tokens {tokens}: {:6.1} G MAC/s",
                ty.name(),
                (rows * cols * tokens) as f64 / secs / 1e9
            );
        }
    }
}
