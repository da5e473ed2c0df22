//! One-time CPU feature detection for the SIMD kernels.

/// True when the AVX2 + FMA + F16C kernels may run on this CPU.
///
/// Detected once and cached: `matmul` is called ~150 times per decoded token, and the kernels
/// check this before every (safe-wrapped) SIMD call.
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd() -> bool {
    use std::sync::OnceLock;
    static SIMD: OnceLock<bool> = OnceLock::new();
    *SIMD.get_or_init(|| {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    })
}

/// No SIMD kernels exist for other architectures; everything takes the scalar path.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn simd() -> bool {
    false
}
