//! Reading GGUF files (versions 2 and 3): the metadata and the tensor
//! directory, with tensor data left in the memory map.
//!
//! Layout (ggml `docs/gguf.md`): magic `GGUF`, version, tensor count,
//! metadata count, the metadata key/values, the tensor infos (name, dims
//! innermost first, type, offset), padding to `general.alignment`, then the
//! data. Every count and length comes from the file, so each is checked
//! against what is left of it before anything is allocated.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::quant::{GgmlType, QMatrix, QuantError};

/// A GGUF file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a GGUF file, or a version this reader does not know.
    #[error("{path} is not a GGUF v2/v3 file ({reason})")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file ends early or holds an impossible value.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A metadata key the model needs is missing or has the wrong type.
    #[error("metadata `{key}` is missing or not {expected}")]
    Metadata {
        /// The key.
        key: String,
        /// The type wanted.
        expected: &'static str,
    },
    /// A tensor the model needs is not in the file.
    #[error("tensor `{0}` is not in the file")]
    MissingTensor(String),
    /// A tensor's shape is not the one the model needs.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Its dims, innermost first.
        found: Vec<u64>,
        /// What the architecture wants.
        expected: Vec<u64>,
    },
    /// The tensor's type is unknown or unsupported.
    #[error("tensor `{name}`: {source}")]
    TensorType {
        /// The tensor.
        name: String,
        /// Why.
        source: QuantError,
    },
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// An array.
    Array(Vec<Value>),
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// A tensor's entry in the directory.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dims, innermost (contiguous) first, as GGUF stores them.
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Byte range in the file.
    pub start: usize,
    /// Byte length.
    pub len: usize,
}

/// An open GGUF file.
pub struct Gguf {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, Value>,
    tensors: BTreeMap<String, TensorInfo>,
    data: Bytes,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Bounds on what a header may declare, so a hostile file cannot make the
/// reader allocate without limit. Real models have < 2,000 tensors, < 100
/// keys and 150k-entry vocabularies.
const MAX_TENSORS: u64 = 1 << 20;
const MAX_KEYS: u64 = 1 << 16;
const MAX_DIMS: u32 = 4;

impl Gguf {
    /// Memory-map and parse `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let map = map_file(&file).map_err(io)?;
        Self::parse(path, Bytes::from_owner(map))
    }

    /// Parse a GGUF image held in memory (tests build small ones).
    pub fn parse(path: &Path, data: Bytes) -> Result<Self, GgufError> {
        let mut r = Reader {
            buf: &data,
            pos: 0,
            path,
        };
        let magic = r.bytes(4)?;
        if magic != b"GGUF" {
            return Err(GgufError::NotGguf {
                path: path.to_owned(),
                reason: format!("magic {magic:02x?}"),
            });
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::NotGguf {
                path: path.to_owned(),
                reason: format!("version {version}"),
            });
        }
        let n_tensors = r.u64()?;
        let n_keys = r.u64()?;
        if n_tensors > MAX_TENSORS || n_keys > MAX_KEYS {
            return Err(r.corrupt(format!("{n_tensors} tensors and {n_keys} metadata keys")));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_keys {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| r.corrupt("bad general.alignment"))?,
            None => 32,
        };
        let mut infos = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.corrupt(format!("tensor `{name}` has {n_dims} dims")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            let ty_id = r.u32()?;
            let offset = r.u64()?;
            let ty = GgmlType::from_id(ty_id).map_err(|source| GgufError::TensorType {
                name: name.clone(),
                source,
            })?;
            infos.push((name, dims, ty, offset));
        }
        let data_start = r.pos.div_ceil(alignment as usize) * alignment as usize;
        let mut tensors = BTreeMap::new();
        for (name, dims, ty, offset) in infos {
            let len = tensor_bytes(ty, &dims).ok_or_else(|| {
                r.corrupt(format!(
                    "tensor `{name}` has impossible dims {dims:?} for {}",
                    ty.name()
                ))
            })?;
            let start = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(data_start))
                .filter(|s| s.checked_add(len).is_some_and(|end| end <= data.len()))
                .ok_or_else(|| r.corrupt(format!("tensor `{name}` lies outside the file")))?;
            tensors.insert(name, TensorInfo { dims, ty, start, len });
        }
        Ok(Gguf {
            path: path.to_owned(),
            version,
            metadata,
            tensors,
            data,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata value.
    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    /// Every tensor.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// A metadata string.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        match self.metadata.get(key) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(GgufError::Metadata {
                key: key.into(),
                expected: "a string",
            }),
        }
    }

    /// An optional metadata string.
    pub fn opt_str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A metadata unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.metadata
            .get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                expected: "an unsigned integer",
            })
    }

    /// An optional unsigned integer.
    pub fn opt_u64(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(Value::as_u64)
    }

    /// An optional float (integers are accepted).
    pub fn opt_f64(&self, key: &str) -> Option<f64> {
        match *self.metadata.get(key)? {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        match self.metadata.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A metadata array of strings.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let bad = || GgufError::Metadata {
            key: key.into(),
            expected: "an array of strings",
        };
        match self.metadata.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.as_str()),
                    _ => Err(bad()),
                })
                .collect(),
            _ => Err(bad()),
        }
    }

    /// A metadata array of integers.
    pub fn int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let bad = || GgufError::Metadata {
            key: key.into(),
            expected: "an array of integers",
        };
        match self.metadata.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match *v {
                    Value::I64(i) => Ok(i),
                    Value::U64(u) => i64::try_from(u).map_err(|_| bad()),
                    _ => Err(bad()),
                })
                .collect(),
            _ => Err(bad()),
        }
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, Bytes), GgufError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| GgufError::MissingTensor(name.into()))?;
        Ok((info, self.data.slice(info.start..info.start + info.len)))
    }

    /// A 2-D weight `[rows, cols]` (GGUF dims `[cols, rows]`), checked
    /// against the shape the architecture expects.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, GgufError> {
        let (info, bytes) = self.tensor_bytes(name)?;
        let expected = vec![cols as u64, rows as u64];
        if info.dims != expected {
            return Err(GgufError::TensorShape {
                name: name.into(),
                found: info.dims.clone(),
                expected,
            });
        }
        QMatrix::new(info.ty, rows, cols, bytes).map_err(|source| GgufError::TensorType {
            name: name.into(),
            source,
        })
    }

    /// A 1-D tensor as f32 (norm weights, biases).
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, GgufError> {
        let (info, bytes) = self.tensor_bytes(name)?;
        if info.dims != [len as u64] {
            return Err(GgufError::TensorShape {
                name: name.into(),
                found: info.dims.clone(),
                expected: vec![len as u64],
            });
        }
        let mut out = vec![0f32; len];
        super::quant::dequantize_row(info.ty, &bytes, &mut out).map_err(|source| GgufError::TensorType {
            name: name.into(),
            source,
        })?;
        Ok(out)
    }
}

/// Bytes a tensor of this type and dims occupies, if the dims are possible.
fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> Option<usize> {
    let (&inner, outer) = dims.split_first()?;
    let row = ty.row_bytes(usize::try_from(inner).ok()?).ok()?;
    outer
        .iter()
        .try_fold(row, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only. Model files are not modified while a node
    // serves them (`wafer models pull` writes a new file and renames it in);
    // a file truncated underneath would fault, as with any mmap-based loader.
    unsafe { memmap2::Mmap::map(file) }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

/// Arrays nest (arrays of arrays are legal); real files use one level.
const MAX_NESTING: u32 = 4;

impl Reader<'_> {
    fn corrupt(&self, reason: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_owned(),
            reason: reason.into(),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| self.corrupt(format!("ends early at byte {}", self.pos)))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, GgufError> {
        let n = self.u64()?;
        // Each element takes at least one byte, so a count above what is left
        // of the file is corrupt; this bounds every allocation below.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
            .ok_or_else(|| self.corrupt(format!("length {n} at byte {}", self.pos)))
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.bytes(n)?).into_owned())
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U64(u64::from(self.array::<1>()?[0])),
            1 => Value::I64(i64::from(i8::from_le_bytes(self.array()?))),
            2 => Value::U64(u64::from(u16::from_le_bytes(self.array()?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(self.array()?))),
            4 => Value::U64(u64::from(self.u32()?)),
            5 => Value::I64(i64::from(i32::from_le_bytes(self.array()?))),
            6 => Value::F64(f64::from(f32::from_le_bytes(self.array()?))),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(self.corrupt("arrays nested too deep"));
                }
                let item_ty = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(self.corrupt(format!("metadata type {other}"))),
        })
    }
}
