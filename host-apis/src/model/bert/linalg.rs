//! A bounds-checked safe wrapper around `gemm::gemm` for f32.

use gemm::Parallelism;

use super::error::BertError;

/// A read-only strided matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `rows × cols` matrix, without copying
    /// (gemm packs its operands anyway, so a strided transpose is free).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            row_stride: 1,
            col_stride: cols,
        }
    }
}

/// A writable strided matrix view.
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }
}

/// Number of elements a strided view reaches (0 when empty), or `None` on overflow.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

fn stride(s: usize) -> Result<isize, BertError> {
    isize::try_from(s).map_err(|_| BertError::Internal {
        op: "matmul",
        detail: format!("stride {s} overflows isize"),
    })
}

/// `dst = (accumulate ? dst : 0) + scale · lhs · rhs`.
#[allow(unsafe_code)]
///
/// Every view is checked to lie inside its slice before the unsafe call, which is what makes
/// this wrapper sound: gemm only touches indices `(r, c)` with `r < rows`, `c < cols`.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    accumulate: bool,
    scale: f32,
    parallelism: Parallelism,
) -> Result<(), BertError> {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if lhs.rows != m || rhs.rows != k || rhs.cols != n {
        return Err(BertError::Internal {
            op: "matmul",
            detail: format!(
                "dst {m}x{n} = lhs {}x{} · rhs {}x{}",
                lhs.rows, lhs.cols, rhs.rows, rhs.cols
            ),
        });
    }
    let fits = |rows, cols, rs, cs, len: usize| extent(rows, cols, rs, cs).is_some_and(|e| e <= len);
    if !fits(m, n, dst.row_stride, dst.col_stride, dst.data.len())
        || !fits(m, k, lhs.row_stride, lhs.col_stride, lhs.data.len())
        || !fits(k, n, rhs.row_stride, rhs.col_stride, rhs.data.len())
    {
        return Err(BertError::Internal {
            op: "matmul",
            detail: format!("a {m}x{n}x{k} view exceeds its buffer"),
        });
    }
    // Distinct dst elements must be distinct memory, or gemm's threads would race on them;
    // every caller writes row-major rows, so require exactly that.
    if dst.col_stride != 1 || (m > 1 && dst.row_stride < n) {
        return Err(BertError::Internal {
            op: "matmul",
            detail: "dst must be row-major without overlap".to_owned(),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (dst_rs, dst_cs) = (stride(dst.row_stride)?, stride(dst.col_stride)?);
    let (lhs_rs, lhs_cs) = (stride(lhs.row_stride)?, stride(lhs.col_stride)?);
    let (rhs_rs, rhs_cs) = (stride(rhs.row_stride)?, stride(rhs.col_stride)?);
    // SAFETY: the checks above ensure each slice covers every index `r·rs + c·cs` of its
    // m×k, k×n or m×n view; dst is a unique `&mut` borrow, so it aliases neither input.
    // gemm reads dst only when `accumulate` (alpha = 1) and keeps no pointer past the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.data.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
