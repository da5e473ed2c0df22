//! CPU f32 matmul throughput of the tensor backend.
//!
//! Run with: `cargo run --release -p wafer-host-apis --example matmul_bench [threads]`
//!
//! Prints GFLOP/s (2·n³ per product) for n = 256 … 4096, best and median
//! of several runs after a warm-up; `bench/tensor/peers.py` times NumPy on
//! the same sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use wafer_host_apis::tensor::{Budget, Device, Exec, TensorLimits};

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let exec = Exec::new(
        Device::cpu(0, threads).unwrap(),
        Budget::unlimited(),
        // 4096³ is over the default per-call work limit, which guards guests.
        TensorLimits {
            max_matmul_flops: u64::MAX,
            ..Default::default()
        },
    );
    println!("wafer cpu f32 matmul, {threads} threads");
    println!("{:>6} {:>12} {:>12} {:>6}", "n", "best GF/s", "median GF/s", "runs");
    for n in [256usize, 512, 1024, 2048, 4096] {
        let data: Vec<f32> = (0..n * n).map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5).collect();
        let a = exec.from_slice(&[n, n], &data).unwrap();
        let b = exec.from_slice(&[n, n], &data).unwrap();
        drop(exec.matmul(&a, &b).unwrap()); // warm-up: pool threads, packing buffers
        let flops = 2.0 * (n as f64).powi(3);
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < 3 || (start.elapsed() < Duration::from_secs(2) && times.len() < 50) {
            let t = Instant::now();
            let c = exec.matmul(&a, &b).unwrap();
            times.push(t.elapsed().as_secs_f64());
            drop(c);
        }
        times.sort_by(f64::total_cmp);
        let best = flops / times[0] / 1e9;
        let median = flops / times[times.len() / 2] / 1e9;
        println!("{n:>6} {best:>12.1} {median:>12.1} {:>6}", times.len());
    }
}
