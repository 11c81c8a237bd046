//! HTML to blocks, with html5ever (through scraper): a browser-grade parser, so unclosed
//! tags and entities are handled as browsers do.

use scraper::{ElementRef, Html, Node};

use crate::builder::{DocBuilder, is_cjk};
use crate::table::Table;
use crate::{BlockKind, Document, Format};

/// Elements whose content is never document text.
const SKIP: &[&str] = &[
    "script", "style", "nav", "head", "noscript", "template", "iframe", "svg", "canvas", "button",
    "select", "form", "object", "embed",
];

/// Elements that end the current block and start a new one.
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hgroup",
    "hr",
    "html",
    "legend",
    "li",
    "main",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
    "caption",
];

pub(crate) fn parse(text: &str, encoding: &str) -> Document {
    let html = Html::parse_document(text);
    let mut w = Walker {
        b: DocBuilder::new(Format::Html),
        cur: String::new(),
        kind: BlockKind::Paragraph,
    };
    let root = html.root_element();
    let title = find_title(root);
    w.element(root);
    w.flush();
    w.b.finish(encoding, title)
}

fn find_title(el: ElementRef<'_>) -> Option<String> {
    for child in el.children() {
        if let Some(c) = ElementRef::wrap(child) {
            if c.value().name() == "title" {
                let t: String = c.text().collect();
                return Some(t);
            }
            if c.value().name() == "svg" {
                continue;
            }
            if let Some(t) = find_title(c) {
                return Some(t);
            }
        }
    }
    None
}

struct Walker {
    b: DocBuilder,
    cur: String,
    kind: BlockKind,
}

impl Walker {
    fn flush(&mut self) {
        let text = collapse(&self.cur);
        self.b.push(self.kind, &text, None);
        self.cur.clear();
    }

    /// Ends the current block and runs `f` as a block of kind `kind`.
    fn block(&mut self, kind: BlockKind, f: impl FnOnce(&mut Self)) {
        self.flush();
        let outer = std::mem::replace(&mut self.kind, kind);
        f(self);
        self.flush();
        self.kind = outer;
    }

    fn element(&mut self, el: ElementRef<'_>) {
        let name = el.value().name();
        if SKIP.contains(&name) {
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = name.as_bytes()[1] - b'0';
                self.block(BlockKind::Heading { level }, |w| w.children(el));
            }
            "pre" => {
                self.flush();
                let code: String = el.text().collect();
                let code = code.strip_prefix('\n').unwrap_or(&code);
                self.b.push(BlockKind::Code, code, None);
            }
            "table" => {
                self.flush();
                let mut t = HtmlTable::default();
                collect_rows(el, false, &mut t);
                if let Some(c) = &t.caption {
                    self.b.push(BlockKind::Paragraph, c, None);
                }
                self.b.push(BlockKind::Table, &t.table.to_text(), None);
            }
            "br" => self.cur.push(BR),
            "li" => self.block(BlockKind::ListItem, |w| w.children(el)),
            "img" => {
                if let Some(alt) = el.value().attr("alt") {
                    self.cur.push_str(alt);
                }
            }
            n if BLOCK.contains(&n) => self.block(BlockKind::Paragraph, |w| w.children(el)),
            _ => self.children(el),
        }
    }

    fn children(&mut self, el: ElementRef<'_>) {
        for child in el.children() {
            match child.value() {
                Node::Text(t) => self.cur.push_str(t),
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        self.element(c);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A table being read: its rows, and its caption (a paragraph of its own).
#[derive(Default)]
struct HtmlTable {
    table: Table,
    caption: Option<String>,
}

/// The rows of a table. Leading rows inside `<thead>` or made only of `<th>` cells are its
/// header. Nested tables are flattened into their cell.
fn collect_rows(el: ElementRef<'_>, in_head: bool, t: &mut HtmlTable) {
    for child in el.children().filter_map(ElementRef::wrap) {
        match child.value().name() {
            "tr" => {
                let tags: Vec<ElementRef<'_>> = child
                    .children()
                    .filter_map(ElementRef::wrap)
                    .filter(|c| matches!(c.value().name(), "td" | "th"))
                    .collect();
                let cells: Vec<String> = tags
                    .iter()
                    .map(|c| collapse(&visible_text(*c)).replace('\n', " "))
                    .collect();
                if cells.iter().all(|c| c.trim().is_empty()) {
                    continue;
                }
                let all_th = tags.iter().all(|c| c.value().name() == "th");
                if (in_head || all_th) && t.table.header_rows == t.table.rows.len() {
                    t.table.header_rows += 1;
                }
                t.table.rows.push(cells);
            }
            "caption" => {
                let c = collapse(&visible_text(child));
                if !c.is_empty() {
                    t.caption = Some(c);
                }
            }
            "thead" => collect_rows(child, true, t),
            n if SKIP.contains(&n) => {}
            _ => collect_rows(child, in_head, t),
        }
    }
}

/// Text of an element without skipped elements (scripts, styles, ...).
fn visible_text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    for child in el.children() {
        match child.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) if !SKIP.contains(&e.name()) => {
                if let Some(c) = ElementRef::wrap(child) {
                    if e.name() == "br" {
                        out.push(' ');
                    }
                    out.push_str(&visible_text(c));
                    out.push(' ');
                }
            }
            _ => {}
        }
    }
    out
}

/// Marks a `<br>` in collected text (collapsed to a newline).
const BR: char = '\u{2028}';

/// Collapses runs of whitespace to one space (a `<br>` gives a newline); whitespace between
/// two CJK characters is dropped, as a browser renders a source line break there.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Pending whitespace: Some(true) when the run held a line break.
    let mut pending: Option<bool> = None;
    let mut br = false;
    for c in s.chars() {
        if c == BR {
            br = true;
            continue;
        }
        if c.is_whitespace() && c != '\u{a0}' {
            let newline = c == '\n';
            pending = Some(pending.unwrap_or(false) || newline);
            continue;
        }
        let c = if c == '\u{a0}' { ' ' } else { c };
        if let Some(prev) = out.chars().next_back() {
            if br {
                out.push('\n');
            } else if let Some(had_newline) = pending
                && !(had_newline && is_cjk(prev) && is_cjk(c))
            {
                out.push(' ');
            }
        }
        pending = None;
        br = false;
        out.push(c);
    }
    out
}
