//! Error type shared by every quant entry point.

/// Everything that can go wrong when decoding or multiplying quantized tensors.
///
/// Every variant carries the numbers involved so that the message alone says what is wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum QuantError {
    /// The GGUF type id is a known ggml type that this module does not implement.
    #[error("ggml tensor type {name} (id {id}) is not supported")]
    UnsupportedType {
        /// GGUF type id.
        id: u32,
        /// ggml name of the type, e.g. "Q2_K".
        name: &'static str,
    },
    /// The GGUF type id is not a ggml type at all.
    #[error("unknown ggml tensor type id {id}")]
    UnknownType {
        /// GGUF type id.
        id: u32,
    },
    /// A row length is not a whole number of blocks of the type.
    #[error("{ty} rows must hold a multiple of {block_len} elements, got {cols}")]
    ColsNotBlockMultiple {
        /// Type name.
        ty: &'static str,
        /// Elements per block of the type.
        block_len: usize,
        /// The offending row length.
        cols: usize,
    },
    /// A byte buffer has the wrong length for the shape it is supposed to hold.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    DataLength {
        /// Which buffer (e.g. "Q4_1 matrix [1536 x 576]").
        what: String,
        /// Required length in bytes.
        expected: usize,
        /// Length that was passed.
        actual: usize,
    },
    /// An f32 buffer has the wrong number of elements.
    #[error("{what}: expected {expected} f32 values, got {actual}")]
    Len {
        /// Which buffer (e.g. "output 1 of matmul").
        what: String,
        /// Required number of elements.
        expected: usize,
        /// Number of elements passed.
        actual: usize,
    },
    /// A row index is past the end of a matrix.
    #[error("row {row} out of range for a matrix with {rows} rows")]
    RowOutOfRange {
        /// Requested row.
        row: usize,
        /// Rows in the matrix.
        rows: usize,
    },
    /// The inner dimensions of a matmul disagree.
    #[error("weight {index} has {weight_cols} columns but the activations have {act_cols}")]
    ColsMismatch {
        /// Position of the weight in the `weights` slice.
        index: usize,
        /// Columns of the weight.
        weight_cols: usize,
        /// Columns of the activations.
        act_cols: usize,
    },
    /// `weights` and `outs` have different lengths.
    #[error("matmul got {weights} weights but {outs} output buffers")]
    OutCount {
        /// Number of weights.
        weights: usize,
        /// Number of output buffers.
        outs: usize,
    },
    /// The activations were not prepared for a weight type used in a matmul.
    #[error("activations were not prepared for {ty} weights (pass it in `for_types` of Activations::prepare)")]
    NotPrepared {
        /// Type name of the weight.
        ty: &'static str,
    },
}
