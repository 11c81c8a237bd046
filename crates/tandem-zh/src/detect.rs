//! Which script a text is written in: counts of Simplified-only and Traditional-only
//! characters (sets derived from OpenCC's character tables by `scripts/gen-zh-sets.py`;
//! characters both scripts share, such as 台, 里 or 中, count for neither).

use std::collections::HashSet;
use std::sync::OnceLock;

const SIMPLIFIED: &str = include_str!("../data/simplified_only.txt");
const TRADITIONAL: &str = include_str!("../data/traditional_only.txt");

fn set(data: &'static str) -> HashSet<char> {
    data.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::chars)
        .collect()
}

fn simplified_set() -> &'static HashSet<char> {
    static S: OnceLock<HashSet<char>> = OnceLock::new();
    S.get_or_init(|| set(SIMPLIFIED))
}

fn traditional_set() -> &'static HashSet<char> {
    static S: OnceLock<HashSet<char>> = OnceLock::new();
    S.get_or_init(|| set(TRADITIONAL))
}

/// A character only Simplified Chinese uses (发, 这, 湾; not 台 or 中).
pub fn is_simplified_only(c: char) -> bool {
    is_han(c) && simplified_set().contains(&c)
}

/// A character only Traditional Chinese uses (發, 這, 灣; not 台 or 中).
pub fn is_traditional_only(c: char) -> bool {
    is_han(c) && traditional_set().contains(&c)
}

/// A CJK ideograph (the unified blocks, their extensions and the compatibility block).
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2EBEF | 0x30000..=0x323AF)
}

/// How many characters of a text only one script uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Traditional-only characters.
    pub traditional: usize,
    /// Simplified-only characters.
    pub simplified: usize,
    /// CJK ideographs in all.
    pub han: usize,
}

impl Counts {
    /// Counts one text.
    pub fn of(text: &str) -> Counts {
        let mut c = Counts::default();
        for ch in text.chars().filter(|&ch| is_han(ch)) {
            c.han += 1;
            if simplified_set().contains(&ch) {
                c.simplified += 1;
            } else if traditional_set().contains(&ch) {
                c.traditional += 1;
            }
        }
        c
    }

    /// The script the text is written in.
    pub fn script(&self) -> Script {
        if self.han == 0 {
            Script::None
        } else if self.traditional > self.simplified {
            Script::Traditional
        } else if self.simplified > self.traditional {
            Script::Simplified
        } else {
            // Only shared characters (中文, 台北), or as many of each.
            Script::Undetermined
        }
    }
}

/// The script of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// More Traditional-only than Simplified-only characters.
    Traditional,
    /// More Simplified-only than Traditional-only characters.
    Simplified,
    /// Chinese, but only characters both scripts share (or as many of each).
    Undetermined,
    /// No Chinese characters.
    None,
}

/// Whether a text contains any Simplified-only character.
pub fn has_simplified(text: &str) -> bool {
    text.chars().any(is_simplified_only)
}
