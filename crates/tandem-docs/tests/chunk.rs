//! Chunking: invariants over random mixed English/CJK documents, and specific behaviour.

use std::time::Instant;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use tandem_docs::{Block, BlockKind, Chunk, ChunkOptions, Document, Format, chunk, extract};

/// About four characters per token, like the estimators used before a tokenizer is loaded.
fn chars4(s: &str) -> usize {
    s.chars().count().div_ceil(4)
}

fn is_ideograph(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

/// A document from (is_heading, text) blocks, joined by blank lines.
fn doc_of(blocks: &[(bool, String)]) -> Document {
    let mut text = String::new();
    let mut out = Vec::new();
    let mut path: Vec<String> = Vec::new();
    for (heading, t) in blocks {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(t);
        if *heading {
            path = vec![t.clone()];
        }
        out.push(Block {
            kind: if *heading {
                BlockKind::Heading { level: 1 }
            } else {
                BlockKind::Paragraph
            },
            range: start..text.len(),
            heading_path: path.clone(),
            page: None,
        });
    }
    Document {
        format: Format::Text,
        encoding: "UTF-8".into(),
        title: None,
        text,
        blocks: out,
    }
}

/// Checks every invariant the chunker promises; returns a description of the first broken one.
fn check(doc: &Document, opts: &ChunkOptions, chunks: &[Chunk]) -> Result<(), String> {
    let text = &doc.text;
    for (i, c) in chunks.iter().enumerate() {
        if c.index != i {
            return Err(format!("chunk {i} has index {}", c.index));
        }
        if text.get(c.byte_range.clone()) != Some(c.text.as_str()) {
            return Err(format!("chunk {i} text is not the slice of its range"));
        }
        if c.text.is_empty() {
            return Err(format!("chunk {i} is empty"));
        }
        let cs = text[..c.byte_range.start].chars().count();
        if c.char_range != (cs..cs + c.text.chars().count()) {
            return Err(format!("chunk {i} char range {:?} is wrong", c.char_range));
        }
        if c.tokens != chars4(&c.text) {
            return Err(format!("chunk {i} token count is not the counter's"));
        }
        if c.tokens > opts.max_tokens {
            return Err(format!(
                "chunk {i} has {} > {} tokens",
                c.tokens, opts.max_tokens
            ));
        }
        if c.hash != hex::encode(Sha256::digest(c.text.as_bytes())) {
            return Err(format!("chunk {i} hash is wrong"));
        }
        // No heading inside a chunk: only at its start.
        for b in &doc.blocks {
            if matches!(b.kind, BlockKind::Heading { .. })
                && b.range.start > c.byte_range.start
                && b.range.start < c.byte_range.end
            {
                return Err(format!(
                    "chunk {i} crosses heading {:?}",
                    &text[b.range.clone()]
                ));
            }
        }
        // Cuts never fall between two ideographs (the generator always leaves a better one).
        for at in [c.byte_range.start, c.byte_range.end] {
            let before = text[..at].chars().next_back();
            let after = text[at..].chars().next();
            if before.is_some_and(is_ideograph) && after.is_some_and(is_ideograph) {
                return Err(format!("chunk {i} cut between two ideographs at byte {at}"));
            }
        }
        if i > 0 {
            let p = &chunks[i - 1];
            if c.byte_range.start <= p.byte_range.start || c.byte_range.end <= p.byte_range.end {
                return Err(format!("chunk {i} is not after chunk {}", i - 1));
            }
            if c.byte_range.start < p.byte_range.end {
                let overlap = &text[c.byte_range.start..p.byte_range.end];
                if chars4(overlap) > opts.overlap_tokens {
                    return Err(format!("chunk {i} overlap {overlap:?} is too long"));
                }
                if c.heading_path != p.heading_path {
                    return Err(format!("chunk {i} overlaps a chunk of another section"));
                }
            }
        }
    }
    // Every byte of every block is in some chunk (chunks are ordered by start).
    let mut covered_to = 0usize;
    let mut spans = Vec::new();
    for c in chunks {
        if c.byte_range.start > covered_to {
            spans.push(covered_to..c.byte_range.start);
        }
        covered_to = covered_to.max(c.byte_range.end);
    }
    spans.push(covered_to..text.len());
    for gap in spans {
        for b in &doc.blocks {
            if b.range.start < gap.end && gap.start < b.range.end {
                return Err(format!(
                    "bytes {gap:?} of block {:?} are in no chunk",
                    &text[b.range.clone()]
                ));
            }
        }
    }
    Ok(())
}

/// A word: English, a run of 1-4 ideographs, or a number.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{1,12}",
        3 => proptest::collection::vec(
            proptest::sample::select(
                "資料庫檢索系統繁體中文測試文件台灣處理正確應該要能第一段落".chars().collect::<Vec<_>>()
            ),
            1..=4
        )
        .prop_map(|v| v.into_iter().collect::<String>()),
        1 => "[0-9]{1,6}",
        1 => "[a-z]{30,80}",
    ]
}

/// What follows a word: a space, punctuation, or a line break (never nothing, so ideograph
/// runs stay at most four long).
fn sep() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        " ", " ", " ", " ", "，", "、", ", ", "。", ". ", "！", "? ", "；", "\n", ": ",
    ])
}

fn paragraph() -> impl Strategy<Value = String> {
    proptest::collection::vec((word(), sep()), 1..120).prop_map(|v| {
        let mut s: String = v
            .into_iter()
            .flat_map(|(w, p)| [w, p.to_string()])
            .collect();
        s = s.trim().to_string();
        if s.is_empty() { "x".to_string() } else { s }
    })
}

fn blocks() -> impl Strategy<Value = Vec<(bool, String)>> {
    proptest::collection::vec(
        prop_oneof![
            1 => "[A-Z][a-z]{2,10}( [a-z]{2,8}){0,3}".prop_map(|h| (true, h)),
            5 => paragraph().prop_map(|p| (false, p)),
        ],
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn chunk_invariants(blocks in blocks(), max in 8usize..80, overlap in 0usize..30) {
        let doc = doc_of(&blocks);
        let opts = ChunkOptions { max_tokens: max, overlap_tokens: overlap };
        let chunks = chunk(&doc, &opts, &chars4);
        prop_assert!(!chunks.is_empty());
        if let Err(e) = check(&doc, &opts, &chunks) {
            prop_assert!(false, "{}\nopts {:?}\ntext {:?}", e, opts, doc.text);
        }
    }
}

#[test]
fn chinese_sentences_split_at_full_stop() {
    let sentence = "這是一個完整的中文句子，用來測試切分。";
    let para = sentence.repeat(20);
    let doc = doc_of(&[(false, para)]);
    let opts = ChunkOptions {
        max_tokens: 12,
        overlap_tokens: 0,
    };
    let chunks = chunk(&doc, &opts, &chars4);
    assert!(chunks.len() > 5);
    for c in &chunks {
        assert!(c.text.ends_with('。'), "{:?}", c.text);
        assert!(c.text.starts_with("這是"), "{:?}", c.text);
    }
    check(&doc, &opts, &chunks).expect("invariants");
}

#[test]
fn headings_start_chunks_and_overlap_stays_in_section() {
    // Each sentence is 20 characters: 5 tokens.
    let doc = doc_of(&[
        (true, "Intro".into()),
        (
            false,
            "Alpha sentence now. Bravo sentence now. Delta sentence now. Gamma sentence now. \
             Sigma sentence now. Omega sentence now."
                .into(),
        ),
        (true, "Next".into()),
        (false, "Short.".into()),
    ]);
    let opts = ChunkOptions {
        max_tokens: 13,
        overlap_tokens: 5,
    };
    let chunks = chunk(&doc, &opts, &chars4);
    check(&doc, &opts, &chunks).expect("invariants");
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    // Within the oversized paragraph each chunk repeats the previous one's last sentence;
    // the rest of the paragraph fits in one chunk on its own, so it is not split to keep
    // the overlap. The heading "Next" starts a new chunk with no overlap.
    assert_eq!(
        texts,
        vec![
            "Intro\n\nAlpha sentence now. Bravo sentence now. ",
            "Bravo sentence now. Delta sentence now. ",
            "Delta sentence now. Gamma sentence now. ",
            "Sigma sentence now. Omega sentence now.",
            "Next\n\nShort.",
        ]
    );
    assert_eq!(chunks[4].heading_path, vec!["Next"]);
    assert_eq!(chunks[1].heading_path, vec!["Intro"]);
}

/// A leave table whose rows look alike: each chunk must hold whole rows, each with its
/// header, so "滿 3 年未滿 5 年" is never separated from its 14 days.
#[test]
fn table_rows_are_never_cut_and_keep_their_header() {
    let mut md = String::from("# 特休\n\n| 年資 | 特休天數 | 備註 |\n|---|---|---|\n");
    for y in 1..40 {
        md.push_str(&format!(
            "| 滿 {y} 年未滿 {} 年 | 每年 {} 天 | 依勞基法；由主管核准 |\n",
            y + 1,
            y + 6
        ));
    }
    let doc = extract("leave.md", md.as_bytes()).expect("extracts");
    let table = doc
        .blocks
        .iter()
        .find(|b| b.kind == BlockKind::Table)
        .expect("a table");
    let rows: Vec<&str> = doc.text[table.range.clone()].lines().collect();
    assert_eq!(rows.len(), 39);
    assert_eq!(
        rows[2],
        "年資：滿 3 年未滿 4 年；特休天數：每年 9 天；備註：依勞基法；由主管核准"
    );
    let opts = ChunkOptions {
        max_tokens: 60,
        overlap_tokens: 20,
    };
    let chunks = chunk(&doc, &opts, &chars4);
    assert!(chunks.len() > 3, "the table spans several chunks");
    check(&doc, &opts, &chunks).expect("chunk invariants");
    for c in &chunks {
        for line in c.text.lines().filter(|l| l.contains('：')) {
            assert!(
                rows.contains(&line),
                "chunk {} cuts a row: {line:?}",
                c.index
            );
        }
    }
    // Every row is in some chunk.
    for r in &rows {
        assert!(
            chunks.iter().any(|c| c.text.lines().any(|l| l == *r)),
            "{r}"
        );
    }
}

#[test]
fn small_blocks_pack_and_are_not_split() {
    let doc = doc_of(&[
        (false, "Alpha beta. Gamma delta.".into()),
        (false, "Epsilon zeta.".into()),
        (
            false,
            "Eta theta iota kappa. Lambda mu nu xi omicron.".into(),
        ),
    ]);
    let opts = ChunkOptions {
        max_tokens: 14,
        overlap_tokens: 0,
    };
    let chunks = chunk(&doc, &opts, &chars4);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Alpha beta. Gamma delta.\n\nEpsilon zeta.",
            "Eta theta iota kappa. Lambda mu nu xi omicron."
        ]
    );
}

#[test]
fn unbroken_cjk_is_cut_by_characters_within_budget() {
    let doc = doc_of(&[(false, "漢".repeat(1000))]);
    let opts = ChunkOptions {
        max_tokens: 50,
        overlap_tokens: 0,
    };
    let chunks = chunk(&doc, &opts, &chars4);
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|c| c.tokens == 50));
    assert_eq!(chunks[4].byte_range.end, doc.text.len());
}

#[test]
fn empty_document_gives_no_chunks() {
    let doc = Document {
        format: Format::Text,
        encoding: "UTF-8".into(),
        title: None,
        text: String::new(),
        blocks: Vec::new(),
    };
    assert!(chunk(&doc, &ChunkOptions::default(), &chars4).is_empty());
}

#[test]
fn document_without_blocks_is_chunked_by_paragraphs() {
    let doc = Document {
        format: Format::Text,
        encoding: "UTF-8".into(),
        title: None,
        text: "  First para.\n\nSecond para.  ".into(),
        blocks: Vec::new(),
    };
    let chunks = chunk(&doc, &ChunkOptions::default(), &chars4);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "First para.\n\nSecond para.");
}

/// A large Markdown document mixing English and Traditional Chinese.
fn big_markdown(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 4096);
    let mut n = 0;
    while s.len() < bytes {
        n += 1;
        s.push_str(&format!("## 第 {n} 節 Section {n}\n\n"));
        for _ in 0..4 {
            s.push_str("這是一段繁體中文的內容，說明系統如何處理文件與檢索。我們也要測試較長的句子是否能在句號處正確切分！");
            s.push_str("This is an English sentence about chunking. Another one follows, with a clause; and more words.\n\n");
        }
        s.push_str("- item one\n- 項目二\n\n");
    }
    s
}

#[test]
fn huge_markdown_file_chunks() {
    let md = big_markdown(5 * 1024 * 1024);
    let t0 = Instant::now();
    let doc = extract("big.md", md.as_bytes()).expect("extracts");
    let t_extract = t0.elapsed();
    let t1 = Instant::now();
    let opts = ChunkOptions::default();
    let chunks = chunk(&doc, &opts, &chars4);
    let t_chunk = t1.elapsed();
    let mb = doc.text.len() as f64 / 1e6;
    println!(
        "5 MB markdown: extract {t_extract:?}, chunk {t_chunk:?} ({:.1} MB/s), {} chunks",
        mb / t_chunk.as_secs_f64(),
        chunks.len()
    );
    assert!(chunks.len() > 1000);
    assert!(chunks.iter().all(|c| c.tokens <= opts.max_tokens));
    assert!(chunks.iter().all(|c| c.heading_path.len() == 1));
    // Every block is covered: the last chunk ends where the text ends.
    assert_eq!(
        chunks.last().map(|c| c.byte_range.end),
        Some(doc.text.len())
    );
}
