//! The handle table, memory release and usage of a `TensorSession`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wafer_host_apis::tensor::pool::{CpuDeviceConfig, CudaMode};
use wafer_host_apis::tensor::{
    BinaryOp, DType, DevicePool, PoolConfig, ReduceOp, TensorError, TensorId, TensorSession, UnaryOp,
};

fn pool() -> DevicePool {
    DevicePool::new(&PoolConfig {
        cuda: CudaMode::Off,
        cpu: vec![CpuDeviceConfig {
            threads: 2,
            memory_bytes: Some(1 << 30),
        }],
        ..Default::default()
    })
    .unwrap()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_small_forward_pass_through_handles() {
    let p = pool();
    let mut s = TensorSession::new(p.lease("t"));
    let x = s
        .create(&[2, 3], DType::F32, &bytes(&[1., 2., 3., 4., 5., 6.]))
        .unwrap();
    let w = s
        .create(&[3, 2], DType::F32, &bytes(&[1., 0., 0., 1., 1., 1.]))
        .unwrap();
    let h = s.matmul(x, w).unwrap();
    let h = s.binary_scalar(BinaryOp::Sub, h, 5.0).unwrap();
    let h = s.unary(UnaryOp::Relu, h).unwrap();
    let p1 = s.softmax(h, -1, false).unwrap();
    let am = s.reduce(ReduceOp::ArgMax, p1, -1, false).unwrap();
    assert_eq!(s.dims(h).unwrap(), vec![2, 2]);
    assert_eq!(s.dtype(am).unwrap(), DType::I64);
    let out: Vec<i64> = s
        .read(am)
        .unwrap()
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // rows of x·w: [4, 5] and [10, 11] → minus 5, relu: [0, 0], [5, 6]
    assert_eq!(out, vec![0, 1]);
    let (v, i) = s.top_k(x, 2).unwrap();
    assert_eq!(s.dims(v).unwrap(), vec![2, 2]);
    assert_eq!(s.dtype(i).unwrap(), DType::I64);
}

#[test]
fn dropped_handles_free_memory_and_are_never_reused() {
    let p = pool();
    let mut s = TensorSession::new(p.lease("t"));
    let a = s.create(&[256], DType::F32, &[0; 1024]).unwrap();
    let b = s.unary(UnaryOp::Exp, a).unwrap();
    assert_eq!(s.memory_used(), 2048);
    s.remove(a).unwrap();
    assert_eq!(s.memory_used(), 1024);
    assert!(matches!(s.remove(a), Err(TensorError::InvalidArgument(_))));
    assert!(matches!(s.read(a), Err(TensorError::InvalidArgument(_))));
    let c = s.create(&[1], DType::F32, &[0; 4]).unwrap();
    assert!(c != a && c != b);
    assert!(matches!(s.dims(TensorId(999)), Err(TensorError::InvalidArgument(_))));
}

#[test]
fn ending_the_session_releases_everything() {
    let p = pool();
    {
        let mut s = TensorSession::new(p.lease("t"));
        for _ in 0..10 {
            s.create(&[1000], DType::F32, &[0; 4000]).unwrap();
        }
        assert_eq!(p.stats()[0].invocations, 40_000);
        assert_eq!(p.stats()[0].leases, 1);
    }
    assert_eq!(p.stats()[0].invocations, 0);
    assert_eq!(p.stats()[0].leases, 0);
}

#[test]
fn usage_counts_ops_time_and_bytes_moved() {
    let p = pool();
    let mut s = TensorSession::new(p.lease("t"));
    let a = s.create(&[64, 64], DType::F32, &[0; 64 * 64 * 4]).unwrap();
    let b = s.matmul(a, a).unwrap();
    s.read(b).unwrap();
    let u = s.usage();
    assert_eq!(u.cpu.bytes_to_device, 64 * 64 * 4);
    assert_eq!(u.cpu.bytes_to_host, 64 * 64 * 4);
    assert_eq!(u.cpu.ops, 3);
    assert!(u.cpu.device_ns > 0);
    assert_eq!(u.cuda, Default::default());
    // Failed ops cost nothing.
    let c = s.create(&[3, 3], DType::F32, &[0; 36]).unwrap();
    assert!(s.matmul(a, c).is_err());
    assert_eq!(s.usage().cpu.ops, 4);
}
