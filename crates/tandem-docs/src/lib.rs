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
    Heading {
        level: u8,
    },
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

// --- interim implementation, replaced by the kb-docs branch ---
//
// A deliberately small stand-in so that the knowledge-base crate can be built and tested
// before the real extractor lands: UTF-8 Markdown and plain text, plus a crude HTML tag
// stripper (drops `<script>`, `<style>`, `<nav>`, `<footer>`; `<h1>`–`<h6>` become
// headings). Other formats are reported as [`ExtractError::Unsupported`]. Chunks never
// cross a heading and carry no overlap.

/// Extracts the text and structure of a file from its name (for the format) and bytes.
pub fn extract(file_name: &str, bytes: &[u8]) -> Result<Document, ExtractError> {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let format = match ext.as_str() {
        "md" | "markdown" => Format::Markdown,
        "txt" | "text" => Format::Text,
        "html" | "htm" => Format::Html,
        _ => return Err(ExtractError::Unsupported(file_name.to_string())),
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(ExtractError::Binary(format));
    }
    let raw = std::str::from_utf8(bytes).map_err(|e| ExtractError::Encoding(e.to_string()))?;
    let (source, mut title) = match format {
        Format::Html => interim::html_to_markdown(raw),
        _ => (raw.to_string(), None),
    };
    let headings = format != Format::Text;
    let mut text = String::new();
    let mut blocks: Vec<Block> = Vec::new();
    let mut path: Vec<(u8, String)> = Vec::new();
    for (kind, body) in interim::split_blocks(&source, headings) {
        if let BlockKind::Heading { level } = kind {
            path.retain(|(l, _)| *l < level);
            path.push((level, body.clone()));
            if title.is_none() && level == 1 {
                title = Some(body.clone());
            }
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(&body);
        blocks.push(Block {
            kind,
            range: start..text.len(),
            heading_path: path.iter().map(|(_, h)| h.clone()).collect(),
            page: None,
        });
    }
    if blocks.is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(Document {
        format,
        encoding: "UTF-8".to_string(),
        title,
        text,
        blocks,
    })
}

/// Cuts `doc` into chunks of at most `opts.max_tokens` tokens (as counted by
/// `count_tokens`): consecutive blocks of one section are packed together; a block that
/// alone exceeds the budget is split at line or sentence ends (or, failing that, anywhere).
pub fn chunk(
    doc: &Document,
    opts: &ChunkOptions,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let budget = opts.max_tokens.max(1);
    let mut out: Vec<Chunk> = Vec::new();
    // (block giving the heading path, start, end, whether it holds more than headings)
    let mut group: Option<(usize, usize, usize, bool)> = None;
    let flush = |out: &mut Vec<Chunk>, first: usize, range: Range<usize>| {
        let block = &doc.blocks[first];
        interim::push_chunk(out, doc, block, range, count_tokens);
    };
    for (i, block) in doc.blocks.iter().enumerate() {
        let is_heading = matches!(block.kind, BlockKind::Heading { .. });
        if let Some((first, start, end, has_body)) = group {
            // A heading closes a chunk, unless the chunk so far is only headings.
            let joined = &doc.text[start..block.range.end];
            if (!is_heading || !has_body) && count_tokens(joined) <= budget {
                let first = if has_body { first } else { i };
                group = Some((first, start, block.range.end, has_body || !is_heading));
                continue;
            }
            flush(&mut out, first, start..end);
            group = None;
        }
        if count_tokens(&doc.text[block.range.clone()]) <= budget {
            group = Some((i, block.range.start, block.range.end, !is_heading));
        } else {
            for piece in
                interim::split_oversized(&doc.text, block.range.clone(), budget, count_tokens)
            {
                flush(&mut out, i, piece);
            }
        }
    }
    if let Some((first, start, end, _)) = group {
        flush(&mut out, first, start..end);
    }
    out
}

mod interim {
    use super::{Block, BlockKind, Chunk, Document};
    use sha2::{Digest, Sha256};
    use std::ops::Range;

    pub(super) fn push_chunk(
        out: &mut Vec<Chunk>,
        doc: &Document,
        block: &Block,
        range: Range<usize>,
        count_tokens: &dyn Fn(&str) -> usize,
    ) {
        let text = doc.text[range.clone()].to_string();
        if text.trim().is_empty() {
            return;
        }
        let char_start = doc.text[..range.start].chars().count();
        let char_end = char_start + text.chars().count();
        out.push(Chunk {
            index: out.len(),
            hash: hex::encode(Sha256::digest(text.as_bytes())),
            tokens: count_tokens(&text),
            heading_path: block.heading_path.clone(),
            page: block.page,
            byte_range: range,
            char_range: char_start..char_end,
            text,
        });
    }

    /// Splits `text[range]` into consecutive ranges within `budget` tokens.
    pub(super) fn split_oversized(
        text: &str,
        range: Range<usize>,
        budget: usize,
        count_tokens: &dyn Fn(&str) -> usize,
    ) -> Vec<Range<usize>> {
        // Candidate cut points: after line ends and sentence ends, else every char.
        let body = &text[range.clone()];
        let mut cuts: Vec<usize> = body
            .char_indices()
            .filter(|(_, c)| matches!(c, '\n' | '。' | '！' | '？' | '；' | '.' | '!' | '?'))
            .map(|(i, c)| range.start + i + c.len_utf8())
            .collect();
        cuts.push(range.end);
        let mut pieces = Vec::new();
        let mut start = range.start;
        let mut last_ok: Option<usize> = None;
        let mut i = 0;
        while i < cuts.len() {
            let cut = cuts[i];
            if cut <= start {
                i += 1;
                continue;
            }
            if count_tokens(&text[start..cut]) <= budget {
                last_ok = Some(cut);
                i += 1;
                continue;
            }
            let end = match last_ok.take() {
                Some(end) => end,
                None => hard_cut(text, start, cut, budget, count_tokens),
            };
            pieces.push(start..end);
            start = end;
        }
        if start < range.end {
            pieces.push(start..range.end);
        }
        pieces
    }

    /// Longest prefix of `text[start..end]` (at a char boundary, at least one char) within
    /// `budget` tokens, found by bisection.
    fn hard_cut(
        text: &str,
        start: usize,
        end: usize,
        budget: usize,
        count_tokens: &dyn Fn(&str) -> usize,
    ) -> usize {
        let bounds: Vec<usize> = text[start..end]
            .char_indices()
            .map(|(i, _)| start + i)
            .skip(1)
            .chain(std::iter::once(end))
            .collect();
        let (mut lo, mut hi) = (0usize, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if count_tokens(&text[start..bounds[mid]]) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        bounds[lo]
    }

    /// Splits Markdown-ish source into blocks: paragraphs separated by blank lines, `#`
    /// headings (when `headings`), fenced code kept whole.
    pub(super) fn split_blocks(source: &str, headings: bool) -> Vec<(BlockKind, String)> {
        let mut blocks = Vec::new();
        let mut para: Vec<&str> = Vec::new();
        let mut in_fence = false;
        let flush = |para: &mut Vec<&str>, blocks: &mut Vec<(BlockKind, String)>| {
            let body = para.join("\n");
            let body = body.trim_matches(|c: char| c == '\n' || c == '\r');
            if !body.trim().is_empty() {
                blocks.push((BlockKind::Paragraph, body.to_string()));
            }
            para.clear();
        };
        for line in source.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_fence = !in_fence;
                para.push(line);
                continue;
            }
            if in_fence {
                para.push(line);
                continue;
            }
            if trimmed.is_empty() {
                flush(&mut para, &mut blocks);
                continue;
            }
            let hashes = trimmed.chars().take_while(|&c| c == '#').count();
            if headings
                && (1..=6).contains(&hashes)
                && trimmed[hashes..].starts_with(char::is_whitespace)
            {
                flush(&mut para, &mut blocks);
                let level = u8::try_from(hashes).unwrap_or(6);
                let heading = trimmed[hashes..].trim().trim_end_matches('#').trim();
                if !heading.is_empty() {
                    blocks.push((BlockKind::Heading { level }, heading.to_string()));
                }
                continue;
            }
            para.push(line);
        }
        flush(&mut para, &mut blocks);
        blocks
    }

    /// Crude HTML → Markdown-ish text: drops non-content elements and tags, turns
    /// headings into `#` lines and block elements into paragraph breaks. Returns the
    /// text and the `<title>`.
    pub(super) fn html_to_markdown(html: &str) -> (String, Option<String>) {
        let lower = html.to_ascii_lowercase();
        let title = lower.find("<title").and_then(|at| {
            let open_end = at + lower[at..].find('>')? + 1;
            let close = open_end + lower[open_end..].find("</title")?;
            Some(decode_entities(html[open_end..close].trim()))
        });
        let mut out = String::new();
        let mut i = 0;
        while i < html.len() {
            let Some(rel) = html[i..].find('<') else {
                out.push_str(&decode_entities(&html[i..]));
                break;
            };
            out.push_str(&decode_entities(&html[i..i + rel]));
            let tag_start = i + rel;
            let Some(tag_len) = html[tag_start..].find('>') else {
                break;
            };
            let tag_end = tag_start + tag_len + 1;
            let tag = &lower[tag_start + 1..tag_end - 1];
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            i = tag_end;
            let closing = tag.starts_with('/');
            match name.as_str() {
                "script" | "style" | "nav" | "footer" | "head" | "title" if !closing => {
                    let close = format!("</{name}");
                    i = lower[i..]
                        .find(&close)
                        .map(|p| i + p + lower[i + p..].find('>').map_or(0, |q| q + 1))
                        .unwrap_or(html.len());
                }
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    out.push_str("\n\n");
                    if !closing {
                        let level = name[1..].parse::<usize>().unwrap_or(1);
                        out.push_str(&"#".repeat(level));
                        out.push(' ');
                    }
                }
                "p" | "div" | "ul" | "ol" | "table" | "main" | "section" | "article" => {
                    out.push_str("\n\n")
                }
                "li" if !closing => out.push_str("\n- "),
                "br" | "tr" => out.push('\n'),
                "td" | "th" if !closing => out.push_str(" | "),
                _ => {}
            }
        }
        // Collapse whitespace inside lines (HTML source indentation).
        let text = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        (text, title)
    }

    fn decode_entities(s: &str) -> String {
        if !s.contains('&') {
            return s.to_string();
        }
        s.replace("&nbsp;", " ")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
}
