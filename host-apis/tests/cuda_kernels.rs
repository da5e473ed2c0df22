//! Compiles every CUDA kernel with NVRTC, which needs no GPU: only
//! libnvrtc (`scripts/fetch-nvrtc.sh` fetches it). Skips when NVRTC cannot
//! be loaded, unless `WAFER_REQUIRE_NVRTC=1`, which CI sets to demand it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wafer_host_apis::tensor::backend::cuda;

#[test]
fn cuda_kernels_compile_with_nvrtc() {
    let required = std::env::var("WAFER_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    if !cuda::nvrtc_present() {
        assert!(
            !required,
            "WAFER_REQUIRE_NVRTC=1 but libnvrtc could not be loaded; \
             run `export LD_LIBRARY_PATH=$(host-apis/scripts/fetch-nvrtc.sh):$LD_LIBRARY_PATH`"
        );
        eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH from scripts/fetch-nvrtc.sh)");
        return;
    }
    let ptx = cuda::compile_kernels().unwrap_or_else(|e| panic!("{e}"));
    let text = ptx.to_src();
    for name in cuda::kernel_names() {
        assert!(
            text.contains(&format!(".entry {name}(")),
            "kernel {name} is launched by the backend but missing from the PTX"
        );
    }
}

#[test]
fn without_a_driver_the_pool_says_so_and_uses_the_cpu() {
    if cuda::driver_present() {
        eprintln!("skipped: a CUDA driver is present");
        return;
    }
    assert_eq!(
        cuda::probe().unwrap_err(),
        "no CUDA driver found (libcuda.so could not be loaded)"
    );
    let pool = wafer_host_apis::tensor::DevicePool::new(&Default::default()).unwrap();
    assert!(pool.cuda_status().starts_with("no CUDA driver found"));
    assert_eq!(pool.devices().len(), 1);
    let required = wafer_host_apis::tensor::PoolConfig {
        cuda: wafer_host_apis::tensor::pool::CudaMode::Required,
        ..Default::default()
    };
    let err = wafer_host_apis::tensor::DevicePool::new(&required).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cuda = \"required\" but no CUDA driver found (libcuda.so could not be loaded)"
    );
    assert!(wafer_host_apis::tensor::backend::cuda::CudaDevice::new(0).is_err());
}
