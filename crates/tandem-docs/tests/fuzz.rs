//! Fuzzing the document parsers (proptest drivers): arbitrary bytes under every supported
//! file name, and valid small documents cut short, must give a document or an error — no
//! panic, and (bounded inputs) no hang. Failing inputs are kept in `proptest-regressions/`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

const NAMES: [&str; 5] = ["a.md", "a.txt", "a.html", "a.pdf", "a.docx"];

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.md", "# 標題\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- 項目\n\n```\ncode\n```\n".into()),
        ("a.html", "<html><body><h1>標題</h1><table><tr><td>1</td></tr></table><p>段落</p></body></html>".into()),
        ("a.txt", "第一段。\n\n第二段。".into()),
        ("a.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec()),
        ("a.docx", b"PK\x03\x04\x14\x00\x00\x00\x08\x00word/document.xml".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        name in prop::sample::select(&NAMES[..]),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = tandem_docs::extract(name, &bytes);
    }

    #[test]
    fn cut_and_flipped_documents_never_panic(
        which in 0usize..5,
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (name, mut bytes) = samples().swap_remove(which);
        let at = flip.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = tandem_docs::extract(name, &bytes);
    }
}
