//! The ggml tensor types this module understands, with their block geometry.

use super::QuantError;

/// Elements in one k-quant super block (ggml `QK_K`).
pub(crate) const QK_K: usize = 256;
/// Elements in one legacy quant block (ggml `QK4_0`, `QK8_0`, ...).
pub(crate) const QK: usize = 32;

/// GGML tensor types (ids as in GGUF: F32=0, F16=1, Q4_0=2, Q4_1=3, Q5_0=6, Q5_1=7, Q8_0=8,
/// Q4_K=12, Q5_K=13, Q6_K=14, BF16=30).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 32 elements: f16 scale + 4-bit values, `(q - 8) * d`.
    Q4_0,
    /// 32 elements: f16 scale and min + 4-bit values, `q * d + m`.
    Q4_1,
    /// 32 elements: f16 scale + 5-bit values, `(q - 16) * d`.
    Q5_0,
    /// 32 elements: f16 scale and min + 5-bit values, `q * d + m`.
    Q5_1,
    /// 32 elements: f16 scale + i8 values, `q * d`.
    Q8_0,
    /// 256-element super block of 8 sub blocks with 6-bit scales/mins, 4-bit values.
    Q4K,
    /// 256-element super block of 8 sub blocks with 6-bit scales/mins, 5-bit values.
    Q5K,
    /// 256-element super block of 16 sub blocks with i8 scales, 6-bit values.
    Q6K,
}

impl GgmlType {
    /// Map a GGUF tensor type id to a type, or say why it cannot be used.
    pub fn from_id(id: u32) -> Result<Self, QuantError> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => {
                return Err(match unsupported_name(id) {
                    Some(name) => QuantError::UnsupportedType { id, name },
                    None => QuantError::UnknownType { id },
                });
            }
        })
    }

    /// The GGUF type id (inverse of [`GgmlType::from_id`]).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    /// The ggml name of the type ("Q4_1", "Q4_K", ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Elements per block (1 for the float types).
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => QK,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block (sizes of the ggml `block_*` structs).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 2 + QK / 2,
            Self::Q4_1 => 4 + QK / 2,
            Self::Q5_0 => 2 + 4 + QK / 2,
            Self::Q5_1 => 4 + 4 + QK / 2,
            Self::Q8_0 => 2 + QK,
            // d, dmin, 12 bytes of packed scales/mins, 4-bit values.
            Self::Q4K => 4 + 12 + QK_K / 2,
            // ... plus one high bit per element.
            Self::Q5K => 4 + 12 + QK_K / 8 + QK_K / 2,
            // low 4 bits, high 2 bits, 16 i8 scales, d.
            Self::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Bytes in one row of `cols` elements; an error when `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Result<usize, QuantError> {
        let block_len = self.block_len();
        if !cols.is_multiple_of(block_len) {
            return Err(QuantError::ColsNotBlockMultiple {
                ty: self.name(),
                block_len,
                cols,
            });
        }
        Ok(cols / block_len * self.block_bytes())
    }
}

/// Names of ggml types that exist but are not implemented here, so errors can name them.
fn unsupported_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 => "Q4_2",
        5 => "Q4_3",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}
