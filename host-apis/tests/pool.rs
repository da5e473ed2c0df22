//! Placement and accounting of the device pool, with several CPU devices
//! standing in for GPUs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wafer_host_apis::tensor::pool::CudaMode;
use wafer_host_apis::tensor::{DType, DeviceId, DeviceKind, DevicePool, PoolConfig, TensorError, TensorSession};

const MIB: u64 = 1 << 20;

fn three_cpus() -> DevicePool {
    let cfg: PoolConfig = toml::from_str(
        r#"
        cuda = "off"
        model_memory_percent = 50
        [[cpu]]
        threads = 1
        memory_bytes = 4194304
        [[cpu]]
        threads = 1
        memory_bytes = 8388608
        [[cpu]]
        threads = 2
        memory_bytes = 8388608
        "#,
    )
    .unwrap();
    DevicePool::new(&cfg).unwrap()
}

fn cpu(i: usize) -> DeviceId {
    DeviceId {
        kind: DeviceKind::Cpu,
        ordinal: i,
    }
}

#[test]
fn config_is_toml_with_documented_defaults_and_no_unknown_keys() {
    let cfg: PoolConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, PoolConfig::default());
    assert_eq!(cfg.cuda, CudaMode::Auto);
    assert_eq!(cfg.model_memory_percent, 60);
    assert_eq!(cfg.cpu.len(), 1);
    let cfg: PoolConfig = toml::from_str("cuda = \"required\"\n[tensor]\nmax_rank = 4").unwrap();
    assert_eq!((cfg.cuda, cfg.tensor.max_rank), (CudaMode::Required, 4));
    let e = toml::from_str::<PoolConfig>("cuda = \"auto\"\nmemory = 3").unwrap_err();
    assert!(e.to_string().contains("unknown field `memory`"), "{e}");
    let e = toml::from_str::<PoolConfig>("[tensor]\nmax_ranks = 3").unwrap_err();
    assert!(e.to_string().contains("unknown field `max_ranks`"), "{e}");
    let e = toml::from_str::<PoolConfig>("cuda = \"sometimes\"").unwrap_err();
    assert!(e.to_string().contains("sometimes"), "{e}");
    let bad = PoolConfig {
        model_memory_percent: 101,
        ..Default::default()
    };
    assert!(DevicePool::new(&bad).is_err());
}

#[test]
fn devices_are_discovered_with_their_memory() {
    let p = three_cpus();
    assert_eq!(p.devices(), vec![cpu(0), cpu(1), cpu(2)]);
    let s = p.stats();
    assert_eq!(
        s.iter().map(|d| d.capacity).collect::<Vec<_>>(),
        vec![4 * MIB, 8 * MIB, 8 * MIB]
    );
    assert_eq!(s[2].name, "CPU (2 threads)");
    assert_eq!(p.cuda_status(), "CUDA disabled by config (cuda = \"off\")");
}

#[test]
fn leases_go_to_the_least_loaded_device() {
    let p = three_cpus();
    let a = p.lease("t");
    let b = p.lease("t");
    let c = p.lease("t");
    let mut got = vec![a.device(), b.device(), c.device()];
    got.sort();
    assert_eq!(got, vec![cpu(0), cpu(1), cpu(2)]);
    // With equal lease counts, the device holding least memory wins.
    let mut sa = TensorSession::new(a);
    sa.create(&[1024], DType::F32, &[0; 4096]).unwrap();
    let d = p.lease("t");
    assert_ne!(d.device(), sa.device());
    drop(b);
    drop(c);
    let e = p.lease("t");
    assert_eq!(p.stats().iter().map(|s| s.leases).sum::<usize>(), 3);
    assert_ne!(e.device(), sa.device());
}

#[test]
fn models_go_where_memory_is_free_and_stay_there() {
    let p = three_cpus();
    let m1 = p.place_model("llama", 6 * MIB).unwrap();
    assert_ne!(m1.device(), cpu(0)); // cpu:0 has only 4 MiB
    let m2 = p.place_model("mistral", 6 * MIB).unwrap();
    assert_ne!(m1.device(), m2.device());
    // A third does not fit anywhere.
    let e = p.place_model("big", 6 * MIB).unwrap_err();
    assert!(matches!(e, TensorError::OutOfMemory { .. }), "{e}");
    // Invocations using a model lease its device.
    let lease = p.lease_on(m1.device(), "t").unwrap();
    assert_eq!(lease.device(), m1.device());
    let stats = p.stats();
    let on = |id: DeviceId| stats.iter().find(|s| s.id == id.to_string()).unwrap().clone();
    assert_eq!(on(m1.device()).models, 6 * MIB);
    assert_eq!(on(m1.device()).leases, 1);
    drop(m1);
    assert_eq!(p.stats().iter().map(|s| s.models).sum::<u64>(), 6 * MIB);
    assert!(
        p.lease_on(
            DeviceId {
                kind: DeviceKind::Cuda,
                ordinal: 0
            },
            "t"
        )
        .is_err()
    );
}

#[test]
fn tensors_cannot_take_the_memory_reserved_for_models() {
    let p = three_cpus();
    // cpu:0 has 4 MiB, half reserved for models: tensors get 2 MiB.
    let mut s = TensorSession::new(p.lease_on(cpu(0), "t").unwrap());
    s.create(&[512 * 1024], DType::F32, &vec![0; 2 * MIB as usize]).unwrap();
    let e = s.create(&[1], DType::F32, &[0; 4]).unwrap_err();
    assert!(
        matches!(e, TensorError::OutOfMemory { ref device, .. } if device == "cpu:0"),
        "{e}"
    );
    // Models may still use the rest, and no more.
    let m = p.place_model_on(cpu(0), "small", 2 * MIB).unwrap();
    assert!(p.place_model_on(cpu(0), "more", 1).is_err());
    let st = &p.stats()[0];
    assert_eq!((st.models, st.invocations), (2 * MIB, 2 * MIB));
    drop(s);
    drop(m);
    let st = &p.stats()[0];
    assert_eq!((st.models, st.invocations, st.leases), (0, 0, 0));
}

#[test]
fn sessions_on_different_devices_keep_their_tensors_apart() {
    let p = three_cpus();
    let mut a = TensorSession::new(p.lease_on(cpu(0), "t").unwrap());
    let mut b = TensorSession::new(p.lease_on(cpu(1), "t").unwrap());
    let x = a.create(&[2], DType::F32, &[0; 8]).unwrap();
    let y = b.create(&[2], DType::F32, &[0; 8]).unwrap();
    let tx = a.get(x).unwrap().clone();
    let ty = b.get(y).unwrap().clone();
    let e = a.exec().add(&tx, &ty).unwrap_err();
    assert!(e.to_string().contains("cpu:0 and cpu:1"), "{e}");
    assert!(b.exec().unary(wafer_host_apis::tensor::UnaryOp::Exp, &tx).is_err());
}
