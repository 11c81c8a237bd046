//! Text processing for the full-text index: CJK bigrams and safe FTS5 queries.
//!
//! SQLite's `unicode61` tokenizer keeps a run of Han characters as one token (and glues
//! digits or Latin letters that touch it: `000元`, `12表單`), which makes BM25 useless for
//! Chinese. The index therefore has a second column whose text is produced here: runs of
//! CJK characters become overlapping bigrams (a lone character stays a unigram), other
//! words are split off and lower-cased, all separated by spaces. Queries get the same
//! treatment, so both sides agree on the terms.

use std::borrow::Cow;

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3400..=0x4DBF // CJK Extension A
        | 0x4E00..=0x9FFF // CJK Unified Ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // CJK Compatibility Ideographs
        | 0x20000..=0x2FFFF // CJK Extensions B–F
    )
}

/// Folds full-width ASCII forms (`ＮＴ＄３０`) and the ideographic space to ASCII.
fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// A piece of text: a word of a spaced script, or a run of CJK characters.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Word(String),
    Cjk(Vec<char>),
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    for c in text.chars().map(fold_width) {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(Piece::Word(std::mem::take(&mut word)));
            }
            run.push(c);
        } else {
            if !run.is_empty() {
                out.push(Piece::Cjk(std::mem::take(&mut run)));
            }
            if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
            } else if !word.is_empty() {
                out.push(Piece::Word(std::mem::take(&mut word)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Piece::Word(word));
    }
    if !run.is_empty() {
        out.push(Piece::Cjk(run));
    }
    out
}

fn cjk_terms(run: &[char], out: &mut Vec<String>) {
    if run.len() == 1 {
        out.push(run.iter().collect());
    } else {
        out.extend(run.windows(2).map(|w| w.iter().collect::<String>()));
    }
}

/// The text stored in the index's CJK column: bigrams of CJK runs and lower-cased words,
/// separated by spaces.
pub(crate) fn cjk_index_text(text: &str) -> String {
    let mut terms = Vec::new();
    for piece in pieces(text) {
        match piece {
            Piece::Word(w) => terms.push(w),
            Piece::Cjk(run) => cjk_terms(&run, &mut terms),
        }
    }
    terms.join(" ")
}

/// Whether `query` contains anything searchable (a letter or digit in any script).
pub(crate) fn has_content(query: &str) -> bool {
    query.chars().any(|c| c.is_alphanumeric())
}

/// English function words and question words dropped from queries: they carry no
/// information and match almost every chunk (which also makes BM25 slow).
const EN_STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "did", "for", "from",
    "how", "i", "if", "in", "is", "it", "its", "many", "much", "my", "of", "on", "or", "should",
    "so", "that", "the", "their", "there", "this", "to", "was", "were", "what", "when", "where",
    "which", "who", "whom", "why", "will", "with", "would", "you", "your", "me", "we", "our",
    "has", "have", "had", "than", "then", "they", "them", "into", "about", "any", "get", "must",
];

/// Chinese question bigrams dropped from queries.
const ZH_STOP_BIGRAMS: &[&str] = &[
    "什麼", "多少", "哪些", "哪個", "如何", "是否", "怎麼", "為何", "哪裡", "請問", "甚麼", "幾個",
    "需要", "可以",
];

/// Terms of a query for the full-text index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct QueryTerms {
    /// Words of spaced scripts (lower-cased, stop words removed), in query order.
    pub words: Vec<String>,
    /// CJK bigrams / unigrams, in query order.
    pub cjk: Vec<String>,
}

/// Splits a query into index terms, dropping stop words and duplicates. Falls back to the
/// stop words when nothing else is left (a query made only of them).
pub(crate) fn query_terms(query: &str) -> QueryTerms {
    let mut all_words = Vec::new();
    let mut cjk = Vec::new();
    for piece in pieces(query) {
        match piece {
            Piece::Word(w) => all_words.push(w),
            Piece::Cjk(run) => cjk_terms(&run, &mut cjk),
        }
    }
    let mut words: Vec<String> = all_words
        .iter()
        .filter(|w| !EN_STOPWORDS.contains(&w.as_str()))
        .cloned()
        .collect();
    let mut cjk_kept: Vec<String> = cjk
        .iter()
        .filter(|t| !ZH_STOP_BIGRAMS.contains(&t.as_str()))
        .cloned()
        .collect();
    if words.is_empty() && cjk_kept.is_empty() {
        words = all_words;
        cjk_kept = cjk;
    }
    dedup(&mut words);
    dedup(&mut cjk_kept);
    QueryTerms {
        words,
        cjk: cjk_kept,
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|t| seen.insert(t.clone()));
}

/// Quotes a term as an FTS5 string: every character inside double quotes is literal, and
/// a double quote is written twice. Terms produced here only hold letters and digits, but
/// quoting keeps FTS5 keywords (`AND`, `NOT`, `NEAR`) and any future input safe.
fn quote(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// The FTS5 `MATCH` expression for `query` against the `body` (as-is text) and `cjk`
/// (bigram) columns: `body : ("w1" OR …) OR cjk : ("w1" OR … OR "b1" OR …)`. `None` when
/// the query has no searchable term.
pub(crate) fn fts_match(query: &str) -> Option<String> {
    let terms = query_terms(query);
    let mut parts = Vec::new();
    if !terms.words.is_empty() {
        let words: Vec<String> = terms.words.iter().map(|t| quote(t)).collect();
        parts.push(format!("body : ({})", words.join(" OR ")));
    }
    let cjk: Vec<String> = terms
        .words
        .iter()
        .chain(&terms.cjk)
        .map(|t| quote(t))
        .collect();
    if !cjk.is_empty() {
        parts.push(format!("cjk : ({})", cjk.join(" OR ")));
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(" OR "))
    }
}

/// The writing system of a text: CJK (written without spaces) or any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// Mostly Han, kana or Hangul.
    Cjk,
    /// Mostly other scripts (Latin, …).
    Other,
}

/// The script of `text`: [`Script::Cjk`] when CJK characters outnumber the words of
/// other scripts (a Chinese sentence quoting an English product name is still CJK).
pub fn script_of(text: &str) -> Script {
    let (mut cjk, mut words) = (0usize, 0usize);
    for piece in pieces(text) {
        match piece {
            Piece::Cjk(run) => cjk += run.len(),
            Piece::Word(w) if w.chars().any(char::is_alphabetic) => words += 1,
            Piece::Word(_) => {}
        }
    }
    if cjk > words {
        Script::Cjk
    } else {
        Script::Other
    }
}

/// Folds English plurals (Harman's "S" stemmer): `-ies` → `-y`, `-es` → `-e`, `-s` → ``,
/// except after `a e o` (for `-ies`/`-es`), `u` or `s`. Only for ASCII words of four
/// letters or more; any other term is returned as is.
pub(crate) fn fold_plural(term: &str) -> Cow<'_, str> {
    let b = term.as_bytes();
    if b.len() < 4 || !b.iter().all(u8::is_ascii_lowercase) {
        return Cow::Borrowed(term);
    }
    if let Some(stem) = term.strip_suffix("ies")
        && !stem.ends_with('e')
        && !stem.ends_with('a')
    {
        return Cow::Owned(format!("{stem}y"));
    }
    if term.ends_with("es")
        && !term.ends_with("aes")
        && !term.ends_with("ees")
        && !term.ends_with("oes")
    {
        return Cow::Borrowed(&term[..term.len() - 1]);
    }
    if term.ends_with('s') && !term.ends_with("us") && !term.ends_with("ss") {
        return Cow::Borrowed(&term[..term.len() - 1]);
    }
    Cow::Borrowed(term)
}

/// Terms of a text of the CJK column (space-separated) for the in-memory index: each
/// term with English plurals folded.
pub(crate) fn index_terms(cjk_column: &str) -> impl Iterator<Item = Cow<'_, str>> {
    cjk_column.split_whitespace().map(fold_plural)
}

/// The query's terms for the in-memory index (see [`query_terms`]), plurals folded,
/// without duplicates.
pub(crate) fn query_index_terms(query: &str) -> Vec<String> {
    let terms = query_terms(query);
    let mut out: Vec<String> = terms
        .words
        .iter()
        .chain(&terms.cjk)
        .map(|t| fold_plural(t).into_owned())
        .collect();
    dedup(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_for_cjk_runs_and_lowercase_words() {
        assert_eq!(
            cjk_index_text("特休假14天，HarborNet登入"),
            "特休 休假 14 天 harbornet 登入"
        );
        assert_eq!(cjk_index_text("Ａ１　元"), "a1 元");
        assert_eq!(cjk_index_text("NT$30,000元"), "nt 30 000 元");
        assert_eq!(cjk_index_text("「…」"), "");
    }

    #[test]
    fn plurals_fold_and_scripts() {
        let t: Vec<Cow<'_, str>> =
            index_terms("claims policies days bus class fees 特休 2024").collect();
        assert_eq!(
            t,
            [
                "claim", "policy", "day", "bus", "class", "fee", "特休", "2024"
            ]
        );
        assert_eq!(query_index_terms("Which policies? policy"), ["policy"]);
        assert_eq!(
            script_of("HarborNet 的簡訊驗證碼有效時間多久？"),
            Script::Cjk
        );
        assert_eq!(
            script_of("How long is the HarborNet code valid (驗證碼)?"),
            Script::Other
        );
    }

    #[test]
    fn queries_drop_stopwords_and_quote_terms() {
        assert_eq!(
            fts_match("How many days?"),
            Some("body : (\"days\") OR cjk : (\"days\")".to_string())
        );
        assert_eq!(
            fts_match("年假有幾天？"),
            Some("cjk : (\"年假\" OR \"假有\" OR \"有幾\" OR \"幾天\")".to_string())
        );
        // Only stop words: keep them rather than search for nothing.
        assert_eq!(
            fts_match("the"),
            Some("body : (\"the\") OR cjk : (\"the\")".to_string())
        );
        assert_eq!(fts_match("\"*()-：。"), None);
        assert_eq!(
            fts_match("a AND (b OR \"c*\") NOT -d"),
            Some(
                "body : (\"b\" OR \"c\" OR \"not\" OR \"d\") OR cjk : (\"b\" OR \"c\" OR \"not\" OR \"d\")"
                    .to_string()
            )
        );
    }
}
