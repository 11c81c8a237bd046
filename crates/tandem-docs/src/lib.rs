//! Document extraction and chunking for Tandem's knowledge bases.
//!
//! [`extract`] turns the bytes of a file into a [`Document`]: its plain text plus the
//! structure found in it (headings, paragraphs, pages). [`chunk`] cuts a document into
//! [`Chunk`]s that respect that structure, within a token budget and with overlap.
//! Nothing here does I/O beyond what the caller passes in.

use std::ops::Range;

/// File formats Tandem can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Text,
    Html,
    Pdf,
    Docx,
}

/// What kind of block of text a [`Block`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// A heading; `level` 1 is the top.
    Heading { level: u8 },
    Paragraph,
    ListItem,
    Code,
    Table,
}

/// One structural block of a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    pub kind: BlockKind,
    /// Byte range of the block's text inside [`Document::text`].
    pub range: Range<usize>,
    /// Headings above this block, outermost first (a heading block's path ends with itself).
    pub heading_path: Vec<String>,
    /// 1-based page number (PDF only).
    pub page: Option<u32>,
}

/// A file's extracted text and structure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Document {
    pub format: Format,
    /// Encoding the source text was decoded from ("UTF-8", "Big5", "UTF-16LE", ...).
    pub encoding: String,
    /// Title: the first top-level heading, an HTML `<title>`, or PDF/DOCX metadata.
    pub title: Option<String>,
    /// The plain text of the whole document. Blocks are separated by blank lines.
    pub text: String,
    /// Blocks in reading order; their ranges do not overlap and lie inside `text`.
    pub blocks: Vec<Block>,
}

/// A piece of a document, sized for embedding and for a prompt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// Position of the chunk in its document, from 0.
    pub index: usize,
    /// The chunk's text (a slice of [`Document::text`], blocks joined as they are there).
    pub text: String,
    /// Heading path of the chunk's first block.
    pub heading_path: Vec<String>,
    /// Page of the chunk's first block (PDF only).
    pub page: Option<u32>,
    /// Byte range inside [`Document::text`].
    pub byte_range: Range<usize>,
    /// Character (Unicode scalar) range inside [`Document::text`].
    pub char_range: Range<usize>,
    /// Token count as given by the caller's counter.
    pub tokens: usize,
    /// Hex SHA-256 of `text`.
    pub hash: String,
}

/// How [`chunk`] sizes chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Most tokens in one chunk.
    pub max_tokens: usize,
    /// Tokens of the previous chunk's end repeated at the start of the next one, within a
    /// section (never across a heading).
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 30,
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("unsupported file type: {0}")]
    Unsupported(String),
    #[error("the file is empty")]
    Empty,
    #[error("the file looks binary, not {0:?} text")]
    Binary(Format),
    #[error("could not decode the text: {0}")]
    Encoding(String),
    #[error("malformed {format:?}: {reason}")]
    Malformed { format: Format, reason: String },
}
