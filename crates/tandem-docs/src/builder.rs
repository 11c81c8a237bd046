//! Assembles a [`Document`] block by block: joins blocks with blank lines, tracks the
//! heading path and the title.

use crate::{Block, BlockKind, Document, Format};

/// Collects blocks into a document's text.
pub(crate) struct DocBuilder {
    format: Format,
    text: String,
    blocks: Vec<Block>,
    /// Open headings, outermost first: (level, text).
    headings: Vec<(u8, String)>,
    /// Text of the first level-1 heading.
    first_h1: Option<String>,
}

impl DocBuilder {
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            text: String::new(),
            blocks: Vec::new(),
            headings: Vec::new(),
            first_h1: None,
        }
    }

    /// Adds one block. Its text is cleaned (control characters dropped, `\r\n` made `\n`,
    /// trimmed); a block left empty is skipped. Headings (and tables and code, whose lines
    /// matter) keep their inner newlines; headings have theirs turned into spaces.
    pub(crate) fn push(&mut self, kind: BlockKind, raw: &str, page: Option<u32>) {
        let mut cleaned = clean(raw);
        if let BlockKind::Heading { .. } = kind {
            cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        let content = cleaned.trim_matches(is_trim);
        if content.is_empty() {
            return;
        }
        if let BlockKind::Heading { level } = kind {
            let level = level.max(1);
            while self.headings.last().is_some_and(|(l, _)| *l >= level) {
                self.headings.pop();
            }
            self.headings.push((level, content.to_string()));
            if level == 1 && self.first_h1.is_none() {
                self.first_h1 = Some(content.to_string());
            }
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(content);
        let heading_path = self.headings.iter().map(|(_, h)| h.clone()).collect();
        self.blocks.push(Block {
            kind,
            range: start..self.text.len(),
            heading_path,
            page,
        });
    }

    pub(crate) fn finish(self, encoding: &str, title: Option<String>) -> Document {
        let title = title
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty())
            .or(self.first_h1);
        Document {
            format: self.format,
            encoding: encoding.to_string(),
            title,
            text: self.text,
            blocks: self.blocks,
        }
    }
}

fn is_trim(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// Drops control characters other than newline and tab, and carriage returns.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            '\u{feff}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Splits text into paragraphs at blank lines (lines holding only whitespace).
pub(crate) fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        } else {
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(line.trim_end());
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// A plain-text document: one paragraph block per run of non-blank lines.
pub(crate) fn plain_text(
    text: &str,
    format: Format,
    encoding: &str,
    title: Option<String>,
) -> Document {
    let mut b = DocBuilder::new(format);
    for p in paragraphs(&clean(text)) {
        b.push(BlockKind::Paragraph, &p, None);
    }
    b.finish(encoding, title)
}

/// Whether `c` is a CJK ideograph (or kana), i.e. a character of a script written without
/// spaces between words.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2A6DF  // Extension B
        | 0x2A700..=0x2EBEF  // Extensions C-F
        | 0x30000..=0x3134F) // Extension G
}

/// Joins wrapped lines into one line: a space between words, nothing between two CJK
/// characters.
pub(crate) fn join_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let prev = out.chars().next_back();
        let next = line.chars().next();
        if let (Some(p), Some(n)) = (prev, next)
            && !(is_cjk(p) && is_cjk(n))
        {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}
