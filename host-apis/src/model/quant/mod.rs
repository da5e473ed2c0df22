//! Quantized CPU matrix kernels for GGML/GGUF weights.
//!
//! - [`GgmlType`]: block geometry of the supported ggml tensor types.
//! - [`dequantize_row`]: bit-exact ggml dequantization (embeddings, tests, slow paths).
//! - [`QMatrix`] + [`Activations`] + [`matmul`]: `y = W x` for one or more weights sharing an
//!   input, with ggml-compatible Q8 activation quantization and AVX2 integer dot products for the
//!   legacy quant types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). F32/F16/BF16 and the k-quants are
//!   widened to f32 per row and dotted in f32.

mod activations;
mod cpu;
mod dequant;
mod dot;
mod error;
mod interleave;
mod matmul;
mod matrix;
mod types;

pub use activations::Activations;
pub use dequant::dequantize_row;
pub use error::QuantError;
pub use matmul::matmul;
pub use matrix::QMatrix;
pub use types::GgmlType;

/// Hooks for tests and benchmarks; not part of the engine-facing API.
#[doc(hidden)]
pub mod testing {
    use super::{Activations, QMatrix, QuantError};

    /// [`super::matmul`] forced onto the SIMD kernels (`simd = true`, when the CPU has them) or
    /// onto the portable scalar kernels (`simd = false`), to compare the two.
    pub fn matmul_with(
        weights: &[&QMatrix],
        x: &Activations,
        outs: &mut [&mut [f32]],
        pool: &rayon::ThreadPool,
        simd: bool,
    ) -> Result<(), QuantError> {
        super::matmul::matmul_with(weights, x, outs, pool, simd && super::cpu::simd())
    }

    /// Whether this CPU runs the SIMD kernels.
    pub fn simd_available() -> bool {
        super::cpu::simd()
    }
}
