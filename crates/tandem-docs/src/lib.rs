//! Document extraction and chunking for Tandem's knowledge bases.
//!
//! [`extract`] turns the bytes of a file into a [`Document`]: its plain text plus the
//! structure found in it (headings, paragraphs, pages). [`chunk`] cuts a document into
//! [`Chunk`]s that respect that structure, within a token budget and with overlap.
//! Nothing here does I/O beyond what the caller passes in.

use std::ops::Range;

mod builder;
mod chunk;
mod decode;
mod docx;
mod html;
mod markdown;
mod pdf;
mod table;

pub use chunk::chunk;

/// File formats Tandem can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CommonMark Markdown with tables (`.md`, `.markdown`).
    Markdown,
    /// Plain text (`.txt`, `.text`).
    Text,
    /// HTML (`.html`, `.htm`).
    Html,
    /// PDF with a text layer (`.pdf`); scanned pages without text give no text.
    Pdf,
    /// Word 2007+ documents (`.docx`).
    Docx,
}

/// What kind of block of text a [`Block`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// A heading; `level` 1 is the top.
    Heading { level: u8 },
    /// A paragraph of running text.
    Paragraph,
    /// One item of a list (a nested list's items are blocks of their own).
    ListItem,
    /// A code block, its line breaks and indentation kept.
    Code,
    /// A table: one line per body row, each cell labelled by its column's header
    /// (`label：value；…` in Chinese, `label: value; …` otherwise); cells joined by `" | "`
    /// when the table has no header.
    Table,
}

/// One structural block of a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// What the block is.
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
    /// The format the file was read as.
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
    /// The file name has no extension Tandem reads; the message names the file and extension.
    #[error("unsupported file type: {0}")]
    Unsupported(String),
    /// There is no text: an empty file, only whitespace, or a PDF/DOCX without any text.
    #[error("the file is empty")]
    Empty,
    /// The bytes of a text format are not text (NUL bytes, mostly control characters).
    #[error("the file looks binary, not {0:?} text")]
    Binary(Format),
    /// The text could not be decoded in any encoding (mostly invalid characters).
    #[error("could not decode the text: {0}")]
    Encoding(String),
    /// A PDF or DOCX that cannot be parsed (truncated, corrupt, encrypted, or one that made
    /// the parser panic).
    #[error("malformed {format:?}: {reason}")]
    Malformed {
        /// The format the file claimed to be.
        format: Format,
        /// What went wrong, for the user.
        reason: String,
    },
}

impl Format {
    /// The lowercase name of the format ("markdown", "pdf", ...), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
        }
    }
}

/// The format of a file, from the extension of its name (case-insensitive): `md`/`markdown`,
/// `txt`/`text`, `html`/`htm`, `pdf`, `docx`. `None` for anything else, or no extension.
///
/// `file_name` may be a bare name or a path; only its last extension counts.
pub fn format_of(file_name: &str) -> Option<Format> {
    let ext = std::path::Path::new(file_name)
        .extension()?
        .to_str()?
        .to_ascii_lowercase();
    match ext.as_str() {
        "md" | "markdown" => Some(Format::Markdown),
        "txt" | "text" => Some(Format::Text),
        "html" | "htm" => Some(Format::Html),
        "pdf" => Some(Format::Pdf),
        "docx" => Some(Format::Docx),
        _ => None,
    }
}

/// Extracts the text and structure of a file, choosing the format by [`format_of`].
///
/// Text formats (Markdown, plain text, HTML) are decoded from a BOM (UTF-8, UTF-16LE/BE),
/// else as UTF-8 when valid, else by detection (Big5, GBK, Shift_JIS, windows-1252, ...);
/// [`Document::encoding`] names the encoding used. PDF text is read page by page (a
/// malformed PDF gives [`ExtractError::Malformed`], never a panic); DOCX paragraphs, headings
/// and tables come from `word/document.xml`.
///
/// Errors: [`ExtractError::Unsupported`] for an unknown extension, [`ExtractError::Empty`]
/// when there is no text at all (empty file, only whitespace, a PDF with no text layer),
/// [`ExtractError::Binary`] for bytes that are not text, [`ExtractError::Encoding`] when
/// the bytes cannot be decoded, [`ExtractError::Malformed`] for a broken PDF or DOCX.
pub fn extract(file_name: &str, bytes: &[u8]) -> Result<Document, ExtractError> {
    let format = format_of(file_name).ok_or_else(|| {
        let ext = std::path::Path::new(file_name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_else(|| "(no extension)".to_string());
        ExtractError::Unsupported(format!("{file_name}: {ext}"))
    })?;
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let doc = match format {
        Format::Markdown => {
            let (text, encoding) = decode::decode_text(bytes, format)?;
            markdown::parse(&text, encoding)
        }
        Format::Text => {
            let (text, encoding) = decode::decode_text(bytes, format)?;
            builder::plain_text(&text, Format::Text, encoding, None)
        }
        Format::Html => {
            let (text, encoding) = decode::decode_text(bytes, format)?;
            html::parse(&text, encoding)
        }
        Format::Pdf => pdf::parse(bytes)?,
        Format::Docx => docx::parse(bytes)?,
    };
    if doc.blocks.is_empty() || doc.text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(doc)
}
