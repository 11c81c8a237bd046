//! Extraction of every format from real bytes: Markdown, text (UTF-8, Big5, UTF-16), HTML,
//! PDF (written by hand with a correct xref table) and DOCX (zipped here), plus the errors.

use std::io::Write;

use tandem_docs::{BlockKind, Document, ExtractError, Format, extract, format_of};

fn block_texts(d: &Document) -> Vec<&str> {
    d.blocks.iter().map(|b| &d.text[b.range.clone()]).collect()
}

/// Ranges lie in the text, in order, without overlap, separated by blank lines.
fn assert_well_formed(d: &Document) {
    let mut prev_end = None;
    for b in &d.blocks {
        assert!(b.range.start < b.range.end, "empty block {b:?}");
        assert!(d.text.get(b.range.clone()).is_some(), "bad range {b:?}");
        if let Some(p) = prev_end {
            assert_eq!(
                &d.text[p..b.range.start],
                "\n\n",
                "blocks not separated by a blank line"
            );
        } else {
            assert_eq!(b.range.start, 0);
        }
        prev_end = Some(b.range.end);
    }
    assert_eq!(prev_end, Some(d.text.len()));
}

#[test]
fn format_by_extension() {
    assert_eq!(format_of("a/b/Notes.MD"), Some(Format::Markdown));
    assert_eq!(format_of("x.markdown"), Some(Format::Markdown));
    assert_eq!(format_of("x.txt"), Some(Format::Text));
    assert_eq!(format_of("x.htm"), Some(Format::Html));
    assert_eq!(format_of("報告.PDF"), Some(Format::Pdf));
    assert_eq!(format_of("x.docx"), Some(Format::Docx));
    assert_eq!(format_of("x.doc"), None);
    assert_eq!(format_of("README"), None);
    match extract("photo.jpg", b"abc") {
        Err(ExtractError::Unsupported(m)) => assert!(m.contains(".jpg"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn markdown_with_chinese() {
    let md = "# 使用手冊\n\n這是**第一段**，介紹[系統](http://example.com)。\n\n## 安裝\n\n1. 下載檔案\n2. 執行安裝程式\n\n```\ncargo build\n```\n";
    let d = extract("手冊.md", md.as_bytes()).expect("extracts");
    assert_eq!(d.format, Format::Markdown);
    assert_eq!(d.encoding, "UTF-8");
    assert_eq!(d.title.as_deref(), Some("使用手冊"));
    assert_eq!(
        block_texts(&d),
        vec![
            "使用手冊",
            "這是第一段，介紹系統。",
            "安裝",
            "下載檔案",
            "執行安裝程式",
            "cargo build"
        ]
    );
    assert_eq!(d.blocks[3].kind, BlockKind::ListItem);
    assert_eq!(d.blocks[5].kind, BlockKind::Code);
    assert_eq!(d.blocks[4].heading_path, vec!["使用手冊", "安裝"]);
    assert_well_formed(&d);
}

#[test]
fn markdown_without_h1_has_no_title() {
    let d = extract("a.md", "## Sub\n\ntext\n".as_bytes()).expect("extracts");
    assert_eq!(d.title, None);
}

#[test]
fn plain_text_paragraphs() {
    let d = extract(
        "a.txt",
        b"First line\nstill first.\r\n\r\n  \nSecond paragraph.\n",
    )
    .expect("ok");
    assert_eq!(d.format, Format::Text);
    assert_eq!(
        block_texts(&d),
        vec!["First line\nstill first.", "Second paragraph."]
    );
    assert_well_formed(&d);
}

#[test]
fn big5_text_file() {
    let src = "繁體中文測試文件。\n\n第二段：台灣的資料庫與檢索系統，應該要能正確處理。";
    let (bytes, _, unmappable) = encoding_rs::BIG5.encode(src);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "test bytes must not be UTF-8"
    );
    let d = extract("big5.txt", &bytes).expect("extracts");
    assert_eq!(d.encoding, "Big5");
    assert_eq!(
        block_texts(&d),
        vec![
            "繁體中文測試文件。",
            "第二段：台灣的資料庫與檢索系統，應該要能正確處理。"
        ]
    );
}

#[test]
fn big5_markdown_file() {
    let src = "# 標題\n\n內容文字，繁體中文。這裡有更多的文字讓偵測器能判斷編碼。\n";
    let (bytes, _, _) = encoding_rs::BIG5.encode(src);
    let d = extract("b.md", &bytes).expect("extracts");
    assert_eq!(d.encoding, "Big5");
    assert_eq!(d.title.as_deref(), Some("標題"));
}

#[test]
fn utf16_files_with_bom() {
    let src = "# 標題 Title\n\nUTF-16 內容。";
    let mut le = vec![0xff, 0xfe];
    le.extend(src.encode_utf16().flat_map(u16::to_le_bytes));
    let d = extract("le.md", &le).expect("LE");
    assert_eq!(d.encoding, "UTF-16LE");
    assert_eq!(block_texts(&d), vec!["標題 Title", "UTF-16 內容。"]);

    let mut be = vec![0xfe, 0xff];
    be.extend(src.encode_utf16().flat_map(u16::to_be_bytes));
    let d = extract("be.txt", &be).expect("BE");
    assert_eq!(d.encoding, "UTF-16BE");
    assert!(d.text.contains("UTF-16 內容。"));

    let mut bom8 = vec![0xef, 0xbb, 0xbf];
    bom8.extend_from_slice(src.as_bytes());
    let d = extract("u8.txt", &bom8).expect("UTF-8 BOM");
    assert_eq!(d.encoding, "UTF-8");
    assert!(d.text.starts_with("# 標題"));
}

#[test]
fn binary_and_empty_files() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0";
    assert!(matches!(
        extract("image.txt", png),
        Err(ExtractError::Binary(Format::Text))
    ));
    assert!(matches!(
        extract("x.md", &[0u8; 100]),
        Err(ExtractError::Binary(Format::Markdown))
    ));
    assert!(matches!(extract("x.md", b""), Err(ExtractError::Empty)));
    assert!(matches!(
        extract("x.txt", b"  \n\t\r\n "),
        Err(ExtractError::Empty)
    ));
    assert!(matches!(
        extract("x.html", b"<html><body> </body></html>"),
        Err(ExtractError::Empty)
    ));
    assert!(matches!(extract("x.pdf", b""), Err(ExtractError::Empty)));
}

#[test]
fn html_structure_and_entities() {
    let html = r#"<!DOCTYPE html><html><head><title>測試 &amp; Test</title>
        <style>p { color: red }</style><script>var x = "<p>no</p>";</script></head>
        <body><nav><a href="/">Home</a> <a href="/x">Menu</a></nav>
        <h1>主標題</h1><p>第一段&nbsp;文字 &lt;b&gt; 與
        換行。</p>
        <ul><li>項目一</li><li>項目 <b>二</b></li></ul>
        <h2>Table</h2>
        <table><tr><th>名稱</th><th>值</th></tr><tr><td>a</td><td>1</td></tr></table>
        <pre>  code
  block</pre>
        <p>Line one<br>Line two</p>
        </body></html>"#;
    let d = extract("page.html", html.as_bytes()).expect("extracts");
    assert_eq!(d.title.as_deref(), Some("測試 & Test"));
    assert_eq!(
        block_texts(&d),
        vec![
            "主標題",
            "第一段 文字 <b> 與換行。",
            "項目一",
            "項目 二",
            "Table",
            "名稱：a；值：1",
            "code\n  block",
            "Line one\nLine two",
        ]
    );
    assert!(!d.text.contains("Home"), "nav must be skipped");
    assert!(!d.text.contains("color"), "style must be skipped");
    assert!(!d.text.contains("var x"), "script must be skipped");
    assert_eq!(d.blocks[5].kind, BlockKind::Table);
    assert_eq!(d.blocks[5].heading_path, vec!["主標題", "Table"]);
    assert_eq!(d.blocks[2].kind, BlockKind::ListItem);
    assert_well_formed(&d);
}

#[test]
fn malformed_html_still_extracts() {
    let html = "<html><body><h1>Broken<p>first para<p>second <b>bold <i>never closed<div>tail text";
    let d = extract("bad.htm", html.as_bytes()).expect("extracts");
    let texts = block_texts(&d);
    assert_eq!(texts[0], "Broken");
    assert!(texts.contains(&"first para"), "{texts:?}");
    assert!(d.text.contains("second bold never closed"), "{}", d.text);
    assert!(d.text.contains("tail text"));
    assert_well_formed(&d);
}

// ---------------------------------------------------------------------------------------
// PDF

/// A minimal valid PDF with one Helvetica text stream per page; each page is a list of
/// lines, an empty line leaving a blank line between paragraphs.
fn make_pdf(pages: &[&[&str]], title: Option<&str>) -> Vec<u8> {
    let n = pages.len();
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_string());
    let kids: Vec<String> = (0..n).map(|k| format!("{} 0 R", 5 + 2 * k)).collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {n} >>",
        kids.join(" ")
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
    );
    objects.push(format!("<< /Title ({}) >>", title.unwrap_or("")));
    for (k, lines) in pages.iter().enumerate() {
        let mut content = String::from("BT /F1 12 Tf 14 TL 72 720 Td\n");
        for line in lines.iter() {
            if line.is_empty() {
                content.push_str("T* T*\n");
            } else {
                content.push_str(&format!("({line}) Tj T*\n"));
            }
        }
        content.push_str("ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            6 + 2 * k
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        write!(out, "{} 0 obj\n{obj}\nendobj\n", i + 1).expect("write");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).expect("write");
    for off in offsets {
        writeln!(out, "{off:010} 00000 n ").expect("write");
    }
    let info = if title.is_some() { " /Info 4 0 R" } else { "" };
    write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .expect("write");
    out
}

#[test]
fn pdf_two_pages() {
    let pdf = make_pdf(
        &[
            &["Hello PDF world.", "", "Second paragraph here."],
            &["Page two text."],
        ],
        Some("Tiny Report"),
    );
    let d = extract("report.pdf", &pdf).expect("extracts");
    assert_eq!(d.format, Format::Pdf);
    assert_eq!(d.title.as_deref(), Some("Tiny Report"));
    let texts = block_texts(&d);
    assert_eq!(
        texts,
        vec![
            "Hello PDF world.",
            "Second paragraph here.",
            "Page two text."
        ],
        "{:?}",
        d.text
    );
    let pages: Vec<Option<u32>> = d.blocks.iter().map(|b| b.page).collect();
    assert_eq!(pages, vec![Some(1), Some(1), Some(2)]);
    assert_well_formed(&d);
}

#[test]
fn pdf_without_title_metadata() {
    let pdf = make_pdf(&[&["Just text."]], None);
    let d = extract("a.pdf", &pdf).expect("extracts");
    assert_eq!(d.title, None);
    assert_eq!(d.text, "Just text.");
}

#[test]
fn broken_pdfs_are_errors_not_panics() {
    let good = make_pdf(&[&["Hello PDF world."], &["Page two."]], Some("T"));
    let mut cases: Vec<Vec<u8>> = vec![
        b"%PDF-1.4\ngarbage garbage garbage".to_vec(),
        b"not a pdf at all".to_vec(),
        b"%PDF-".to_vec(),
    ];
    for cut in [good.len() / 4, good.len() / 2, good.len() - 30] {
        cases.push(good[..cut].to_vec());
    }
    // Corrupt the xref offsets and the stream length.
    let s = String::from_utf8_lossy(&good).replace("/Length ", "/Length 9");
    cases.push(s.into_bytes());
    let s = String::from_utf8_lossy(&good).replace("/Kids [", "/Kids [99 0 R ");
    cases.push(s.into_bytes());
    // Deterministic pseudo-random byte flips.
    let mut seed = 0x2545_f491_u32;
    for _ in 0..40 {
        let mut b = good.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let at = 9 + (seed as usize) % (b.len() - 9);
            b[at] = (seed >> 8) as u8;
        }
        cases.push(b);
    }
    let mut errors = 0;
    for (i, case) in cases.iter().enumerate() {
        match extract("x.pdf", case) {
            Ok(d) => assert!(!d.text.is_empty(), "case {i}: Ok without text"),
            Err(ExtractError::Malformed { format, .. }) => {
                assert_eq!(format, Format::Pdf);
                errors += 1;
            }
            Err(ExtractError::Empty) => {}
            Err(e) => panic!("case {i}: unexpected error {e}"),
        }
    }
    // The first six cases are hopeless: they must all be errors.
    assert!(errors >= 6, "only {errors} errors");
    for case in &cases[..3] {
        assert!(matches!(
            extract("x.pdf", case),
            Err(ExtractError::Malformed { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------
// DOCX

fn make_docx(body: &str, styles: Option<&str>, core_title: Option<&str>) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    let mut add = |name: &str, content: &str| {
        w.start_file(name, opts).expect("start");
        w.write_all(content.as_bytes()).expect("write");
    };
    add(
        "[Content_Types].xml",
        r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#,
    );
    add(
        "word/document.xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}<w:sectPr/></w:body></w:document>"#
        ),
    );
    if let Some(s) = styles {
        add(
            "word/styles.xml",
            &format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">{s}</w:styles>"#
            ),
        );
    }
    if let Some(t) = core_title {
        add(
            "docProps/core.xml",
            &format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{t}</dc:title></cp:coreProperties>"#
            ),
        );
    }
    w.finish().expect("finish").into_inner()
}

fn para(style: Option<&str>, text: &str) -> String {
    let ppr = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
}

#[test]
fn docx_headings_paragraphs_tables() {
    let body = [
        para(Some("Title"), "年度報告"),
        para(Some("Heading1"), "概要"),
        para(None, "這是第一段。"),
        r#"<w:p><w:r><w:t>Split </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>runs &amp; tabs</w:t><w:tab/><w:t>end</w:t></w:r></w:p>"#.to_string(),
        para(Some("2"), "細節"),
        r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr><w:r><w:t>清單項目</w:t></w:r></w:p>"#.to_string(),
        r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>名稱</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>數量</w:t></w:r></w:p></w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>蘋果</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>3</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#.to_string(),
        r#"<w:p><w:r><w:delText>deleted</w:delText><w:t>kept</w:t></w:r></w:p>"#.to_string(),
    ]
    .concat();
    let d = extract("report.docx", &make_docx(&body, None, None)).expect("extracts");
    assert_eq!(d.format, Format::Docx);
    assert_eq!(d.title.as_deref(), Some("年度報告"));
    assert_eq!(
        block_texts(&d),
        vec![
            "年度報告",
            "概要",
            "這是第一段。",
            "Split runs & tabs\tend",
            "細節",
            "清單項目",
            "名稱：蘋果；數量：3",
            "kept"
        ]
    );
    let kinds: Vec<BlockKind> = d.blocks.iter().map(|b| b.kind).collect();
    assert_eq!(kinds[1], BlockKind::Heading { level: 1 });
    assert_eq!(kinds[4], BlockKind::Heading { level: 2 });
    assert_eq!(kinds[5], BlockKind::ListItem);
    assert_eq!(kinds[6], BlockKind::Table);
    // "年度報告" (Title) and "概要" are both level 1: the heading path restarts.
    assert_eq!(d.blocks[5].heading_path, vec!["概要", "細節"]);
    assert_well_formed(&d);
}

#[test]
fn docx_styles_and_core_title() {
    let styles = r#"<w:style w:type="paragraph" w:styleId="a1"><w:name w:val="heading 1"/></w:style><w:style w:type="paragraph" w:styleId="MyH"><w:name w:val="Custom"/><w:pPr><w:outlineLvl w:val="2"/></w:pPr></w:style>"#;
    let body = [
        para(Some("a1"), "第一章"),
        para(Some("MyH"), "小節"),
        para(None, "內文"),
    ]
    .concat();
    let d = extract(
        "x.docx",
        &make_docx(&body, Some(styles), Some("Metadata &amp; Title")),
    )
    .expect("extracts");
    assert_eq!(d.title.as_deref(), Some("Metadata & Title"));
    assert_eq!(d.blocks[0].kind, BlockKind::Heading { level: 1 });
    assert_eq!(d.blocks[1].kind, BlockKind::Heading { level: 3 });
    assert_eq!(d.blocks[2].heading_path, vec!["第一章", "小節"]);
}

#[test]
fn broken_docx_are_errors() {
    let good = make_docx(&para(None, "Hello"), None, None);
    assert!(extract("ok.docx", &good).is_ok());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"PK\x03\x04 this is not really a zip".to_vec()),
        ("text", b"hello".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("no document.xml", {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            w.start_file("other.txt", zip::write::SimpleFileOptions::default())
                .expect("start");
            w.write_all(b"x").expect("write");
            w.finish().expect("finish").into_inner()
        }),
        (
            "bad xml",
            make_docx("<w:p><w:r><w:t>open</w:r></w:p>", None, None),
        ),
    ];
    for (name, bytes) in cases {
        match extract("x.docx", &bytes) {
            Err(ExtractError::Malformed { format, reason }) => {
                assert_eq!(format, Format::Docx, "{name}");
                assert!(!reason.is_empty());
            }
            other => panic!("{name}: expected Malformed, got {other:?}"),
        }
    }
    assert!(matches!(
        extract("empty.docx", &make_docx("", None, None)),
        Err(ExtractError::Empty)
    ));
}
