//! DOCX (Office Open XML) to blocks: paragraphs, headings and tables of
//! `word/document.xml`, heading styles from `word/styles.xml`, the title from
//! `docProps/core.xml`.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::builder::DocBuilder;
use crate::table::Table;
use crate::{BlockKind, Document, ExtractError, Format};

/// Largest XML part read from the archive (guards against zip bombs).
const MAX_PART: u64 = 256 * 1024 * 1024;

fn malformed(reason: impl Into<String>) -> ExtractError {
    ExtractError::Malformed {
        format: Format::Docx,
        reason: reason.into(),
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Document, ExtractError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| malformed(format!("not a zip archive: {e}")))?;
    let body = read_part(&mut zip, "word/document.xml")?
        .ok_or_else(|| malformed("no word/document.xml in the archive"))?;
    // Styles and metadata are optional: a broken one only loses headings or the title.
    let styles = read_part(&mut zip, "word/styles.xml")
        .ok()
        .flatten()
        .map(|x| style_levels(&x))
        .unwrap_or_default();
    let core_title = read_part(&mut zip, "docProps/core.xml")
        .ok()
        .flatten()
        .and_then(|x| core_title(&x));
    body_blocks(&body, &styles, core_title)
}

fn read_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>, ExtractError> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(malformed(format!("{name}: {e}"))),
    };
    let mut buf = Vec::new();
    file.take(MAX_PART + 1)
        .read_to_end(&mut buf)
        .map_err(|e| malformed(format!("{name}: {e}")))?;
    if buf.len() as u64 > MAX_PART {
        return Err(malformed(format!("{name} is larger than {MAX_PART} bytes")));
    }
    let text = match encoding_rs::Encoding::for_bom(&buf) {
        Some((enc, bom)) => enc.decode_without_bom_handling(&buf[bom..]).0.into_owned(),
        None => String::from_utf8(buf).map_err(|_| malformed(format!("{name} is not UTF-8")))?,
    };
    Ok(Some(text))
}

/// The value of the attribute with local name `key` (`w:val` → `val`).
fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == key)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .flatten()
    })
}

fn resolve_ref(r: &BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    quick_xml::escape::resolve_predefined_entity(r)
        .map(str::to_string)
        .unwrap_or_default()
}

/// Heading level of a style: from its name ("heading 2", "Title") or outline level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StyleKind {
    Heading(u8),
    Title,
    List,
}

fn level_from_name(name: &str) -> Option<StyleKind> {
    let lower = name.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(StyleKind::Title);
    }
    if let Some(n) = lower.strip_prefix("heading")
        && let Ok(n) = n.parse::<u8>()
        && (1..=9).contains(&n)
    {
        return Some(StyleKind::Heading(n));
    }
    if lower.starts_with("list") {
        return Some(StyleKind::List);
    }
    None
}

/// Maps style ids to heading levels, from `word/styles.xml`.
fn style_levels(xml: &str) -> HashMap<String, StyleKind> {
    let mut map = HashMap::new();
    let mut reader = Reader::from_str(xml);
    let mut id: Option<String> = None;
    let mut kind: Option<StyleKind> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                "style" => {
                    id = attr(&e, "styleId");
                    kind = None;
                }
                "name" => {
                    if let Some(k) = attr(&e, "val").and_then(|n| level_from_name(&n)) {
                        kind = Some(k);
                    }
                }
                "outlineLvl" => {
                    if kind.is_none()
                        && let Some(l) = attr(&e, "val").and_then(|v| v.parse::<u8>().ok())
                        && l < 9
                    {
                        kind = Some(StyleKind::Heading(l + 1));
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == "style" => {
                if let (Some(i), Some(k)) = (id.take(), kind.take()) {
                    map.insert(i, k);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    map
}

/// A style id without an entry in styles.xml: Word's built-in ids ("Heading1", "Title"),
/// or the bare numbers localized Word versions use for headings ("1", "2", ...).
fn style_kind(id: &str, styles: &HashMap<String, StyleKind>) -> Option<StyleKind> {
    if let Some(k) = styles.get(id) {
        return Some(*k);
    }
    if let Some(k) = level_from_name(id) {
        return Some(k);
    }
    match id.parse::<u8>() {
        Ok(n) if (1..=9).contains(&n) => Some(StyleKind::Heading(n)),
        _ => None,
    }
}

fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == "title" => in_title = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == "title" => break,
            Ok(Event::Text(t)) if in_title => title.push_str(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) if in_title => title.push_str(&resolve_ref(&r)),
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    let title = title.trim().to_string();
    (!title.is_empty()).then_some(title)
}

#[derive(Default)]
struct Para {
    text: String,
    style: Option<String>,
    list: bool,
    outline: Option<u8>,
}

fn body_blocks(
    xml: &str,
    styles: &HashMap<String, StyleKind>,
    core_title: Option<String>,
) -> Result<Document, ExtractError> {
    let mut b = DocBuilder::new(Format::Docx);
    let mut reader = Reader::from_str(xml);
    let mut p = Para::default();
    let mut p_depth = 0usize;
    let mut in_ppr = false;
    let mut in_t = false;
    let mut skip_depth = 0usize;
    let mut tbl_depth = 0usize;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut cells: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut saw_body = false;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(format!("word/document.xml: {e}")))?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if skip_depth > 0 || name == "Fallback" || name == "delText" {
                    skip_depth += 1;
                    continue;
                }
                match name {
                    "body" => saw_body = true,
                    "p" => {
                        if p_depth == 0 {
                            p = Para::default();
                        } else {
                            p.text.push(' ');
                        }
                        p_depth += 1;
                    }
                    "pPr" => in_ppr = true,
                    "t" => in_t = true,
                    "tbl" => {
                        tbl_depth += 1;
                        if tbl_depth == 1 {
                            rows.clear();
                        }
                    }
                    "tr" if tbl_depth == 1 => cells.clear(),
                    "tc" if tbl_depth == 1 => cell.clear(),
                    _ => empty_element(&e, &mut p, in_ppr),
                }
            }
            Event::Empty(e) if skip_depth == 0 => {
                empty_element(&e, &mut p, in_ppr);
            }
            Event::End(e) => {
                if skip_depth > 0 {
                    skip_depth -= 1;
                    continue;
                }
                match e.local_name().as_ref() {
                    "pPr" => in_ppr = false,
                    "t" => in_t = false,
                    "p" => {
                        p_depth = p_depth.saturating_sub(1);
                        if p_depth > 0 {
                            continue;
                        }
                        if tbl_depth > 0 {
                            let t = p.text.trim();
                            if !t.is_empty() {
                                if !cell.is_empty() {
                                    cell.push(' ');
                                }
                                cell.push_str(t);
                            }
                        } else {
                            let kind = match p.style.as_deref().and_then(|s| style_kind(s, styles))
                            {
                                Some(StyleKind::Heading(l)) => BlockKind::Heading { level: l },
                                Some(StyleKind::Title) => BlockKind::Heading { level: 1 },
                                Some(StyleKind::List) => BlockKind::ListItem,
                                None => match p.outline {
                                    Some(l) if l < 9 => BlockKind::Heading { level: l + 1 },
                                    _ if p.list => BlockKind::ListItem,
                                    _ => BlockKind::Paragraph,
                                },
                            };
                            b.push(kind, &p.text, None);
                        }
                        p = Para::default();
                    }
                    "tc" if tbl_depth == 1 => {
                        cells.push(cell.split_whitespace().collect::<Vec<_>>().join(" "));
                        cell.clear();
                    }
                    "tr" if tbl_depth == 1 => {
                        if cells.iter().any(|c| !c.is_empty()) {
                            rows.push(std::mem::take(&mut cells));
                        }
                        cells.clear();
                    }
                    "tbl" => {
                        tbl_depth = tbl_depth.saturating_sub(1);
                        if tbl_depth == 0 {
                            // Word tables label their columns in the first row; a table of
                            // one row or one column has nothing to label.
                            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
                            let header_rows = usize::from(rows.len() > 1 && width > 1);
                            let t = Table {
                                rows: std::mem::take(&mut rows),
                                header_rows,
                            };
                            b.push(BlockKind::Table, &t.to_text(), None);
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_t && skip_depth == 0 => p.text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_t && skip_depth == 0 => p.text.push_str(&resolve_ref(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_body {
        return Err(malformed("word/document.xml has no <w:body>"));
    }
    Ok(b.finish("UTF-8", core_title))
}

/// Elements that carry meaning without content: paragraph properties, tabs, breaks.
fn empty_element(e: &BytesStart<'_>, p: &mut Para, in_ppr: bool) {
    match e.local_name().as_ref() {
        "pStyle" if in_ppr => p.style = attr(e, "val"),
        "numPr" if in_ppr => p.list = true,
        "outlineLvl" if in_ppr => p.outline = attr(e, "val").and_then(|v| v.parse().ok()),
        "tab" if !in_ppr => p.text.push('\t'),
        "br" | "cr" if !in_ppr => p.text.push('\n'),
        "noBreakHyphen" => p.text.push('-'),
        _ => {}
    }
}
