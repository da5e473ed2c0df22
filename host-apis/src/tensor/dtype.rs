//! Element types a tensor can hold.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The element type of a tensor.
///
/// Float operations on `F16` and `Bf16` compute in `f32` internally and round
/// the result once, so they match the `f32` result to the precision of the
/// storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16: the top half of an `f32`.
    Bf16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer (indices: `argmax`, `top_k`).
    I64,
    /// Unsigned byte.
    U8,
}

impl DType {
    /// Every dtype, in a stable order (tests iterate over it).
    pub const ALL: [DType; 6] = [DType::F32, DType::F16, DType::Bf16, DType::I32, DType::I64, DType::U8];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::Bf16 => 2,
            DType::I64 => 8,
            DType::U8 => 1,
        }
    }

    /// Whether the dtype is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::Bf16)
    }

    /// The lower-case name used in errors and in the WIT interface.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that is the element type of a [`DType`].
pub trait Element: Copy + Send + Sync + Default + 'static + private::Sealed {
    /// The matching dtype.
    const DTYPE: DType;
    /// Widens to `f64` (tests and reductions use it).
    fn to_f64(self) -> f64;
    /// Narrows from `f64`, rounding for floats and saturating for integers.
    fn from_f64(v: f64) -> Self;
    /// Little-endian bytes of one element.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `Self::DTYPE.size()` little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

mod private {
    pub trait Sealed {}
}

macro_rules! element {
    ($t:ty, $d:expr, $to:expr, $from:expr) => {
        impl private::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = $d;
            #[inline]
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                let n = buf.len().min(bytes.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                <$t>::from_le_bytes(buf)
            }
        }
    };
}

element!(f32, DType::F32, |x| x as f64, |v| v as f32);
element!(half::f16, DType::F16, |x| x.to_f64(), half::f16::from_f64);
element!(half::bf16, DType::Bf16, |x| x.to_f64(), half::bf16::from_f64);
element!(i32, DType::I32, |x| x as f64, |v| v as i32);
element!(i64, DType::I64, |x| x as f64, |v| v as i64);
element!(u8, DType::U8, |x| x as f64, |v| v as u8);
