//! Bytes to text: BOM, UTF-8, or a detected legacy encoding (Big5, GBK, Shift_JIS, ...).

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE};

use crate::{ExtractError, Format};

/// How many leading bytes the binary check looks at.
const SNIFF_LEN: usize = 64 * 1024;

/// Decodes the bytes of a text file, returning the text and the encoding's name.
pub(crate) fn decode_text(
    bytes: &[u8],
    format: Format,
) -> Result<(String, &'static str), ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let (text, encoding) = if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        decode_with(enc, &bytes[bom_len..])?
    } else if let Some(enc) = sniff_utf16(bytes) {
        decode_with(enc, bytes)?
    } else {
        if looks_binary(bytes) {
            return Err(ExtractError::Binary(format));
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_string(), "UTF-8"),
            Err(_) => {
                let declared = if format == Format::Html {
                    html_meta_charset(bytes)
                } else {
                    None
                };
                let enc = declared.unwrap_or_else(|| detect(bytes));
                decode_with(enc, bytes)?
            }
        }
    };
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    if text_looks_binary(&text) {
        return Err(ExtractError::Binary(format));
    }
    Ok((text, encoding))
}

fn decode_with(
    enc: &'static Encoding,
    bytes: &[u8],
) -> Result<(String, &'static str), ExtractError> {
    let (text, had_errors) = enc.decode_without_bom_handling(bytes);
    if had_errors {
        let bad = text.chars().filter(|&c| c == '\u{fffd}').count();
        let total = text.chars().count().max(1);
        // A few stray bytes are tolerated (they become U+FFFD); mostly garbage is not.
        if bad * 20 > total {
            return Err(ExtractError::Encoding(format!(
                "{bad} of {total} characters are not valid {}",
                enc.name()
            )));
        }
    }
    Ok((text.into_owned(), enc.name()))
}

fn detect(bytes: &[u8]) -> &'static Encoding {
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    det.feed(bytes, true);
    det.guess(None, chardetng::Utf8Detection::Allow)
}

/// UTF-16 without a BOM: ASCII-range text leaves a zero in every other byte.
fn sniff_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let n = bytes.len().min(SNIFF_LEN) & !1;
    if n < 4 {
        return None;
    }
    let pairs = n / 2;
    let (mut even_zero, mut odd_zero) = (0usize, 0usize);
    for pair in bytes[..n].chunks_exact(2) {
        if pair[0] == 0 {
            even_zero += 1;
        }
        if pair[1] == 0 {
            odd_zero += 1;
        }
    }
    if odd_zero * 10 >= pairs * 3 && even_zero * 50 <= pairs {
        Some(UTF_16LE)
    } else if even_zero * 10 >= pairs * 3 && odd_zero * 50 <= pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// Raw bytes that are not text: a NUL byte, or many control bytes.
fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(SNIFF_LEN)];
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b))
        .count();
    control * 10 > head.len()
}

/// Decoded text that is not text (e.g. UTF-16 detection on binary data).
fn text_looks_binary(text: &str) -> bool {
    let mut total = 0usize;
    let mut control = 0usize;
    for c in text.chars().take(SNIFF_LEN) {
        total += 1;
        if c == '\0' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}' | '\u{1b}')) {
            control += 1;
        }
    }
    control * 10 > total
}

/// The charset an HTML page declares in a `<meta>` tag within its first 1024 bytes.
fn html_meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let pos = lower.windows(8).position(|w| w == b"charset=")?;
    let rest = &lower[pos + 8..];
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
        .unwrap_or(rest.len());
    let enc = Encoding::for_label(&rest[..end])?;
    // A page cannot declare UTF-16 in ASCII; such a declaration is wrong.
    if enc == UTF_16LE || enc == UTF_16BE {
        None
    } else {
        Some(enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big5_is_detected() {
        let src = "這是一份繁體中文的文件。我們測試編碼偵測是否正確，包括標點符號與常用字。";
        let (bytes, _, errors) = encoding_rs::BIG5.encode(src);
        assert!(!errors);
        assert!(std::str::from_utf8(&bytes).is_err());
        let (text, enc) = decode_text(&bytes, Format::Text).expect("decodes");
        assert_eq!(enc, "Big5");
        assert_eq!(text, src);
    }

    #[test]
    fn utf16_without_bom_is_sniffed() {
        let bytes: Vec<u8> = "Hello, world. Plain text here.\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (text, enc) = decode_text(&bytes, Format::Text).expect("decodes");
        assert_eq!(enc, "UTF-16LE");
        assert!(text.starts_with("Hello, world."));
    }

    #[test]
    fn meta_charset_is_honoured() {
        let (body, _, _) = encoding_rs::BIG5.encode("<p>中文</p>");
        let mut bytes = b"<html><head><meta charset=\"big5\"></head><body>".to_vec();
        bytes.extend_from_slice(&body);
        let (text, enc) = decode_text(&bytes, Format::Html).expect("decodes");
        assert_eq!(enc, "Big5");
        assert!(text.contains("中文"));
    }

    #[test]
    fn control_bytes_are_binary() {
        let bytes: Vec<u8> = (1u8..32).cycle().take(500).collect();
        assert!(matches!(
            decode_text(&bytes, Format::Text),
            Err(ExtractError::Binary(Format::Text))
        ));
    }
}
