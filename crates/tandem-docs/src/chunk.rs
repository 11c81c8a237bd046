//! Structure-aware chunking: sections never mix, whole blocks are packed while they fit,
//! oversized blocks are cut at sentences, then clauses, then characters.

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::builder::is_cjk;
use crate::{Block, BlockKind, Chunk, ChunkOptions, Document};

/// The smallest unit the packer moves: a sentence, a clause, or a hard-cut piece of a block.
/// The pieces of a block tile it exactly (each one keeps the whitespace after it).
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    tokens: usize,
    /// Index of the piece's block in the section.
    block: usize,
    heading: bool,
}

/// Cuts a document into chunks of at most `opts.max_tokens` tokens, as counted by
/// `count_tokens`.
///
/// - A heading starts a new chunk (and opens it); a chunk never holds text of two sections.
/// - Whole blocks are packed into a chunk while they fit. A block larger than the budget is
///   cut at sentence ends (`.!?` before a space, `。！？；`, line breaks), a sentence larger than
///   the budget at clause marks (`，、,;:`), and a clause larger than the budget by characters,
///   preferring a cut after a space and never cutting between two CJK characters when another
///   position exists in the last quarter of the piece.
/// - The next chunk of the same section starts with the last sentences of the previous chunk,
///   up to `opts.overlap_tokens` tokens (capped at half of `max_tokens`); never the heading.
/// - Each chunk's text is exactly `&doc.text[byte_range]`; `tokens` is
///   `count_tokens(text)` and is at most `max_tokens` (only a single character larger than the
///   budget could exceed it). Every byte of every block lies in some chunk.
///
/// `count_tokens` is called once per sentence (or smaller piece) and once per chunk, so the
/// cost is linear in the text size. A document without text gives no chunks. Blocks whose
/// ranges are out of bounds or not on character boundaries are clamped; a document without
/// blocks is chunked by its blank-line separated paragraphs.
pub fn chunk(
    doc: &Document,
    opts: &ChunkOptions,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let text = doc.text.as_str();
    let blocks = normalized_blocks(doc);
    let max = opts.max_tokens.max(1);
    let overlap = opts.overlap_tokens.min(max / 2);
    let ctx = Ctx {
        text,
        max,
        overlap,
        sep_cost: count_tokens("\n\n"),
        count: count_tokens,
    };
    let mut out = Vec::new();
    let mut section_start = 0;
    for i in 1..=blocks.len() {
        let boundary = i == blocks.len() || matches!(blocks[i].kind, BlockKind::Heading { .. });
        if boundary {
            ctx.section(&blocks[section_start..i], &mut out);
            section_start = i;
        }
    }
    finish(text, out, count_tokens)
}

/// A chunk before its text, char range and hash are filled in.
struct Draft {
    range: Range<usize>,
    tokens: usize,
    heading_path: Vec<String>,
    page: Option<u32>,
}

fn finish(text: &str, drafts: Vec<Draft>, count: &dyn Fn(&str) -> usize) -> Vec<Chunk> {
    let mut starts = CharCursor::default();
    let mut ends = CharCursor::default();
    drafts
        .into_iter()
        .enumerate()
        .map(|(index, d)| {
            let t = &text[d.range.clone()];
            let tokens = if d.tokens == usize::MAX {
                count(t)
            } else {
                d.tokens
            };
            let char_start = starts.char_index(text, d.range.start);
            let char_end = ends.char_index(text, d.range.end);
            Chunk {
                index,
                text: t.to_string(),
                heading_path: d.heading_path,
                page: d.page,
                byte_range: d.range,
                char_range: char_start..char_end,
                tokens,
                hash: hex::encode(Sha256::digest(t.as_bytes())),
            }
        })
        .collect()
}

/// Converts byte offsets to char offsets, moving forward from the last answer.
#[derive(Default)]
struct CharCursor {
    byte: usize,
    chars: usize,
}

impl CharCursor {
    fn char_index(&mut self, text: &str, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

/// The document's blocks, with ranges clamped into the text, onto char boundaries, in
/// order and not overlapping; empty blocks dropped. Paragraphs of the text when there are
/// no blocks.
fn normalized_blocks(doc: &Document) -> Vec<Block> {
    let text = doc.text.as_str();
    if doc.blocks.is_empty() {
        return paragraph_ranges(text)
            .into_iter()
            .map(|range| Block {
                kind: BlockKind::Paragraph,
                range,
                heading_path: Vec::new(),
                page: None,
            })
            .collect();
    }
    let mut out: Vec<Block> = Vec::with_capacity(doc.blocks.len());
    let mut prev_end = 0;
    for b in &doc.blocks {
        let mut start = b.range.start.clamp(prev_end, text.len());
        let mut end = b.range.end.min(text.len());
        while !text.is_char_boundary(start) {
            start += 1;
        }
        while end > start && !text.is_char_boundary(end) {
            end -= 1;
        }
        if end <= start {
            continue;
        }
        // Trim so no chunk starts or ends with blank space.
        let slice = &text[start..end];
        let lead = slice.len() - slice.trim_start().len();
        let trail = slice.len() - slice.trim_end().len();
        if lead == slice.len() {
            continue;
        }
        let range = start + lead..end - trail;
        prev_end = range.end;
        out.push(Block {
            kind: b.kind,
            range,
            heading_path: b.heading_path.clone(),
            page: b.page,
        });
    }
    out
}

/// Byte ranges of the runs of non-blank lines, trimmed.
fn paragraph_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if let Some(r) = cur.take() {
                out.push(r);
            }
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let end = start + lead + trimmed.len();
        match &mut cur {
            Some(r) => r.end = end,
            None => cur = Some(start + lead..end),
        }
    }
    if let Some(r) = cur {
        out.push(r);
    }
    out
}

struct Ctx<'a> {
    text: &'a str,
    max: usize,
    overlap: usize,
    sep_cost: usize,
    count: &'a dyn Fn(&str) -> usize,
}

impl Ctx<'_> {
    /// Chunks one section: a heading (or the document start) and the blocks under it.
    fn section(&self, blocks: &[Block], out: &mut Vec<Draft>) {
        if blocks.is_empty() {
            return;
        }
        let mut pieces = Vec::new();
        for (bi, b) in blocks.iter().enumerate() {
            let heading = matches!(b.kind, BlockKind::Heading { .. });
            let before = pieces.len();
            self.split_block(b.range.clone(), b.kind, &mut pieces);
            for p in &mut pieces[before..] {
                p.block = bi;
                p.heading = heading;
            }
        }
        let n = pieces.len();
        // Prefix sums of tokens and of block changes, for O(1) chunk cost.
        let mut ptok = vec![0usize; n + 1];
        let mut psep = vec![0usize; n + 1];
        for (k, p) in pieces.iter().enumerate() {
            ptok[k + 1] = ptok[k] + p.tokens;
            let change = k > 0 && pieces[k - 1].block != p.block;
            psep[k + 1] = psep[k] + usize::from(change);
        }
        let cost = |a: usize, b: usize| -> usize {
            if b <= a {
                0
            } else {
                ptok[b] - ptok[a] + self.sep_cost * (psep[b] - psep[a + 1])
            }
        };
        // End (exclusive) of the block of each piece.
        let mut block_end = vec![n; n];
        for k in (0..n).rev() {
            block_end[k] = if k + 1 < n && pieces[k + 1].block == pieces[k].block {
                block_end[k + 1]
            } else {
                k + 1
            };
        }

        let emit = |cs: usize, ce: usize, tokens: usize, out: &mut Vec<Draft>| {
            let b = &blocks[pieces[cs].block];
            out.push(Draft {
                range: pieces[cs].start..pieces[ce - 1].end,
                tokens,
                heading_path: b.heading_path.clone(),
                page: b.page,
            });
        };

        // The current chunk is pieces[cs..ce]; pieces[cs..ov_end] repeat the previous chunk.
        let (mut cs, mut ov_end, mut ce) = (0usize, 0usize, 0usize);
        let mut i = 0usize;
        while i < n || ce > ov_end {
            if i < n {
                let rest_end = block_end[i];
                let with_rest = cost(cs, rest_end);
                if with_rest <= self.max {
                    ce = rest_end;
                    i = rest_end;
                    continue;
                }
                let rest_alone = cost(i, rest_end);
                let next_fits = cost(cs, i + 1) <= self.max;
                if rest_alone > self.max && next_fits {
                    // An oversized block: fill the chunk sentence by sentence.
                    ce = i + 1;
                    i += 1;
                    continue;
                }
                if ce == ov_end {
                    // Nothing new in the chunk yet: give up overlap to make room.
                    if cs < ce {
                        cs += 1;
                    } else {
                        // A single piece larger than the budget (one huge character).
                        ce = i + 1;
                        i += 1;
                    }
                    continue;
                }
            }
            // Close the chunk: recount its text once; back off while it is over budget.
            let mut tokens;
            loop {
                let t = &self.text[pieces[cs].start..pieces[ce - 1].end];
                tokens = (self.count)(t);
                if tokens <= self.max {
                    break;
                }
                if ce - 1 > ov_end {
                    ce -= 1;
                } else if cs < ov_end {
                    cs += 1;
                } else {
                    break;
                }
            }
            emit(cs, ce, tokens, out);
            i = ce;
            // Overlap: the last non-heading pieces of this chunk within the overlap budget,
            // always fewer than the whole chunk.
            let mut j = ce;
            while j > cs + 1 && !pieces[j - 1].heading && cost(j - 1, ce) <= self.overlap {
                j -= 1;
            }
            cs = j;
            ov_end = ce;
        }
    }

    /// Cuts a block into pieces that tile it: sentences, with oversized ones cut further.
    /// A table's pieces are its rows (its lines), so no chunk starts or ends inside a row;
    /// only a row over the budget on its own is cut like a paragraph.
    fn split_block(&self, range: Range<usize>, kind: BlockKind, out: &mut Vec<Piece>) {
        let text = self.text;
        if kind == BlockKind::Table {
            for row in boundaries(text, range, |c, _| c == '\n') {
                let tokens = (self.count)(&text[row.clone()]);
                if tokens <= self.max {
                    out.push(piece(row, tokens));
                } else {
                    self.split_block(row, BlockKind::Paragraph, out);
                }
            }
            return;
        }
        for sentence in boundaries(text, range, is_sentence_end) {
            let tokens = (self.count)(&text[sentence.clone()]);
            if tokens <= self.max {
                out.push(piece(sentence, tokens));
                continue;
            }
            for clause in boundaries(text, sentence, is_clause_end) {
                let tokens = (self.count)(&text[clause.clone()]);
                if tokens <= self.max {
                    out.push(piece(clause, tokens));
                } else {
                    self.hard_split(clause, tokens, out);
                }
            }
        }
    }

    /// Cuts a range with no sentence or clause boundary into pieces within the budget.
    fn hard_split(&self, range: Range<usize>, total_tokens: usize, out: &mut Vec<Piece>) {
        let text = self.text;
        let fits = |a: usize, b: usize| (self.count)(&text[a..b]) <= self.max;
        let bytes_per_token = (range.len() / total_tokens.max(1)).max(1);
        let mut pos = range.start;
        while pos < range.end {
            let one = next_boundary(text, pos);
            // Largest end in (pos, range.end] whose piece fits: gallop from a guess, then
            // binary search; `lo` fits (or is a single char), `hi` does not.
            let guess = floor_boundary(
                text,
                pos.saturating_add(self.max.saturating_mul(bytes_per_token))
                    .min(range.end),
            )
            .max(one);
            let (mut lo, mut hi);
            if fits(pos, guess) {
                lo = guess;
                hi = range.end + 1;
                let mut step = (guess - pos).max(4);
                while lo < range.end {
                    let probe = floor_boundary(text, lo.saturating_add(step).min(range.end));
                    if probe <= lo {
                        break;
                    }
                    if fits(pos, probe) {
                        lo = probe;
                        step = step.saturating_mul(2);
                    } else {
                        hi = probe;
                        break;
                    }
                }
            } else {
                hi = guess;
                lo = one;
                let mut probe = guess;
                while probe > one {
                    probe = floor_boundary(text, pos + (probe - pos) / 2).max(one);
                    if fits(pos, probe) {
                        lo = probe;
                        break;
                    }
                    hi = probe;
                }
            }
            if lo < range.end && hi <= range.end {
                while hi > lo {
                    let mid = floor_boundary(text, lo + (hi - lo) / 2);
                    if mid <= lo {
                        break;
                    }
                    if fits(pos, mid) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
            }
            let end = if lo >= range.end {
                range.end
            } else {
                preferred_cut(text, pos, lo)
            };
            let tokens = (self.count)(&text[pos..end]);
            out.push(piece(pos..end, tokens));
            pos = end;
        }
    }
}

fn piece(range: Range<usize>, tokens: usize) -> Piece {
    Piece {
        start: range.start,
        end: range.end,
        tokens,
        block: 0,
        heading: false,
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn next_boundary(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(i, |c| i + c.len_utf8())
}

/// Best cut in the last quarter (by characters) of `text[start..end]`: after a space, else
/// between two characters that are not both word characters, else not between two CJK
/// characters, else `end`.
fn preferred_cut(text: &str, start: usize, end: usize) -> usize {
    let window = (text[start..end].chars().count() / 4).max(1);
    let mut not_word = None;
    let mut not_cjk = None;
    let mut after = text[end..].chars().next();
    for (k, (idx, before)) in text[start..end].char_indices().rev().enumerate() {
        let pos = start + idx + before.len_utf8();
        if k >= window || pos <= start {
            break;
        }
        match after {
            None => return pos,
            Some(a) => {
                if before.is_whitespace() {
                    return pos;
                }
                let cjk_pair = is_cjk(before) && is_cjk(a);
                let word_pair = (before.is_alphanumeric() || is_cjk(before))
                    && (a.is_alphanumeric() || is_cjk(a));
                if !word_pair && not_word.is_none() {
                    not_word = Some(pos);
                }
                if !cjk_pair && not_cjk.is_none() {
                    not_cjk = Some(pos);
                }
            }
        }
        after = Some(before);
    }
    not_word.or(not_cjk).unwrap_or(end)
}

/// Closing quotes and brackets that stay with the sentence before them.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '」' | '』' | '）' | '】' | '》' | '〉' | '〕'
    )
}

/// Whether a sentence ends with `c`, given the text after it.
fn is_sentence_end(c: char, rest: &str) -> bool {
    match c {
        '\n' | '。' | '！' | '？' | '；' | '…' => true,
        '.' | '!' | '?' => {
            let after = rest.trim_start_matches(is_closer);
            after.is_empty() || after.starts_with(char::is_whitespace)
        }
        _ => false,
    }
}

/// Whether a clause ends with `c`, given the text after it.
fn is_clause_end(c: char, rest: &str) -> bool {
    match c {
        '，' | '、' | '；' | '：' | '\n' => true,
        ',' | ';' | ':' => rest.is_empty() || rest.starts_with(char::is_whitespace),
        _ => is_sentence_end(c, rest),
    }
}

/// Splits `text[range]` after each character where `is_end` holds, keeping closing quotes
/// and the whitespace that follow with the piece before. The pieces tile the range.
fn boundaries(
    text: &str,
    range: Range<usize>,
    is_end: fn(char, &str) -> bool,
) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let after = i + c.len_utf8();
        if !is_end(c, &s[after..]) {
            continue;
        }
        let mut end = after;
        let mut seen_space = c == '\n';
        while let Some(&(j, d)) = iter.peek() {
            if d.is_whitespace() {
                seen_space = true;
            } else if seen_space || !is_closer(d) {
                break;
            }
            end = j + d.len_utf8();
            iter.next();
        }
        if end > start {
            out.push(range.start + start..range.start + end);
            start = end;
        }
    }
    if start < s.len() {
        out.push(range.start + start..range.end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_chinese_and_english_marks() {
        let t = "第一句。第二句！Third one. Fourth? 「引號。」最後";
        let parts: Vec<&str> = boundaries(t, 0..t.len(), is_sentence_end)
            .into_iter()
            .map(|r| &t[r])
            .collect();
        assert_eq!(
            parts,
            vec![
                "第一句。",
                "第二句！",
                "Third one. ",
                "Fourth? ",
                "「引號。」",
                "最後"
            ]
        );
    }

    #[test]
    fn decimals_and_times_are_not_boundaries() {
        let t = "Pi is 3.14, time 12:30, total 3,000.";
        let parts: Vec<&str> = boundaries(t, 0..t.len(), is_clause_end)
            .into_iter()
            .map(|r| &t[r])
            .collect();
        assert_eq!(parts, vec!["Pi is 3.14, ", "time 12:30, ", "total 3,000."]);
    }

    #[test]
    fn preferred_cut_avoids_cjk_pairs() {
        // The cut after 八 would split 八九; the comma lies in the last quarter.
        let t = "一二三四五六七，八九十";
        let cut = preferred_cut(t, 0, "一二三四五六七，八".len());
        assert_eq!(cut, "一二三四五六七，".len());
        // A space in the window wins.
        let t = "abc一二三四五六 七八九十";
        let cut = preferred_cut(t, 0, "abc一二三四五六 七八".len());
        assert_eq!(cut, "abc一二三四五六 ".len());
        // No other position in the window: cut where the budget ends.
        let t = "一二三四五六七八九十";
        let end = "一二三四五六七八".len();
        assert_eq!(preferred_cut(t, 0, end), end);
    }
}
