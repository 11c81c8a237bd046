//! PDF text, page by page, with pdf-extract (over lopdf).
//!
//! pdf-extract panics on some inputs by design; every call into it runs under
//! `catch_unwind`, and a panic becomes [`ExtractError::Malformed`]. The panic message is
//! kept off stderr while this thread parses (other threads' panics print as usual).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use pdf_extract::{Document as PdfDoc, Object, OutputError, PlainTextOutput, output_doc_page};

use crate::builder::{DocBuilder, join_lines, paragraphs};
use crate::{BlockKind, Document, ExtractError, Format};

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics on a thread parsing a PDF and
/// hands every other panic to the hook that was there before.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was = QUIET_PANICS.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(was));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".to_string());
        format!("the PDF parser failed: {msg}")
    })
}

fn malformed(reason: impl Into<String>) -> ExtractError {
    ExtractError::Malformed {
        format: Format::Pdf,
        reason: reason.into(),
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Document, ExtractError> {
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(malformed("no %PDF- header"));
    }
    let (title, pages) = guarded(|| read(bytes)).map_err(malformed)??;
    let mut b = DocBuilder::new(Format::Pdf);
    for (i, page) in pages.iter().enumerate() {
        let page_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        for p in paragraphs(page) {
            b.push(BlockKind::Paragraph, &join_lines(&p), Some(page_no));
        }
    }
    Ok(b.finish("UTF-8", title))
}

/// Loads the PDF and extracts the title and each page's text.
fn read(bytes: &[u8]) -> Result<(Option<String>, Vec<String>), ExtractError> {
    let mut doc = PdfDoc::load_mem(bytes).map_err(|e| malformed(e.to_string()))?;
    if doc.is_encrypted() {
        doc.decrypt("")
            .map_err(|_| malformed("the PDF is encrypted with a password"))?;
    }
    let title = info_title(&doc);
    let page_count = doc.get_pages().len();
    if page_count == 0 {
        return Err(malformed("the PDF has no pages"));
    }
    let mut pages = Vec::with_capacity(page_count);
    for n in 1..=page_count {
        let page_no = u32::try_from(n).map_err(|_| malformed("too many pages"))?;
        let mut text = String::new();
        {
            let mut out = PlainTextOutput::new(&mut text);
            output_doc_page(&doc, &mut out, page_no)
                .map_err(|e: OutputError| malformed(format!("page {n}: {e}")))?;
        }
        pages.push(text);
    }
    Ok((title, pages))
}

/// `/Title` from the trailer's `/Info` dictionary.
fn info_title(doc: &PdfDoc) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        Object::Reference(id) => doc.get_object(*id).ok()?.as_dict().ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    match dict.get(b"Title").ok()? {
        Object::String(s, _) => Some(pdf_string(s)),
        _ => None,
    }
}

/// A PDF text string: UTF-16BE with a BOM, UTF-8 with a BOM, else PDFDocEncoding (taken as
/// Latin-1, which matches it for the printable range).
fn pdf_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xfe, 0xff]) {
        encoding_rs::UTF_16BE
            .decode_without_bom_handling(rest)
            .0
            .into_owned()
    } else if let Some(rest) = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]) {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        bytes.iter().map(|&b| char::from(b)).collect()
    }
}
