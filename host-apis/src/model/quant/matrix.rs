//! A quantized weight matrix backed by shared bytes (usually a slice of the mapped GGUF file).

use bytes::Bytes;

use super::interleave::{self, GROUP};
use super::{GgmlType, QuantError, cpu, dequantize_row};

/// A weight matrix [rows, cols], row-major in GGML block layout
/// (row r = bytes `r * row_bytes .. (r + 1) * row_bytes`).
#[derive(Clone)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Bytes,
    /// The same weights in groups of eight rows for the batched SIMD kernels (see
    /// [`interleave`]), when [`QMatrix::interleaved`] made them.
    groups: Option<Bytes>,
}

impl std::fmt::Debug for QMatrix {
    // Hand-written so debug output does not dump megabytes of weights.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("interleaved", &self.groups.is_some())
            .finish_non_exhaustive()
    }
}

impl QMatrix {
    /// Wrap `data` as a [rows, cols] matrix of type `ty`; errors when `cols` is not a whole
    /// number of blocks or `data` is not exactly `rows * row_bytes(cols)` bytes.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Bytes) -> Result<Self, QuantError> {
        let row_bytes = ty.row_bytes(cols)?;
        let what = || format!("{} matrix [{rows} x {cols}]", ty.name());
        let expected = rows.checked_mul(row_bytes).ok_or_else(|| QuantError::DataLength {
            what: what(),
            expected: usize::MAX,
            actual: data.len(),
        })?;
        if data.len() != expected {
            return Err(QuantError::DataLength {
                what: what(),
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            groups: None,
        })
    }

    /// This matrix with a copy of its weights interleaved in groups of eight rows, which the
    /// SIMD kernels multiply several times faster per token when a step carries several
    /// tokens (and no slower for one). Costs a second copy of the weights in memory (the
    /// original, usually memory-mapped, is still used for row lookups). Unchanged when the CPU
    /// has no SIMD kernels or the type or shape has no interleaved layout.
    pub fn interleaved(mut self) -> Self {
        if cpu::simd() && self.groups.is_none() {
            self.groups = interleave::interleave(self.ty, self.rows, self.cols, &self.data).map(Bytes::from);
        }
        self
    }

    /// Whether [`QMatrix::interleaved`] made the interleaved copy.
    pub fn is_interleaved(&self) -> bool {
        self.groups.is_some()
    }

    /// Interleaved bytes of row groups `g0..g1`, if this matrix has them; the caller guarantees
    /// `g1 <= rows / 8`.
    pub(crate) fn groups_data(&self, g0: usize, g1: usize) -> Option<&[u8]> {
        let groups = self.groups.as_ref()?;
        let per_group = groups.len() / (self.rows / GROUP);
        Some(&groups[g0 * per_group..g1 * per_group])
    }

    /// Element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The raw block data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Raw bytes of row `r`; the caller guarantees `r < rows`.
    pub(crate) fn row_data(&self, r: usize) -> &[u8] {
        self.rows_data(r, r + 1)
    }

    /// Raw bytes of rows `r0..r1` (contiguous); the caller guarantees `r0 <= r1 <= rows`.
    pub(crate) fn rows_data(&self, r0: usize, r1: usize) -> &[u8] {
        &self.data[r0 * self.row_bytes..r1 * self.row_bytes]
    }

    /// Dequantize row r into dst (for embedding lookups). Error when r >= rows or
    /// `dst.len() != cols`.
    pub fn row_into(&self, r: usize, dst: &mut [f32]) -> Result<(), QuantError> {
        if r >= self.rows {
            return Err(QuantError::RowOutOfRange {
                row: r,
                rows: self.rows,
            });
        }
        if dst.len() != self.cols {
            return Err(QuantError::Len {
                what: format!("destination of {} row {r}", self.ty.name()),
                expected: self.cols,
                actual: dst.len(),
            });
        }
        dequantize_row(self.ty, self.row_data(r), dst)
    }
}
