//! Markdown (CommonMark + tables) to blocks, with pulldown-cmark.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::builder::{DocBuilder, is_cjk};
use crate::table::{Table, cell};
use crate::{BlockKind, Document, Format};

/// A Markdown table being read: its rows so far, the open row and cell.
#[derive(Default)]
struct OpenTable {
    table: Table,
    row: Vec<String>,
    cell: String,
    in_head: bool,
}

impl OpenTable {
    fn end_row(&mut self) {
        let row = std::mem::take(&mut self.row);
        if !row.is_empty() {
            self.table.rows.push(row);
            if self.in_head {
                self.table.header_rows += 1;
            }
        }
    }
}

pub(crate) fn parse(text: &str, encoding: &str) -> Document {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut b = DocBuilder::new(Format::Markdown);
    let mut cur = String::new();
    let mut kind: Option<BlockKind> = None;
    let mut item_depth = 0usize;
    let mut in_metadata = false;
    let mut metadata = String::new();
    let mut table: Option<OpenTable> = None;

    let flush = |b: &mut DocBuilder, cur: &mut String, kind: &mut Option<BlockKind>| {
        if let Some(k) = kind.take() {
            b.push(k, cur, None);
        }
        cur.clear();
    };

    for event in Parser::new_ext(text, opts) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => {
                    flush(&mut b, &mut cur, &mut kind);
                    kind = Some(BlockKind::Heading {
                        level: heading_level(level),
                    });
                }
                Tag::Paragraph => {
                    if kind.is_none() {
                        kind = Some(if item_depth > 0 {
                            BlockKind::ListItem
                        } else {
                            BlockKind::Paragraph
                        });
                    } else if !cur.is_empty() {
                        // A second paragraph inside one list item.
                        cur.push('\n');
                    }
                }
                Tag::Item => {
                    flush(&mut b, &mut cur, &mut kind);
                    item_depth += 1;
                    kind = Some(BlockKind::ListItem);
                }
                Tag::List(_) | Tag::BlockQuote(_) | Tag::FootnoteDefinition(_) => {
                    flush(&mut b, &mut cur, &mut kind);
                }
                Tag::CodeBlock(_) => {
                    flush(&mut b, &mut cur, &mut kind);
                    kind = Some(BlockKind::Code);
                }
                Tag::Table(_) => {
                    flush(&mut b, &mut cur, &mut kind);
                    kind = Some(BlockKind::Table);
                    table = Some(OpenTable::default());
                }
                Tag::TableHead => {
                    if let Some(t) = &mut table {
                        t.in_head = true;
                        t.row.clear();
                    }
                }
                Tag::TableRow => {
                    if let Some(t) = &mut table {
                        t.row.clear();
                    }
                }
                Tag::TableCell => {
                    if let Some(t) = &mut table {
                        t.cell.clear();
                    }
                }
                Tag::MetadataBlock(_) => in_metadata = true,
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Table => {
                    if let Some(t) = table.take() {
                        cur = t.table.to_text();
                    }
                    flush(&mut b, &mut cur, &mut kind);
                }
                TagEnd::TableCell => {
                    if let Some(t) = &mut table {
                        let c = cell(&t.cell);
                        t.row.push(c);
                    }
                }
                TagEnd::TableHead => {
                    if let Some(t) = &mut table {
                        t.end_row();
                        t.in_head = false;
                    }
                }
                TagEnd::TableRow => {
                    if let Some(t) = &mut table {
                        t.end_row();
                    }
                }
                TagEnd::Heading(_) | TagEnd::CodeBlock => {
                    flush(&mut b, &mut cur, &mut kind);
                }
                TagEnd::Paragraph if item_depth == 0 => {
                    flush(&mut b, &mut cur, &mut kind);
                }
                TagEnd::Item => {
                    flush(&mut b, &mut cur, &mut kind);
                    item_depth = item_depth.saturating_sub(1);
                }
                TagEnd::List(_) => {
                    flush(&mut b, &mut cur, &mut kind);
                    if item_depth > 0 {
                        // Text after a nested list still belongs to the outer item.
                        kind = Some(BlockKind::ListItem);
                    }
                }
                TagEnd::MetadataBlock(_) => in_metadata = false,
                _ => {}
            },
            Event::Text(t) | Event::Code(t) if table.is_some() => {
                if let Some(open) = &mut table {
                    open.cell.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak if table.is_some() => {
                if let Some(open) = &mut table {
                    open.cell.push(' ');
                }
            }
            Event::Text(t) => {
                if in_metadata {
                    metadata.push_str(&t);
                } else {
                    if kind.is_none() {
                        kind = Some(if item_depth > 0 {
                            BlockKind::ListItem
                        } else {
                            BlockKind::Paragraph
                        });
                    }
                    cur.push_str(&t);
                }
            }
            Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                if kind.is_none() {
                    kind = Some(BlockKind::Paragraph);
                }
                cur.push_str(&t);
            }
            Event::SoftBreak => {
                if !cur.chars().next_back().is_some_and(is_cjk) {
                    cur.push(' ');
                }
            }
            Event::HardBreak => cur.push('\n'),
            Event::Rule => flush(&mut b, &mut cur, &mut kind),
            Event::TaskListMarker(done) => cur.push_str(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(r) => {
                cur.push('[');
                cur.push_str(&r);
                cur.push(']');
            }
            Event::Html(_) | Event::InlineHtml(_) => {}
        }
    }
    flush(&mut b, &mut cur, &mut kind);
    let title = front_matter_title(&metadata);
    b.finish(encoding, title)
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// `title:` from YAML front matter (a plain or quoted scalar on one line).
fn front_matter_title(meta: &str) -> Option<String> {
    meta.lines().find_map(|line| {
        let v = line.strip_prefix("title:")?.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(d: &Document) -> Vec<(&str, BlockKind)> {
        d.blocks
            .iter()
            .map(|b| (&d.text[b.range.clone()], b.kind))
            .collect()
    }

    #[test]
    fn structure_and_plain_text() {
        let md = "Guide\n=====\n\nIntro with **bold** and [a link](http://x.y).\n\n## Install\n\n- one\n- two\n  - nested\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let d = parse(md, "UTF-8");
        assert_eq!(d.title.as_deref(), Some("Guide"));
        let t = texts(&d);
        assert_eq!(
            t,
            vec![
                ("Guide", BlockKind::Heading { level: 1 }),
                ("Intro with bold and a link.", BlockKind::Paragraph),
                ("Install", BlockKind::Heading { level: 2 }),
                ("one", BlockKind::ListItem),
                ("two", BlockKind::ListItem),
                ("nested", BlockKind::ListItem),
                ("fn main() {}", BlockKind::Code),
                ("a: 1; b: 2", BlockKind::Table),
            ]
        );
        assert_eq!(d.blocks[4].heading_path, vec!["Guide", "Install"]);
        assert!(d.text.starts_with("Guide\n\nIntro with bold"));
        assert!(!d.text.contains("**"));
    }

    #[test]
    fn front_matter_is_skipped_and_gives_title() {
        let d = parse("---\ntitle: \"手冊\"\n---\n\n內容。\n", "UTF-8");
        assert_eq!(d.title.as_deref(), Some("手冊"));
        assert_eq!(d.text, "內容。");
    }

    #[test]
    fn cjk_soft_breaks_join_without_space() {
        let d = parse("第一行\n第二行\n", "UTF-8");
        assert_eq!(d.text, "第一行第二行");
    }
}
