//! Each limit in `TensorLimits`, just inside and just outside.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wafer_host_apis::tensor::pool::CpuDeviceConfig;
use wafer_host_apis::tensor::{
    Budget, DType, Device, DevicePool, Exec, PoolConfig, TensorError, TensorLimits, TensorSession,
};

fn session(limits: TensorLimits) -> TensorSession {
    TensorSession::from_exec(Exec::new(Device::cpu(0, 1).unwrap(), Budget::unlimited(), limits))
}

fn pool(limits: TensorLimits, memory: u64) -> DevicePool {
    DevicePool::new(&PoolConfig {
        cuda: wafer_host_apis::tensor::pool::CudaMode::Off,
        cpu: vec![CpuDeviceConfig {
            threads: 1,
            memory_bytes: Some(memory),
        }],
        model_memory_percent: 0,
        tensor: limits,
        ..Default::default()
    })
    .unwrap()
}

fn f32s(n: usize) -> Vec<u8> {
    vec![0; n * 4]
}

#[test]
fn defaults_are_documented_values() {
    let d = TensorLimits::default();
    assert_eq!(
        (
            d.max_rank,
            d.max_elements,
            d.max_live_tensors,
            d.max_bytes_per_invocation,
            d.max_bytes_per_tenant,
            d.max_matmul_flops
        ),
        (8, 1 << 28, 4096, 2 << 30, 8 << 30, 1 << 34)
    );
    assert!(TensorLimits { max_rank: 9, ..d }.validate().is_err());
}

#[test]
fn max_rank_obeyed() {
    let mut s = session(TensorLimits {
        max_rank: 3,
        ..Default::default()
    });
    let x = s.create(&[1, 2, 3], DType::F32, &f32s(6)).unwrap();
    s.reshape(x, &[6, 1, 1]).unwrap();
}

#[test]
fn max_rank_violated() {
    let mut s = session(TensorLimits {
        max_rank: 3,
        ..Default::default()
    });
    let e = s.create(&[1, 1, 2, 3], DType::F32, &f32s(6)).unwrap_err();
    assert!(e.to_string().contains("tensor.max_rank"), "{e}");
    // Ops that would produce a higher rank fail the same way.
    let table = s.create(&[4, 2, 2], DType::F32, &f32s(16)).unwrap();
    let idx = s.create(&[2, 1], DType::I64, &[0; 16]).unwrap();
    assert!(matches!(s.gather(table, idx), Err(TensorError::InvalidArgument(_))));
    let x = s.create(&[2, 3], DType::F32, &f32s(6)).unwrap();
    assert!(s.reshape(x, &[1, 1, 2, 3]).is_err());
}

#[test]
fn max_matmul_flops_obeyed() {
    // 2·2·3·4·5 = 240 flops.
    let mut s = session(TensorLimits {
        max_matmul_flops: 240,
        ..Default::default()
    });
    let a = s.create(&[2, 3, 5], DType::F32, &f32s(30)).unwrap();
    let b = s.create(&[5, 4], DType::F32, &f32s(20)).unwrap();
    let c = s.matmul(a, b).unwrap();
    assert_eq!(s.dims(c).unwrap(), vec![2, 3, 4]);
}

#[test]
fn max_matmul_flops_violated() {
    let mut s = session(TensorLimits {
        max_matmul_flops: 239,
        ..Default::default()
    });
    let a = s.create(&[2, 3, 5], DType::F32, &f32s(30)).unwrap();
    let b = s.create(&[5, 4], DType::F32, &f32s(20)).unwrap();
    let e = s.matmul(a, b).unwrap_err();
    assert!(matches!(e, TensorError::OverQuota { requested: 240, .. }), "{e}");
    assert!(e.to_string().contains("tensor.max_matmul_flops"), "{e}");
    // A flop count past u64 is over the limit, not wrapped round.
    let d = TensorLimits::default();
    assert!(d.check_matmul(1, 2048, 2048, 2048).is_ok());
    assert!(d.check_matmul(1, 2048, 2048, 2049).is_err());
    assert!(d.check_matmul(usize::MAX, 1 << 20, 1 << 20, 1 << 20).is_err());
}

#[test]
fn max_elements_obeyed() {
    let mut s = session(TensorLimits {
        max_elements: 100,
        ..Default::default()
    });
    let a = s.create(&[10, 10], DType::F32, &f32s(100)).unwrap();
    s.matmul(a, a).unwrap();
}

#[test]
fn max_elements_violated() {
    let mut s = session(TensorLimits {
        max_elements: 100,
        ..Default::default()
    });
    let e = s.create(&[101], DType::U8, &[0; 101]).unwrap_err();
    assert!(e.to_string().contains("tensor.max_elements"), "{e}");
    let a = s.create(&[11, 1], DType::F32, &f32s(11)).unwrap();
    let b = s.create(&[1, 11], DType::F32, &f32s(11)).unwrap();
    assert!(matches!(s.matmul(a, b), Err(TensorError::InvalidArgument(_)))); // 121 elements
    assert!(matches!(
        s.binary(wafer_host_apis::tensor::BinaryOp::Add, a, b),
        Err(TensorError::InvalidArgument(_))
    ));
}

#[test]
fn max_live_tensors_obeyed() {
    let mut s = session(TensorLimits {
        max_live_tensors: 3,
        ..Default::default()
    });
    let a = s.create(&[1], DType::F32, &f32s(1)).unwrap();
    let b = s.create(&[1], DType::F32, &f32s(1)).unwrap();
    s.binary(wafer_host_apis::tensor::BinaryOp::Add, a, b).unwrap();
    assert_eq!(s.live(), 3);
    s.remove(a).unwrap();
    s.create(&[1], DType::F32, &f32s(1)).unwrap();
}

#[test]
fn max_live_tensors_violated() {
    let mut s = session(TensorLimits {
        max_live_tensors: 3,
        ..Default::default()
    });
    let a = s.create(&[4], DType::F32, &f32s(4)).unwrap();
    s.create(&[1], DType::F32, &f32s(1)).unwrap();
    // top_k needs two slots and only one is free: refused before computing.
    assert!(matches!(s.top_k(a, 1), Err(TensorError::OverQuota { .. })));
    s.create(&[1], DType::F32, &f32s(1)).unwrap();
    let e = s.create(&[1], DType::F32, &f32s(1)).unwrap_err();
    assert!(e.to_string().contains("tensor.max_live_tensors"), "{e}");
    assert!(matches!(
        s.unary(wafer_host_apis::tensor::UnaryOp::Relu, a),
        Err(TensorError::OverQuota { .. })
    ));
    assert_eq!(s.live(), 3);
}

#[test]
fn memory_per_invocation_obeyed() {
    let p = pool(
        TensorLimits {
            max_bytes_per_invocation: 400,
            ..Default::default()
        },
        1 << 20,
    );
    let mut s = TensorSession::new(p.lease("t"));
    let a = s.create(&[100], DType::F32, &f32s(100)).unwrap();
    assert_eq!(s.memory_used(), 400);
    s.remove(a).unwrap();
    assert_eq!(s.memory_used(), 0);
    s.create(&[50], DType::I64, &[0; 400]).unwrap();
}

#[test]
fn memory_per_invocation_violated() {
    let p = pool(
        TensorLimits {
            max_bytes_per_invocation: 400,
            ..Default::default()
        },
        1 << 20,
    );
    let mut s = TensorSession::new(p.lease("t"));
    let a = s.create(&[99], DType::F32, &f32s(99)).unwrap();
    let e = s.create(&[5], DType::U8, &[0; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::OverQuota {
                limit: 400,
                used: 396,
                requested: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tensor.max_bytes_per_invocation"), "{e}");
    // An op whose output would not fit is refused before it computes.
    assert!(matches!(
        s.unary(wafer_host_apis::tensor::UnaryOp::Exp, a),
        Err(TensorError::OverQuota { .. })
    ));
    // Reshape shares the buffer, so it costs nothing.
    s.reshape(a, &[9, 11]).unwrap();
    assert_eq!(s.memory_used(), 396);
}

#[test]
fn memory_per_tenant_obeyed() {
    let limits = TensorLimits {
        max_bytes_per_invocation: 400,
        max_bytes_per_tenant: 600,
        ..Default::default()
    };
    let p = pool(limits, 1 << 20);
    let mut a = TensorSession::new(p.lease("acme"));
    let mut b = TensorSession::new(p.lease("acme"));
    a.create(&[100], DType::F32, &f32s(100)).unwrap();
    b.create(&[50], DType::F32, &f32s(50)).unwrap();
    // Another tenant has its own quota.
    let mut c = TensorSession::new(p.lease("other"));
    c.create(&[100], DType::F32, &f32s(100)).unwrap();
}

#[test]
fn memory_per_tenant_violated() {
    let limits = TensorLimits {
        max_bytes_per_invocation: 400,
        max_bytes_per_tenant: 600,
        ..Default::default()
    };
    let p = pool(limits, 1 << 20);
    let mut a = TensorSession::new(p.lease("acme"));
    let mut b = TensorSession::new(p.lease("acme"));
    a.create(&[100], DType::F32, &f32s(100)).unwrap();
    b.create(&[50], DType::F32, &f32s(50)).unwrap();
    let e = b.create(&[1], DType::F32, &f32s(1)).unwrap_err();
    assert!(e.to_string().contains("tensor.max_bytes_per_tenant"), "{e}");
    drop(a); // the session ends: its memory returns to the tenant
    b.create(&[1], DType::F32, &f32s(1)).unwrap();
}

#[test]
fn device_memory_runs_out_with_a_typed_error() {
    let p = pool(TensorLimits::default(), 1000);
    let mut s = TensorSession::new(p.lease("t"));
    s.create(&[200], DType::F32, &f32s(200)).unwrap();
    let e = s.create(&[100], DType::F32, &f32s(100)).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::OutOfMemory {
                requested: 400,
                available: 200,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("out of memory on cpu:0"), "{e}");
}

#[test]
fn huge_shapes_are_refused_without_allocating() {
    let mut s = session(TensorLimits::default());
    for dims in [vec![usize::MAX, 2], vec![1 << 40, 1 << 40], vec![1 << 30, 1]] {
        assert!(
            matches!(s.create(&dims, DType::F32, &[]), Err(TensorError::InvalidArgument(_))),
            "{dims:?}"
        );
    }
    // A zero-sized matmul under an enormous batch does not enumerate it.
    let a = s
        .create(&[1 << 20, 1 << 20, 0, 1], DType::F32, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let b = s.create(&[1, 1], DType::F32, &f32s(1)).unwrap();
    let c = s.matmul(a, b).unwrap();
    assert_eq!(s.dims(c).unwrap(), vec![1 << 20, 1 << 20, 0, 1]);
}
