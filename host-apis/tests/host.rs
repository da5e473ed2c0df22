//! The host side of `wafer:ai/tensor` without wasm: a `TensorCtx` on a CPU
//! pool from inline TOML, driven through the generated host traits the way
//! the component glue calls them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;

use wafer_host_apis::tensor::bindings::{BinaryOp, Dtype, Error, Host, HostTensor, ReduceOp, UnaryOp};
use wafer_host_apis::tensor::{DevicePool, PoolConfig, TENSOR_INTERFACE, TensorCtx, TensorHandle, TensorLimits};
use wasmtime::component::Resource;

type Handle = Resource<TensorHandle>;

/// A one-CPU pool of `memory` bytes (all of it for tensors), with the
/// `[tensor]` limits in `limits` (TOML lines).
fn pool_with(memory: u64, limits: &str) -> DevicePool {
    let cfg: PoolConfig = toml::from_str(&format!(
        r#"
        cuda = "off"
        model_memory_percent = 0
        [[cpu]]
        threads = 1
        memory_bytes = {memory}
        [tensor]
        {limits}
        "#
    ))
    .unwrap();
    DevicePool::new(&cfg).unwrap()
}

fn setup(limits: &str) -> (DevicePool, TensorCtx) {
    let pool = pool_with(64 << 20, limits);
    let ctx = TensorCtx::new(pool.clone(), "tenant-a");
    (pool, ctx)
}

/// The value of a call that must succeed.
fn ok<T>(r: wasmtime::Result<Result<T, Error>>) -> T {
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("guest error: {e:?}"),
        Err(e) => panic!("trap: {e:#}"),
    }
}

/// The guest error of a call that must fail without trapping.
fn err<T: Debug>(r: wasmtime::Result<Result<T, Error>>) -> Error {
    match r {
        Ok(Ok(v)) => panic!("expected an error, got {v:?}"),
        Ok(Err(e)) => e,
        Err(e) => panic!("trap: {e:#}"),
    }
}

/// A borrow of a handle, as the component glue passes `borrow<tensor>`.
fn b(h: &Handle) -> Handle {
    Resource::new_borrow(h.rep())
}

fn f32s(ctx: &mut TensorCtx, shape: &[u32], data: &[f32]) -> Handle {
    ok(ctx.from_f32(shape.to_vec(), data.to_vec()))
}

fn read(ctx: &mut TensorCtx, h: &Handle) -> Vec<f32> {
    ok(ctx.to_f32(b(h)))
}

fn shape(ctx: &mut TensorCtx, h: &Handle) -> Vec<u32> {
    ctx.shape(b(h)).unwrap()
}

fn tensor_bytes(pool: &DevicePool) -> u64 {
    pool.stats()[0].invocations
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn the_interface_name_matches_the_wit() {
    let wit = std::fs::read_to_string(wafer_host_apis::wit_dir().join("tensor.wit")).unwrap();
    assert!(wit.contains("interface tensor"));
    let world = std::fs::read_to_string(wafer_host_apis::wit_dir().join("world.wit")).unwrap();
    assert!(world.contains("package wafer:ai@0.1.0;"));
    assert_eq!(TENSOR_INTERFACE, "wafer:ai/tensor@0.1.0");
}

#[test]
fn add_to_linker_defines_the_interface() {
    struct Data {
        tensor: TensorCtx,
    }
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::<Data>::new(&engine);
    wafer_host_apis::tensor::add_to_linker(&mut linker, |d| &mut d.tensor).unwrap();
    // A second definition of the same interface is refused: the first took.
    assert!(wafer_host_apis::tensor::add_to_linker(&mut linker, |d| &mut d.tensor).is_err());
    let (pool, _) = setup("");
    let data = Data {
        tensor: TensorCtx::new(pool, "t"),
    };
    assert_eq!(data.tensor.usage(), Default::default());
}

#[test]
fn nothing_is_leased_until_the_first_tensor() {
    let (pool, mut ctx) = setup("");
    assert_eq!(pool.stats()[0].leases, 0);
    assert_eq!(ctx.usage(), Default::default());
    // An empty concat makes no tensor and so leases nothing.
    assert!(matches!(err(ctx.concat(vec![], 0)), Error::InvalidArgument(_)));
    assert_eq!(pool.stats()[0].leases, 0);
    let x = f32s(&mut ctx, &[1], &[1.0]);
    assert_eq!(pool.stats()[0].leases, 1);
    ok(ctx.unary(UnaryOp::Relu, b(&x)));
    assert_eq!(pool.stats()[0].leases, 1, "one lease per invocation");
    drop(ctx);
    assert_eq!(pool.stats()[0].leases, 0);
    assert_eq!(tensor_bytes(&pool), 0);
}

#[test]
fn create_from_f32_i64_bytes_and_scalar_then_read_back() {
    let (_pool, mut ctx) = setup("");
    let x = f32s(&mut ctx, &[2, 3], &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(shape(&mut ctx, &x), vec![2, 3]);
    assert_eq!(ctx.dtype(b(&x)).unwrap(), Dtype::F32);
    assert_eq!(ctx.device(b(&x)).unwrap(), "cpu:0");
    assert_eq!(read(&mut ctx, &x), vec![1., 2., 3., 4., 5., 6.]);
    let bytes = ok(ctx.to_bytes(b(&x)));
    assert_eq!(bytes.len(), 24);
    assert_eq!(&bytes[4..8], &2f32.to_le_bytes());

    let i = ok(ctx.from_i64(vec![3], vec![-1, 0, 7]));
    assert_eq!(ctx.dtype(b(&i)).unwrap(), Dtype::I64);
    assert_eq!(
        ok(ctx.to_bytes(b(&i))),
        [-1i64, 0, 7].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
    );
    // to-f32 converts whatever the dtype.
    assert_eq!(read(&mut ctx, &i), vec![-1., 0., 7.]);

    let raw: Vec<u8> = [10i32, -20].iter().flat_map(|v| v.to_le_bytes()).collect();
    let r = ok(ctx.from_bytes(vec![2, 1], Dtype::I32, raw.clone()));
    assert_eq!(
        (shape(&mut ctx, &r), ctx.dtype(b(&r)).unwrap()),
        (vec![2, 1], Dtype::I32)
    );
    assert_eq!(ok(ctx.to_bytes(b(&r))), raw);
    let h = ok(ctx.from_bytes(
        vec![2],
        Dtype::F16,
        [0x3c00u16, 0xc000].iter().flat_map(|v| v.to_le_bytes()).collect(),
    ));
    assert_eq!(read(&mut ctx, &h), vec![1.0, -2.0]);

    let s = ok(ctx.scalar(Dtype::Bf16, 1.5));
    assert_eq!(shape(&mut ctx, &s), Vec::<u32>::new());
    assert_eq!(ctx.dtype(b(&s)).unwrap(), Dtype::Bf16);
    assert_eq!(read(&mut ctx, &s), vec![1.5]);

    // An empty tensor is a tensor.
    let e = f32s(&mut ctx, &[0, 5], &[]);
    assert_eq!(shape(&mut ctx, &e), vec![0, 5]);
    assert!(read(&mut ctx, &e).is_empty());
}

#[test]
fn matmul_binary_with_broadcasting_and_scalars() {
    let (_pool, mut ctx) = setup("");
    let a = f32s(&mut ctx, &[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let w = f32s(&mut ctx, &[3, 1], &[1., 0., -1.]);
    let c = ok(ctx.matmul(b(&a), b(&w)));
    assert_eq!(shape(&mut ctx, &c), vec![2, 1]);
    assert_eq!(read(&mut ctx, &c), vec![-2., -2.]);

    let row = f32s(&mut ctx, &[3], &[10., 20., 30.]);
    let sum = ok(ctx.binary(BinaryOp::Add, b(&a), b(&row)));
    assert_eq!(read(&mut ctx, &sum), vec![11., 22., 33., 14., 25., 36.]);
    let col = f32s(&mut ctx, &[2, 1], &[1., 2.]);
    let q = ok(ctx.binary(BinaryOp::Div, b(&a), b(&col)));
    assert_eq!(read(&mut ctx, &q), vec![1., 2., 3., 2., 2.5, 3.]);
    let m = ok(ctx.binary_scalar(BinaryOp::Mul, b(&a), 0.5));
    assert_eq!(read(&mut ctx, &m), vec![0.5, 1., 1.5, 2., 2.5, 3.]);
    let t = ok(ctx.transpose(b(&a), 0, -1));
    assert_eq!(shape(&mut ctx, &t), vec![3, 2]);
    assert_eq!(read(&mut ctx, &t), vec![1., 4., 2., 5., 3., 6.]);
}

#[test]
fn softmax_and_log_softmax_along_an_axis() {
    let (_pool, mut ctx) = setup("");
    let x = f32s(&mut ctx, &[2, 2], &[0., 0., 0., 2f32.ln()]);
    let s = ok(ctx.softmax(b(&x), -1));
    assert_close(&read(&mut ctx, &s), &[0.5, 0.5, 1. / 3., 2. / 3.]);
    let l = ok(ctx.log_softmax(b(&x), 1));
    assert_close(
        &read(&mut ctx, &l),
        &[0.5f32.ln(), 0.5f32.ln(), (1f32 / 3.).ln(), (2f32 / 3.).ln()],
    );
    let cols = ok(ctx.softmax(b(&x), 0));
    assert_close(&read(&mut ctx, &cols)[..1], &[0.5]);
}

#[test]
fn top_k_returns_values_and_indices() {
    let (_pool, mut ctx) = setup("");
    let x = f32s(&mut ctx, &[2, 4], &[1., 4., 2., 4., 0., -1., 3., 2.]);
    let (v, i) = ok(ctx.top_k(b(&x), 2));
    assert_eq!(shape(&mut ctx, &v), vec![2, 2]);
    assert_eq!(read(&mut ctx, &v), vec![4., 4., 3., 2.]);
    assert_eq!(ctx.dtype(b(&i)).unwrap(), Dtype::I64);
    // Ties go to the lower index.
    assert_eq!(read(&mut ctx, &i), vec![1., 3., 2., 3.]);
    ctx.drop(v).unwrap();
    ctx.drop(i).unwrap();
}

#[test]
fn gather_rows_by_index() {
    let (_pool, mut ctx) = setup("");
    let table = f32s(&mut ctx, &[3, 2], &[0., 1., 10., 11., 20., 21.]);
    let idx = ok(ctx.from_i64(vec![2, 2], vec![2, 0, 1, 1]));
    let g = ok(ctx.gather(b(&table), b(&idx)));
    assert_eq!(shape(&mut ctx, &g), vec![2, 2, 2]);
    assert_eq!(read(&mut ctx, &g), vec![20., 21., 0., 1., 10., 11., 10., 11.]);
}

#[test]
fn concat_of_a_borrowed_list() {
    let (_pool, mut ctx) = setup("");
    let a = f32s(&mut ctx, &[1, 2], &[1., 2.]);
    let c = f32s(&mut ctx, &[2, 2], &[3., 4., 5., 6.]);
    let j = ok(ctx.concat(vec![b(&a), b(&c), b(&a)], 0));
    assert_eq!(shape(&mut ctx, &j), vec![4, 2]);
    assert_eq!(read(&mut ctx, &j), vec![1., 2., 3., 4., 5., 6., 1., 2.]);
    // The inputs are still the guest's.
    assert_eq!(read(&mut ctx, &a), vec![1., 2.]);
}

#[test]
fn the_remaining_ops_are_wired() {
    let (_pool, mut ctx) = setup("");
    let x = f32s(&mut ctx, &[2, 3], &[-1., 0., 1., 2., 3., 4.]);
    let r = ok(ctx.unary(UnaryOp::Relu, b(&x)));
    assert_eq!(read(&mut ctx, &r), vec![0., 0., 1., 2., 3., 4.]);
    let s = ok(ctx.reduce(ReduceOp::Sum, b(&x), 1, false));
    assert_eq!(read(&mut ctx, &s), vec![0., 9.]);
    let am = ok(ctx.reduce(ReduceOp::Argmax, b(&x), -1, true));
    assert_eq!(
        (shape(&mut ctx, &am), ctx.dtype(b(&am)).unwrap()),
        (vec![2, 1], Dtype::I64)
    );
    let rs = ok(ctx.reshape(b(&x), vec![3, 2]));
    assert_eq!(shape(&mut ctx, &rs), vec![3, 2]);
    let p = ok(ctx.permute(b(&x), vec![1, 0]));
    assert_eq!(read(&mut ctx, &p), vec![-1., 2., 0., 3., 1., 4.]);
    let sl = ok(ctx.slice(b(&x), 1, 1, 3));
    assert_eq!(read(&mut ctx, &sl), vec![0., 1., 3., 4.]);
    let c = ok(ctx.cast(b(&x), Dtype::I32));
    assert_eq!(ctx.dtype(b(&c)).unwrap(), Dtype::I32);
    let w = f32s(&mut ctx, &[3], &[1., 1., 1.]);
    let zero = f32s(&mut ctx, &[3], &[0., 0., 0.]);
    let ln = ok(ctx.layer_norm(b(&x), Some(b(&w)), Some(b(&zero)), 1e-5));
    let plain = ok(ctx.layer_norm(b(&x), None, None, 1e-5));
    assert_close(&read(&mut ctx, &ln), &read(&mut ctx, &plain));
    let rms = ok(ctx.rms_norm(b(&x), Some(b(&w)), 1e-5));
    assert_eq!(shape(&mut ctx, &rms), vec![2, 3]);
}

// ---- errors -------------------------------------------------------------

#[test]
fn shape_mismatch_names_both_shapes() {
    let (_pool, mut ctx) = setup("");
    let a = f32s(&mut ctx, &[2, 3], &[0.; 6]);
    let c = f32s(&mut ctx, &[4, 5], &[0.; 20]);
    let Error::ShapeMismatch(msg) = err(ctx.matmul(b(&a), b(&c))) else {
        panic!("not a shape mismatch")
    };
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
    let Error::ShapeMismatch(msg) = err(ctx.binary(BinaryOp::Add, b(&a), b(&c))) else {
        panic!("not a shape mismatch")
    };
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
}

#[test]
fn unsupported_dtype_names_the_op_and_dtype() {
    let (_pool, mut ctx) = setup("");
    let i = ok(ctx.from_i64(vec![2], vec![1, 2]));
    let Error::UnsupportedDtype(msg) = err(ctx.unary(UnaryOp::Exp, b(&i))) else {
        panic!("not an unsupported dtype")
    };
    assert!(msg.contains("i64"), "{msg}");
    assert!(matches!(err(ctx.softmax(b(&i), 0)), Error::UnsupportedDtype(_)));
}

#[test]
fn invalid_arguments_bad_data_length_and_bad_axis() {
    let (_pool, mut ctx) = setup("");
    let Error::InvalidArgument(msg) = err(ctx.from_f32(vec![2, 3], vec![0.; 5])) else {
        panic!("not an invalid argument")
    };
    assert!(
        msg.contains("[2, 3]") && msg.contains('6') && msg.contains('5'),
        "{msg}"
    );
    assert!(matches!(
        err(ctx.from_i64(vec![2], vec![1, 2, 3])),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        err(ctx.from_bytes(vec![2], Dtype::F32, vec![0; 7])),
        Error::InvalidArgument(_)
    ));
    // Element counts that overflow are refused before anything is allocated.
    let huge = vec![u32::MAX; 8];
    assert!(matches!(
        err(ctx.from_f32(huge.clone(), vec![])),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        err(ctx.from_bytes(huge, Dtype::U8, vec![])),
        Error::InvalidArgument(_)
    ));

    let x = f32s(&mut ctx, &[2, 2], &[0.; 4]);
    let Error::InvalidArgument(msg) = err(ctx.softmax(b(&x), 2)) else {
        panic!("not an invalid argument")
    };
    assert!(msg.contains('2'), "{msg}");
    assert!(matches!(
        err(ctx.reduce(ReduceOp::Sum, b(&x), -3, false)),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(err(ctx.slice(b(&x), 0, 1, 3)), Error::InvalidArgument(_)));
    assert!(matches!(err(ctx.top_k(b(&x), 3)), Error::InvalidArgument(_)));
    assert!(matches!(err(ctx.permute(b(&x), vec![0, 0])), Error::InvalidArgument(_)));
    assert!(matches!(
        err(ctx.reshape(b(&x), vec![3])),
        Error::InvalidArgument(_) | Error::ShapeMismatch(_)
    ));
}

#[test]
fn an_axis_longer_than_u32_is_refused_not_handed_out() {
    let (pool, mut ctx) = setup("");
    let e = f32s(&mut ctx, &[0, u32::MAX], &[]);
    let before = tensor_bytes(&pool);
    let Error::InvalidArgument(msg) = err(ctx.concat(vec![b(&e), b(&e)], 1)) else {
        panic!("not an invalid argument")
    };
    assert!(msg.contains(&(2 * u64::from(u32::MAX)).to_string()), "{msg}");
    assert_eq!(tensor_bytes(&pool), before);
    // The refused tensor is gone: a limit of 2 live tensors still fits one more.
    let (_pool, mut ctx) = setup("max_live_tensors = 2");
    let e = f32s(&mut ctx, &[0, u32::MAX], &[]);
    err(ctx.concat(vec![b(&e), b(&e)], 1));
    f32s(&mut ctx, &[1], &[1.]);
}

#[test]
fn max_live_tensors_obeyed() {
    let (_pool, mut ctx) = setup("max_live_tensors = 3");
    let a = f32s(&mut ctx, &[1], &[1.]);
    let b1 = f32s(&mut ctx, &[1], &[2.]);
    let c = ok(ctx.binary(BinaryOp::Add, b(&a), b(&b1)));
    assert_eq!(read(&mut ctx, &c), vec![3.]);
    // Dropping one makes room again.
    ctx.drop(c).unwrap();
    f32s(&mut ctx, &[1], &[4.]);
}

#[test]
fn max_live_tensors_violated() {
    let (_pool, mut ctx) = setup("max_live_tensors = 3");
    let a = f32s(&mut ctx, &[2], &[1., 2.]);
    let _b = f32s(&mut ctx, &[1], &[2.]);
    // top-k needs room for two.
    let Error::OverQuota(msg) = err(ctx.top_k(b(&a), 1)) else {
        panic!("not over quota")
    };
    assert!(msg.contains("tensor.max_live_tensors"), "{msg}");
    let _c = f32s(&mut ctx, &[1], &[3.]);
    assert!(matches!(err(ctx.unary(UnaryOp::Relu, b(&a))), Error::OverQuota(_)));
    assert!(matches!(err(ctx.from_f32(vec![1], vec![4.])), Error::OverQuota(_)));
    assert!(matches!(err(ctx.scalar(Dtype::F32, 1.)), Error::OverQuota(_)));
}

#[test]
fn max_matmul_flops_obeyed() {
    // 2·4·4·4 = 128 flops per product.
    let (_pool, mut ctx) = setup("max_matmul_flops = 128");
    let a = f32s(&mut ctx, &[4, 4], &[1.; 16]);
    let c = ok(ctx.matmul(b(&a), b(&a)));
    assert_eq!(read(&mut ctx, &c), vec![4.; 16]);
    assert_eq!(TensorLimits::default().max_matmul_flops, 1 << 34);
}

#[test]
fn max_matmul_flops_violated() {
    let (_pool, mut ctx) = setup("max_matmul_flops = 128");
    let a = f32s(&mut ctx, &[4, 5], &[1.; 20]);
    let w = f32s(&mut ctx, &[5, 4], &[1.; 20]);
    let Error::OverQuota(msg) = err(ctx.matmul(b(&a), b(&w))) else {
        panic!("not over quota")
    };
    assert!(msg.contains("tensor.max_matmul_flops") && msg.contains("160"), "{msg}");
    // Batches count: two 4×4 products are 256 flops.
    let batch = f32s(&mut ctx, &[2, 4, 4], &[1.; 32]);
    let sq = f32s(&mut ctx, &[4, 4], &[1.; 16]);
    assert!(matches!(err(ctx.matmul(b(&batch), b(&sq))), Error::OverQuota(_)));
}

#[test]
fn memory_limits_are_over_quota_or_out_of_memory() {
    // Per invocation: a quota.
    let (_pool, mut ctx) = setup("max_bytes_per_invocation = 64");
    f32s(&mut ctx, &[16], &[0.; 16]);
    let Error::OverQuota(msg) = err(ctx.from_f32(vec![1], vec![0.])) else {
        panic!("not over quota")
    };
    assert!(msg.contains("tensor.max_bytes_per_invocation"), "{msg}");
    // The device itself: out of memory.
    let pool = pool_with(1024, "");
    let mut ctx = TensorCtx::new(pool, "t");
    let Error::OutOfMemory(msg) = err(ctx.from_f32(vec![512], vec![0.; 512])) else {
        panic!("not out of memory")
    };
    assert!(msg.contains("cpu:0"), "{msg}");
}

#[test]
fn tenants_share_one_quota_across_invocations() {
    let pool = pool_with(64 << 20, "max_bytes_per_tenant = 64");
    let mut one = TensorCtx::new(pool.clone(), "a");
    let mut two = TensorCtx::new(pool.clone(), "a");
    let mut other = TensorCtx::new(pool, "b");
    f32s(&mut one, &[16], &[0.; 16]);
    assert!(matches!(err(two.from_f32(vec![1], vec![0.])), Error::OverQuota(_)));
    f32s(&mut other, &[16], &[0.; 16]);
    drop(one);
    f32s(&mut two, &[16], &[0.; 16]);
}

// ---- handles and memory ---------------------------------------------------

#[test]
fn drop_releases_memory_and_ending_the_invocation_releases_the_rest() {
    let (pool, mut ctx) = setup("");
    let a = f32s(&mut ctx, &[256], &[1.; 256]);
    assert_eq!(tensor_bytes(&pool), 1024);
    let c = ok(ctx.binary_scalar(BinaryOp::Add, b(&a), 1.));
    assert_eq!(tensor_bytes(&pool), 2048);
    ctx.drop(a).unwrap();
    assert_eq!(tensor_bytes(&pool), 1024);
    ctx.drop(c).unwrap();
    assert_eq!(tensor_bytes(&pool), 0);
    // The rest go when the context does (the guest never dropped them).
    let _kept = f32s(&mut ctx, &[256], &[1.; 256]);
    let _more = f32s(&mut ctx, &[256], &[1.; 256]);
    assert_eq!(tensor_bytes(&pool), 2048);
    drop(ctx);
    assert_eq!(tensor_bytes(&pool), 0);
    assert_eq!(pool.stats()[0].leases, 0);
}

#[test]
fn reshape_shares_memory_until_both_are_dropped() {
    let (pool, mut ctx) = setup("");
    let a = f32s(&mut ctx, &[4, 4], &[1.; 16]);
    let r = ok(ctx.reshape(b(&a), vec![16]));
    assert_eq!(tensor_bytes(&pool), 64);
    ctx.drop(a).unwrap();
    assert_eq!(read(&mut ctx, &r).len(), 16);
    ctx.drop(r).unwrap();
    assert_eq!(tensor_bytes(&pool), 0);
}

#[test]
fn bad_handles_trap() {
    let (_pool, mut ctx) = setup("");
    // Before any tensor, and after.
    assert!(ctx.shape(Resource::new_borrow(7)).is_err());
    let a = f32s(&mut ctx, &[1], &[1.]);
    let stale = Resource::<TensorHandle>::new_own(a.rep());
    ctx.drop(a).unwrap();
    assert!(ctx.drop(stale).is_err(), "a second drop traps");
    assert!(ctx.to_f32(Resource::new_borrow(99)).is_err());
    assert!(ctx.matmul(Resource::new_borrow(99), Resource::new_borrow(100)).is_err());
    assert!(ctx.concat(vec![Resource::new_borrow(99)], 0).is_err());
}

#[test]
fn usage_counts_ops() {
    let (_pool, mut ctx) = setup("");
    assert_eq!(ctx.usage().cpu.ops, 0);
    let a = f32s(&mut ctx, &[2, 2], &[1.; 4]);
    let c = ok(ctx.matmul(b(&a), b(&a)));
    let _ = ok(ctx.to_bytes(b(&c)));
    let u = ctx.usage();
    assert_eq!(u.cpu.ops, 3, "{u:?}");
    assert_eq!(u.cpu.bytes_to_device, 16);
    assert_eq!(u.cpu.bytes_to_host, 16);
    assert_eq!(u.cuda, Default::default());
    // Failed validation is not an op on the device.
    let v = f32s(&mut ctx, &[3], &[0.; 3]);
    err(ctx.matmul(b(&a), b(&v)));
    assert_eq!(ctx.usage().cpu.ops, 4);
}
