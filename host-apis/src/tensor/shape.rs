//! Shapes, element counts and broadcasting.
//!
//! Every tensor is stored contiguous and row-major; a shape is its list of
//! dimensions. Element counts and byte sizes are computed with checked
//! arithmetic, so a shape a caller sends can never overflow.

use std::fmt;

use super::dtype::DType;
use super::error::{Result, TensorError};

/// The highest rank the kernels handle. `TensorLimits::max_rank` may be
/// lower, never higher (the CUDA kernels pass shapes in fixed-size arrays).
pub const MAX_RANK: usize = 8;

/// The dimensions of a tensor.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Shape {
    /// A shape whose element count fits in `usize`, of rank at most
    /// [`MAX_RANK`].
    pub fn new(dims: impl Into<Vec<usize>>) -> Result<Self> {
        let dims = dims.into();
        if dims.len() > MAX_RANK {
            return Err(TensorError::invalid(format!(
                "rank {} is over the maximum of {MAX_RANK}",
                dims.len()
            )));
        }
        checked_numel(&dims)?;
        Ok(Shape(dims))
    }

    /// The scalar shape `[]` (one element).
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The number of elements (checked at construction, so it cannot overflow).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Bytes needed to hold this shape as `dtype`, or an error on overflow.
    pub fn byte_size(&self, dtype: DType) -> Result<u64> {
        (self.numel() as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| TensorError::invalid("tensor byte size overflows"))
    }

    /// Row-major strides, in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1usize; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }

    /// Resolves a possibly negative axis (`-1` is the last) against this rank.
    pub fn axis(&self, op: &'static str, axis: i64) -> Result<usize> {
        let rank = self.0.len() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank {
            return Err(TensorError::invalid(format!(
                "{op}: axis {axis} out of range for rank {rank}"
            )));
        }
        Ok(a as usize)
    }

    /// Splits the element count around `axis`: (elements before, the axis
    /// length, elements after).
    pub fn around(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.0.iter().take(axis).product();
        let len = self.0.get(axis).copied().unwrap_or(1);
        let inner = self.0.iter().skip(axis + 1).product();
        (outer, len, inner)
    }

    /// The same shape with `axis` replaced by `len` (or removed when `keep`
    /// is false and `len` is 1).
    pub(crate) fn with_axis(&self, axis: usize, len: usize, keep: bool) -> Result<Shape> {
        let mut dims = self.0.clone();
        if keep {
            if let Some(d) = dims.get_mut(axis) {
                *d = len;
            }
        } else if axis < dims.len() {
            dims.remove(axis);
        }
        Shape::new(dims)
    }
}

impl From<Shape> for Vec<usize> {
    fn from(s: Shape) -> Self {
        s.0
    }
}

/// The element count of `dims`, or an error when it overflows `usize`.
pub fn checked_numel(dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| TensorError::invalid(format!("element count of {dims:?} overflows")))
    })
}

/// The NumPy broadcast of two shapes: dimensions align from the right and
/// each pair must be equal or contain a 1.
pub fn broadcast(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let mut out = vec![0usize; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(TensorError::shape(op, a.dims(), b.dims())),
        };
    }
    Shape::new(out)
}

fn dim_from_right(s: &Shape, from_right: usize) -> usize {
    if from_right < s.rank() {
        s.0[s.rank() - 1 - from_right]
    } else {
        1
    }
}

/// Strides (in elements) that read `src` as if it had shape `out`: `src`
/// aligns to the right of `out`, and broadcast dimensions get stride 0.
pub fn broadcast_strides(src: &Shape, out: &Shape) -> Vec<usize> {
    let strides = src.strides();
    let offset = out.rank() - src.rank().min(out.rank());
    (0..out.rank())
        .map(|i| {
            if i < offset {
                0
            } else {
                let j = i - offset;
                if src.0[j] == 1 { 0 } else { strides[j] }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(d: &[usize]) -> Shape {
        Shape::new(d.to_vec()).unwrap_or_default()
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast("t", &s(&[2, 1, 3]), &s(&[4, 1])).ok(), Some(s(&[2, 4, 3])));
        assert_eq!(broadcast("t", &s(&[]), &s(&[5])).ok(), Some(s(&[5])));
        assert_eq!(broadcast("t", &s(&[0, 3]), &s(&[1, 3])).ok(), Some(s(&[0, 3])));
        let err = broadcast("add", &s(&[2, 3]), &s(&[4])).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("shape mismatch in add: [2, 3] and [4]".to_string())
        );
    }

    #[test]
    fn broadcast_strides_zero_the_expanded_dims() {
        assert_eq!(broadcast_strides(&s(&[3, 1]), &s(&[2, 3, 4])), vec![0, 1, 0]);
        assert_eq!(broadcast_strides(&s(&[2, 3]), &s(&[2, 3])), vec![3, 1]);
    }

    #[test]
    fn overflowing_shapes_are_invalid() {
        assert!(matches!(
            Shape::new(vec![usize::MAX, 2]),
            Err(TensorError::InvalidArgument(_))
        ));
        assert!(Shape::new(vec![1; MAX_RANK + 1]).is_err());
        let big = s(&[usize::MAX / 2]);
        assert!(big.byte_size(DType::I64).is_err());
    }

    #[test]
    fn axes_resolve_from_either_end() {
        let x = s(&[2, 3, 4]);
        assert_eq!(x.axis("t", -1).ok(), Some(2));
        assert_eq!(x.axis("t", 0).ok(), Some(0));
        assert!(x.axis("t", 3).is_err());
        assert!(x.axis("t", -4).is_err());
        assert_eq!(x.around(1), (2, 3, 4));
    }
}
