//! Simplified → Traditional (Taiwan) conversion of answers, whole or streamed.
//!
//! The text is read character by character by a small state machine that knows what must
//! not change: in prose, code (fenced blocks and inline spans) and URLs; in JSON, keys and
//! escapes (only the content of string values converts). What may change is gathered into
//! clauses, ended by punctuation or white space, and a clause is converted with OpenCC's
//! `s2twp` chain (phrase-level, Taiwan usage: 软件 → 軟體, 信息 → 資訊) when it contains a
//! Simplified-only character; a clause of characters both scripts share (信息, 后) follows
//! the clause before it, and one with a Traditional-only character is kept. So Traditional
//! text the model wrote stays as it is (OpenCC would otherwise rewrite its 台 as 臺). Streaming holds back at most the current
//! clause, and never more than [`HOLD_MAX`] characters: a phrase split across chunks converts
//! as a whole unless it is longer than that.

use crate::detect::{is_han, is_simplified_only, is_traditional_only};
use ferrous_opencc::OpenCC;
use ferrous_opencc::config::BuiltinConfig;
use std::sync::OnceLock;

/// The most characters a stream holds back before converting what it has.
pub const HOLD_MAX: usize = 32;

/// The converter could not be built (its embedded dictionaries failed to load).
#[derive(Debug, thiserror::Error)]
#[error("the Simplified→Traditional converter failed to load: {0}")]
pub struct LoadError(String);

fn opencc() -> Result<&'static OpenCC, LoadError> {
    static CC: OnceLock<Result<OpenCC, String>> = OnceLock::new();
    CC.get_or_init(|| OpenCC::from_config(BuiltinConfig::S2twp).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| LoadError(e.clone()))
}

/// What the converted text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prose, possibly Markdown: code spans, code blocks and URLs are kept.
    Prose,
    /// A JSON document (a structured answer, tool-call arguments): only string values change.
    Json,
}

/// Converts one whole text; returns it and whether anything changed.
pub fn convert(text: &str, format: Format) -> Result<(String, bool), LoadError> {
    let mut c = Converter::new(format)?;
    let mut out = c.push(text);
    out.push_str(&c.finish());
    Ok((out, c.converted() > 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    None,
    /// Inside an inline code span opened by this many backticks.
    Inline(usize),
    /// Inside a fenced block opened by this many backticks or tildes.
    Fence(usize, char),
}

#[derive(Debug)]
struct Prose {
    line_start: bool,
    /// Backticks (or tildes) seen in a row, which, and whether the run began a line.
    ticks: usize,
    tick: char,
    ticks_at_line_start: bool,
    code: Code,
    /// The ASCII word being read (to see `scheme://`), at most 16 characters.
    word: String,
    url: bool,
}

#[derive(Debug, Default)]
struct Json {
    /// Open containers: `true` for an object.
    stack: Vec<bool>,
    expect_key: bool,
    in_string: bool,
    key: bool,
    escape: bool,
    /// Hex digits of a `\u` escape still to come.
    hex: u8,
}

#[derive(Debug)]
enum Mode {
    Prose(Prose),
    Json(Json),
}

/// A stream converter: [`push`](Converter::push) text as it comes and send what it returns;
/// [`finish`](Converter::finish) at the end sends what was held back.
pub struct Converter {
    cc: &'static OpenCC,
    mode: Mode,
    /// The clause being gathered (held back).
    run: String,
    run_chars: usize,
    run_han: bool,
    run_simplified: bool,
    run_traditional: bool,
    /// Whether the last clause with Chinese in it was converted.
    converting: bool,
    converted: usize,
}

impl std::fmt::Debug for Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converter")
            .field("mode", &self.mode)
            .field("held", &self.run)
            .field("converted", &self.converted)
            .finish()
    }
}

/// Ends a clause: white space and punctuation, ASCII or CJK.
fn is_break(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
        || matches!(c, '…' | '—' | '“' | '”' | '‘' | '’' | '·')
}

/// Ends a URL in prose.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '<' | '>' | '"' | '\'' | '`' | ')')
        || matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF5B..=0xFF65)
}

impl Converter {
    /// A converter for one text or stream.
    pub fn new(format: Format) -> Result<Converter, LoadError> {
        let mode = match format {
            Format::Prose => Mode::Prose(Prose {
                line_start: true,
                ticks: 0,
                tick: '`',
                ticks_at_line_start: false,
                code: Code::None,
                word: String::new(),
                url: false,
            }),
            Format::Json => Mode::Json(Json::default()),
        };
        Ok(Converter {
            cc: opencc()?,
            mode,
            run: String::new(),
            run_chars: 0,
            run_han: false,
            run_simplified: false,
            run_traditional: false,
            converting: false,
            converted: 0,
        })
    }

    /// Characters held back now (at most [`HOLD_MAX`]).
    pub fn held(&self) -> usize {
        self.run.chars().count()
    }

    /// How many clauses were changed so far.
    pub fn converted(&self) -> usize {
        self.converted
    }

    /// Converts the next piece; returns what can be sent now.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            self.step(c, &mut out);
        }
        out
    }

    /// Ends the text: returns what was held back.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.flush(&mut out);
        out
    }

    fn step(&mut self, c: char, out: &mut String) {
        let convertible = match &mut self.mode {
            Mode::Prose(p) => prose_step(p, c),
            Mode::Json(j) => json_step(j, c),
        };
        if convertible {
            self.text(c, out);
        } else {
            self.flush(out);
            out.push(c);
        }
    }

    /// A character that may convert.
    fn text(&mut self, c: char, out: &mut String) {
        if is_han(c) {
            self.run.push(c);
            self.run_chars += 1;
            self.run_han = true;
            if is_simplified_only(c) {
                self.run_simplified = true;
            } else if is_traditional_only(c) {
                self.run_traditional = true;
            }
            if self.run_chars >= HOLD_MAX {
                self.flush(out);
            }
        } else if is_break(c) {
            self.run.push(c);
            self.flush(out);
        } else if self.run_han {
            self.run.push(c);
            self.run_chars += 1;
            if self.run_chars >= HOLD_MAX {
                self.flush(out);
            }
        } else {
            // Nothing to convert before it: no reason to hold it back.
            self.flush(out);
            out.push(c);
        }
    }

    fn flush(&mut self, out: &mut String) {
        if self.run.is_empty() {
            return;
        }
        if self.run_han {
            self.converting = self.run_simplified || (self.converting && !self.run_traditional);
        }
        if self.run_han && self.converting {
            let converted = self.cc.convert(&self.run);
            if converted != self.run {
                self.converted += 1;
            }
            out.push_str(&converted);
        } else {
            out.push_str(&self.run);
        }
        self.run.clear();
        self.run_chars = 0;
        self.run_han = false;
        self.run_simplified = false;
        self.run_traditional = false;
    }
}

/// Advances the prose state by `c`; whether `c` may convert.
fn prose_step(p: &mut Prose, c: char) -> bool {
    if p.ticks > 0 && c != p.tick {
        let n = std::mem::take(&mut p.ticks);
        let t = p.tick;
        p.code = match p.code {
            Code::None if n >= 3 && p.ticks_at_line_start => Code::Fence(n, t),
            Code::None if t == '`' => Code::Inline(n),
            Code::Inline(m) if m == n && t == '`' => Code::None,
            Code::Fence(m, f) if f == t && n >= m && p.ticks_at_line_start => Code::None,
            code => code,
        };
    }
    if c == '`' || c == '~' {
        if p.ticks == 0 {
            p.ticks_at_line_start = p.line_start;
            p.tick = c;
        }
        p.ticks += 1;
        p.line_start = false;
        p.url = false;
        p.word.clear();
        return false;
    }
    let was_line_start = p.line_start;
    p.line_start = c == '\n' || (was_line_start && (c == ' ' || c == '\t'));
    if c == '\n' && matches!(p.code, Code::Inline(_)) {
        // A stray backtick must not keep the rest of the answer from converting.
        p.code = Code::None;
    }
    if p.code != Code::None {
        return false;
    }
    if p.url {
        if !ends_url(c) {
            return false;
        }
        p.url = false;
    }
    if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | ':' | '/') {
        if p.word.len() >= 16 {
            p.word.remove(0);
        }
        p.word.push(c);
        // The scheme is the letters just before `://` (`链接:https://` has `https`).
        if let Some(before) = p.word.strip_suffix("://")
            && before
                .chars()
                .rev()
                .take_while(char::is_ascii_alphabetic)
                .count()
                >= 2
        {
            p.url = true;
            p.word.clear();
        }
    } else {
        p.word.clear();
    }
    // `://` itself is ASCII: it converts to itself either way.
    true
}

/// Advances the JSON state by `c`; whether `c` may convert (inside a string value).
fn json_step(j: &mut Json, c: char) -> bool {
    if j.in_string {
        if j.hex > 0 {
            j.hex -= 1;
            return false;
        }
        if j.escape {
            j.escape = false;
            if c == 'u' {
                j.hex = 4;
            }
            return false;
        }
        match c {
            '\\' => {
                j.escape = true;
                false
            }
            '"' => {
                j.in_string = false;
                false
            }
            _ => !j.key,
        }
    } else {
        match c {
            '"' => {
                j.in_string = true;
                j.key = j.stack.last() == Some(&true) && j.expect_key;
            }
            '{' => {
                j.stack.push(true);
                j.expect_key = true;
            }
            '[' => {
                j.stack.push(false);
                j.expect_key = false;
            }
            '}' | ']' => {
                j.stack.pop();
                j.expect_key = false;
            }
            ':' => j.expect_key = false,
            ',' => j.expect_key = j.stack.last() == Some(&true),
            _ => {}
        }
        false
    }
}
