//! A small, defensive reader for GGUF metadata (format versions 2 and 3).
//!
//! Only the header, the key/value metadata and the tensor descriptors are read; tensor data
//! is never touched. Array values are skipped (only their element type and length are
//! kept), scalar values — strings included — are returned in [`GgufInfo::metadata`], and the
//! commonly needed keys are lifted into typed fields.
//!
//! The reader never panics on malformed input and never allocates from a length it has not
//! first checked against the number of bytes actually left in the file, so a truncated or
//! hostile file yields a [`GgufError`] instead of an abort.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Longest string value kept in [`GgufInfo::metadata`]; longer ones are an error.
const MAX_STRING_LEN: u64 = 16 << 20;
/// Longest metadata key or tensor name accepted.
const MAX_KEY_LEN: u64 = 1 << 16;
/// Deepest nesting of arrays inside arrays accepted.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Most dimensions a tensor may have (ggml itself allows 4).
const MAX_TENSOR_DIMS: u32 = 8;

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The underlying reader failed.
    #[error("I/O error while reading GGUF data: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (magic bytes are {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    /// The format version is not 2 or 3 (version 1 and big-endian files are not supported).
    #[error("unsupported GGUF version {0} (supported: 2 and 3, little-endian)")]
    UnsupportedVersion(u32),
    /// The data ended before the structure it announced.
    #[error("truncated GGUF file: needed {needed} more bytes at offset {offset}")]
    Truncated {
        /// Byte offset where the read was attempted.
        offset: u64,
        /// Bytes the structure needed at that offset.
        needed: u64,
    },
    /// A length, count or type code is impossible.
    #[error("malformed GGUF file at offset {offset}: {message}")]
    Malformed {
        /// Byte offset of the offending field.
        offset: u64,
        /// What is wrong with it.
        message: String,
    },
}

/// A GGUF metadata value type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `uint8`
    U8,
    /// `int8`
    I8,
    /// `uint16`
    U16,
    /// `int16`
    I16,
    /// `uint32`
    U32,
    /// `int32`
    I32,
    /// `float32`
    F32,
    /// `bool` (one byte)
    Bool,
    /// length-prefixed UTF-8 string
    String,
    /// typed, length-prefixed array
    Array,
    /// `uint64`
    U64,
    /// `int64`
    I64,
    /// `float64`
    F64,
}

impl ValueType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// Encoded size of a value of this type, if fixed.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }
}

/// One metadata value. Arrays are summarised, not read.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `uint8`
    U8(u8),
    /// `int8`
    I8(i8),
    /// `uint16`
    U16(u16),
    /// `int16`
    I16(i16),
    /// `uint32`
    U32(u32),
    /// `int32`
    I32(i32),
    /// `float32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string (invalid sequences replaced by U+FFFD)
    String(String),
    /// `uint64`
    U64(u64),
    /// `int64`
    I64(i64),
    /// `float64`
    F64(f64),
    /// An array whose contents were skipped.
    Array {
        /// Type of the elements.
        element_type: ValueType,
        /// Number of elements.
        len: u64,
    },
}

impl MetadataValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// What a GGUF file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    /// Format version (2 or 3).
    pub version: u32,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Total number of weights (sum over tensors of the product of their dimensions).
    pub parameter_count: u64,
    /// `general.architecture`, e.g. `llama`, `qwen2`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.size_label`, e.g. `135M`.
    pub size_label: Option<String>,
    /// `general.file_type`, llama.cpp's `LLAMA_FTYPE` code.
    pub file_type: Option<u32>,
    /// Human name of the file type, e.g. `Q4_1`, `Q4_K_M`; `unknown` when absent.
    pub quantization: String,
    /// `<arch>.context_length`: the training context length.
    pub context_length: Option<u64>,
    /// `<arch>.embedding_length`.
    pub embedding_length: Option<u64>,
    /// `<arch>.block_count`: number of layers.
    pub block_count: Option<u64>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Every key/value pair, in key order.
    pub metadata: BTreeMap<String, MetadataValue>,
}

impl GgufInfo {
    /// Looks up a metadata value by key.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }
}

/// Name of a llama.cpp `LLAMA_FTYPE` code (the `general.file_type` key), e.g. 15 → `Q4_K_M`.
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        33 => "Q4_0_4_4",
        34 => "Q4_0_4_8",
        35 => "Q4_0_8_8",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

/// Reads the metadata of the GGUF file at `path`.
pub fn read_file(path: &Path) -> Result<GgufInfo, GgufError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    parse(BufReader::with_capacity(1 << 16, file), len)
}

/// Reads GGUF metadata from an in-memory buffer (the whole file or a prefix that contains
/// every header structure).
pub fn parse_bytes(bytes: &[u8]) -> Result<GgufInfo, GgufError> {
    parse(bytes, bytes.len() as u64)
}

/// Reads GGUF metadata from `reader`, which yields a file of `len` bytes. Every length in
/// the file is checked against `len` before anything is allocated or skipped.
pub fn parse<R: Read>(reader: R, len: u64) -> Result<GgufInfo, GgufError> {
    let mut r = Reader {
        inner: reader,
        pos: 0,
        len,
        scratch: vec![0; 8192],
    };

    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    // Each key/value pair needs at least a key length, a type code and one byte of value.
    r.check_count(kv_count, 8 + 4 + 1, "metadata key/value count")?;

    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.string(MAX_KEY_LEN, "metadata key")?;
        let value_type = r.value_type()?;
        let value = r.value(value_type)?;
        metadata.insert(key, value);
    }

    // Each tensor descriptor: name length, dimension count, type code and data offset.
    r.check_count(tensor_count, 8 + 4 + 4 + 8, "tensor count")?;
    let mut parameter_count: u64 = 0;
    for _ in 0..tensor_count {
        r.skip_string(MAX_KEY_LEN, "tensor name")?;
        let offset = r.pos;
        let n_dims = r.u32()?;
        if n_dims > MAX_TENSOR_DIMS {
            return Err(r.malformed(offset, format!("tensor has {n_dims} dimensions")));
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let offset = r.pos;
            let dim = r.u64()?;
            elements = elements
                .checked_mul(dim)
                .ok_or_else(|| r.malformed(offset, "tensor element count overflows".into()))?;
        }
        r.skip(4 + 8)?; // ggml type, data offset
        parameter_count = parameter_count
            .checked_add(elements)
            .ok_or_else(|| r.malformed(r.pos, "parameter count overflows".into()))?;
    }

    Ok(build_info(version, tensor_count, parameter_count, metadata))
}

fn build_info(
    version: u32,
    tensor_count: u64,
    parameter_count: u64,
    metadata: BTreeMap<String, MetadataValue>,
) -> GgufInfo {
    let string = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let architecture = string("general.architecture");
    let arch_u64 = |suffix: &str| {
        let arch = architecture.as_deref()?;
        metadata.get(&format!("{arch}.{suffix}"))?.as_u64()
    };
    let file_type = metadata
        .get("general.file_type")
        .and_then(MetadataValue::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    let quantization = match file_type {
        Some(ft) => file_type_name(ft).map_or_else(|| format!("ftype {ft}"), str::to_owned),
        None => "unknown".to_owned(),
    };
    GgufInfo {
        version,
        tensor_count,
        parameter_count,
        name: string("general.name"),
        size_label: string("general.size_label"),
        file_type,
        quantization,
        context_length: arch_u64("context_length"),
        embedding_length: arch_u64("embedding_length"),
        block_count: arch_u64("block_count"),
        chat_template: string("tokenizer.chat_template"),
        architecture,
        metadata,
    }
}

/// A bounds-checked little-endian reader that tracks its offset.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
    scratch: Vec<u8>,
}

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn malformed(&self, offset: u64, message: String) -> GgufError {
        GgufError::Malformed { offset, message }
    }

    /// Fails unless `needed` bytes remain.
    fn ensure(&self, needed: u64) -> Result<(), GgufError> {
        if needed > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                needed,
            });
        }
        Ok(())
    }

    /// Fails unless `count` items of at least `min_size` bytes each can fit in what remains.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), GgufError> {
        if count > self.remaining() / min_size {
            return Err(self.malformed(
                self.pos,
                format!(
                    "{what} {count} cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        let n = buf.len() as u64;
        self.ensure(n)?;
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    offset: self.pos,
                    needed: n,
                }
            } else {
                GgufError::Io(e)
            }
        })?;
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), GgufError> {
        self.ensure(n)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = (|| {
            while n > 0 {
                let chunk = usize::try_from(n).map_or(scratch.len(), |n| n.min(scratch.len()));
                self.read_exact(&mut scratch[..chunk])?;
                n -= chunk as u64;
            }
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let offset = self.pos;
        let code = self.u32()?;
        ValueType::from_code(code)
            .ok_or_else(|| self.malformed(offset, format!("unknown value type {code}")))
    }

    /// Reads a string length and checks it against `max` and the bytes left.
    fn string_len(&mut self, max: u64, what: &str) -> Result<u64, GgufError> {
        let offset = self.pos;
        let n = self.u64()?;
        if n > max || n > self.remaining() {
            return Err(self.malformed(
                offset,
                format!(
                    "{what} length {n} exceeds the limit ({} bytes left in file)",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn string(&mut self, max: u64, what: &str) -> Result<String, GgufError> {
        let n = self.string_len(max, what)?;
        // `n` is at most `max` and at most the bytes left, so this allocation is bounded.
        let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
        self.read_exact(&mut buf)?;
        Ok(String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn skip_string(&mut self, max: u64, what: &str) -> Result<(), GgufError> {
        let n = self.string_len(max, what)?;
        self.skip(n)
    }

    fn value(&mut self, ty: ValueType) -> Result<MetadataValue, GgufError> {
        Ok(match ty {
            ValueType::U8 => MetadataValue::U8(self.u8()?),
            ValueType::I8 => MetadataValue::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => MetadataValue::U32(self.u32()?),
            ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => MetadataValue::Bool(self.u8()? != 0),
            ValueType::String => MetadataValue::String(self.string(MAX_STRING_LEN, "string")?),
            ValueType::U64 => MetadataValue::U64(self.u64()?),
            ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                let (element_type, len) = self.skip_array(0)?;
                MetadataValue::Array { element_type, len }
            }
        })
    }

    /// Skips an array (element type, count, elements), returning its type and length.
    fn skip_array(&mut self, depth: u32) -> Result<(ValueType, u64), GgufError> {
        let offset = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.malformed(offset, "arrays nested too deeply".into()));
        }
        let element_type = self.value_type()?;
        let len = self.u64()?;
        match element_type.fixed_size() {
            Some(size) => {
                self.check_count(len, size, "array length")?;
                self.skip(len * size)?;
            }
            None if element_type == ValueType::String => {
                self.check_count(len, 8, "string array length")?;
                for _ in 0..len {
                    self.skip_string(u64::MAX, "array string")?;
                }
            }
            None => {
                self.check_count(len, 4 + 8, "nested array length")?;
                for _ in 0..len {
                    self.skip_array(depth + 1)?;
                }
            }
        }
        Ok((element_type, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds GGUF byte buffers for tests.
    #[derive(Default)]
    struct Builder {
        kvs: Vec<u8>,
        kv_count: u64,
        tensors: Vec<u8>,
        tensor_count: u64,
    }

    fn put_str(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }

    impl Builder {
        fn key(&mut self, key: &str, ty: u32) -> &mut Vec<u8> {
            self.kv_count += 1;
            put_str(&mut self.kvs, key);
            self.kvs.extend_from_slice(&ty.to_le_bytes());
            &mut self.kvs
        }
        fn string(mut self, key: &str, value: &str) -> Self {
            put_str(self.key(key, 8), value);
            self
        }
        fn u32(mut self, key: &str, value: u32) -> Self {
            self.key(key, 4).extend_from_slice(&value.to_le_bytes());
            self
        }
        fn raw(mut self, key: &str, ty: u32, bytes: &[u8]) -> Self {
            self.key(key, ty).extend_from_slice(bytes);
            self
        }
        fn tensor(mut self, name: &str, dims: &[u64]) -> Self {
            self.tensor_count += 1;
            put_str(&mut self.tensors, name);
            self.tensors
                .extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                self.tensors.extend_from_slice(&d.to_le_bytes());
            }
            self.tensors.extend_from_slice(&2u32.to_le_bytes());
            self.tensors.extend_from_slice(&0u64.to_le_bytes());
            self
        }
        fn build(&self) -> Vec<u8> {
            self.build_with(3, self.tensor_count, self.kv_count)
        }
        fn build_with(&self, version: u32, tensor_count: u64, kv_count: u64) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&tensor_count.to_le_bytes());
            out.extend_from_slice(&kv_count.to_le_bytes());
            out.extend_from_slice(&self.kvs);
            out.extend_from_slice(&self.tensors);
            out
        }
    }

    fn string_array(items: &[&str]) -> Vec<u8> {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for s in items {
            put_str(&mut v, s);
        }
        v
    }

    fn sample() -> Builder {
        let mut nested = 9u32.to_le_bytes().to_vec(); // array of arrays
        nested.extend_from_slice(&2u64.to_le_bytes());
        for n in [3u64, 1] {
            nested.extend_from_slice(&5u32.to_le_bytes()); // of int32
            nested.extend_from_slice(&n.to_le_bytes());
            for i in 0..n {
                nested.extend_from_slice(&(i as i32).to_le_bytes());
            }
        }
        Builder::default()
            .string("general.architecture", "llama")
            .string("general.name", "Tiny")
            .u32("general.file_type", 15)
            .raw("llama.context_length", 10, &8192u64.to_le_bytes())
            .raw("llama.embedding_length", 5, &576i32.to_le_bytes())
            .raw(
                "tokenizer.ggml.tokens",
                9,
                &string_array(&["<s>", "a", "bc"]),
            )
            .raw("nested", 9, &nested)
            .raw("flag", 7, &[1])
            .raw("score", 6, &1.5f32.to_le_bytes())
            .string("tokenizer.chat_template", "{{ messages }}")
            .tensor("token_embd.weight", &[576, 100])
            .tensor("output_norm.weight", &[576])
    }

    #[test]
    fn parses_synthetic_file() -> Result<(), GgufError> {
        let info = parse_bytes(&sample().build())?;
        assert_eq!(info.version, 3);
        assert_eq!(info.architecture.as_deref(), Some("llama"));
        assert_eq!(info.name.as_deref(), Some("Tiny"));
        assert_eq!(info.file_type, Some(15));
        assert_eq!(info.quantization, "Q4_K_M");
        assert_eq!(info.context_length, Some(8192));
        assert_eq!(info.embedding_length, Some(576));
        assert_eq!(info.block_count, None);
        assert_eq!(info.chat_template.as_deref(), Some("{{ messages }}"));
        assert_eq!(info.tensor_count, 2);
        assert_eq!(info.parameter_count, 576 * 100 + 576);
        assert_eq!(
            info.get("tokenizer.ggml.tokens"),
            Some(&MetadataValue::Array {
                element_type: ValueType::String,
                len: 3
            })
        );
        assert_eq!(
            info.get("nested"),
            Some(&MetadataValue::Array {
                element_type: ValueType::Array,
                len: 2
            })
        );
        assert_eq!(info.get("flag"), Some(&MetadataValue::Bool(true)));
        assert_eq!(info.get("score"), Some(&MetadataValue::F32(1.5)));
        Ok(())
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().build();
        for cut in 0..bytes.len() {
            let result = parse_bytes(&bytes[..cut]);
            assert!(result.is_err(), "prefix of {cut} bytes parsed");
        }
    }

    #[test]
    fn bit_flips_never_panic() {
        let bytes = sample().build();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..4000 {
            let mut corrupt = bytes.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % corrupt.len() as u64) as usize;
                corrupt[i] ^= 1 << (state >> 60 & 7);
            }
            let _ = parse_bytes(&corrupt);
        }
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = sample().build();
        bytes[0] = b'X';
        assert!(matches!(parse_bytes(&bytes), Err(GgufError::BadMagic(_))));
        let bytes = sample().build_with(1, 2, 10);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::UnsupportedVersion(1))
        ));
        // A big-endian file reads as a huge little-endian version.
        let bytes = sample().build_with(3u32.swap_bytes(), 2, 10);
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::UnsupportedVersion(_))
        ));
        assert!(matches!(parse_bytes(b""), Err(GgufError::Truncated { .. })));
    }

    #[test]
    fn absurd_lengths_are_rejected_without_allocating() {
        // Absurd key/value and tensor counts.
        let b = sample();
        for (t, kv) in [(0, u64::MAX), (u64::MAX, b.kv_count), (1 << 40, b.kv_count)] {
            assert!(
                matches!(
                    parse_bytes(&b.build_with(3, t, kv)),
                    Err(GgufError::Malformed { .. })
                ),
                "counts {t}/{kv}"
            );
        }
        // A string whose length is far beyond the end of the file.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"abc");
        let bytes = Builder::default().raw("s", 8, &huge).build();
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::Malformed { .. })
        ));
        // Arrays with absurd element counts, fixed-size and string.
        for ty in [0u32, 10, 8, 9] {
            let mut arr = ty.to_le_bytes().to_vec();
            arr.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
            arr.extend_from_slice(&[0; 16]);
            let bytes = Builder::default().raw("a", 9, &arr).build();
            assert!(
                matches!(parse_bytes(&bytes), Err(GgufError::Malformed { .. })),
                "array of type {ty}"
            );
        }
        // An unknown value type.
        let bytes = Builder::default().raw("x", 99, &[0; 8]).build();
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::Malformed { .. })
        ));
        // Arrays nested beyond the depth limit.
        let mut deep = Vec::new();
        for _ in 0..20 {
            deep.extend_from_slice(&9u32.to_le_bytes());
            deep.extend_from_slice(&1u64.to_le_bytes());
        }
        deep.extend_from_slice(&[0; 64]);
        let bytes = Builder::default().raw("deep", 9, &deep).build();
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::Malformed { .. })
        ));
        // A tensor with too many dimensions, or whose element count overflows.
        let bytes = Builder::default().tensor("t", &[1; 9]).build();
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::Malformed { .. })
        ));
        let bytes = Builder::default().tensor("t", &[u64::MAX, 2]).build();
        assert!(matches!(
            parse_bytes(&bytes),
            Err(GgufError::Malformed { .. })
        ));
    }

    #[test]
    fn file_type_names() {
        assert_eq!(file_type_name(0), Some("F32"));
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(32), Some("BF16"));
        assert_eq!(file_type_name(5), None);
        let info = parse_bytes(&Builder::default().u32("general.file_type", 5).build());
        assert_eq!(
            info.map(|i| i.quantization).ok().as_deref(),
            Some("ftype 5")
        );
    }
}
