//! An incremental server-sent-events decoder (the WHATWG event-stream format).
//!
//! Bytes are pushed as they arrive from the network, in pieces of any size; complete events
//! come out. Lines may end in `\n`, `\r\n` or a lone `\r` (also when the `\r` and `\n` arrive
//! in different pieces); `:` lines are comments; several `data:` lines are joined with `\n`;
//! `event:` names the event; `id:` and `retry:` are ignored. Each line must be valid UTF-8
//! (a multi-byte character may be split across pieces). A line longer than
//! [`MAX_LINE`] is an error, so a misbehaving upstream cannot exhaust memory.

/// Longest line accepted (16 MiB).
pub const MAX_LINE: usize = 16 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why the byte stream is not a valid event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line is not UTF-8.
    #[error("event stream line is not valid UTF-8")]
    InvalidUtf8,
    /// A line exceeds [`MAX_LINE`].
    #[error("event stream line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// Incremental decoder; see the module docs.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the events completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        self.push_into(bytes, &mut out)?;
        Ok(out)
    }

    /// Like [`SseDecoder::push`], appending to `out`; on error, `out` keeps the events that
    /// were complete before the faulty line. The decoder should not be used after an error.
    pub fn push_into(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    self.extend_line(&rest[..i])?;
                    self.skip_lf = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, out)?;
                }
                None => {
                    self.extend_line(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// The stream ended: dispatch a last event that lacked its terminating blank line (being
    /// lenient with servers that close right after `data: [DONE]`).
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out)?;
        }
        self.process_line(b"", &mut out)?;
        Ok(out.pop())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            let event = self.event.take();
            if self.has_data {
                self.has_data = false;
                out.push(SseEvent {
                    event,
                    data: std::mem::take(&mut self.data),
                });
            }
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            out.extend(d.push(c).unwrap());
        }
        out.extend(d.finish().unwrap());
        out
    }

    #[test]
    fn basic_and_split_at_every_byte() {
        let input = "event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\ndata:z\rdata: w\r\rdata: é€\n\ndata: [DONE]\n\n";
        let want = vec![
            ev(Some("message_start"), "{\"a\":1}"),
            ev(None, "x\ny"),
            ev(None, "z\nw"),
            ev(None, "é€"),
            ev(None, "[DONE]"),
        ];
        for piece in [1, 2, 3, 5, 7, 1000] {
            assert_eq!(decode_in_pieces(input.as_bytes(), piece), want, "{piece}");
        }
    }

    #[test]
    fn event_name_resets_and_dataless_events_are_dropped() {
        let out = decode_in_pieces(b"event: ping\n\ndata: a\n\nid: 3\nretry: 10\ndata\n\n", 4);
        assert_eq!(out, vec![ev(None, "a"), ev(None, "")]);
    }

    #[test]
    fn unterminated_last_event_is_flushed() {
        assert_eq!(
            decode_in_pieces(b"data: [DONE]", 3),
            vec![ev(None, "[DONE]")]
        );
        assert_eq!(decode_in_pieces(b"data: a\n", 3), vec![ev(None, "a")]);
        assert!(decode_in_pieces(b": just a comment", 3).is_empty());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = SseDecoder::new();
        assert_eq!(d.push(b"data: \xff\xfe\n"), Err(SseError::InvalidUtf8));
    }

    #[test]
    fn events_before_an_error_are_kept() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            d.push_into(b"data: a\n\ndata: \xff\n\n", &mut out),
            Err(SseError::InvalidUtf8)
        );
        assert_eq!(out, vec![ev(None, "a")]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut d = SseDecoder::new();
        let big = vec![b'a'; MAX_LINE];
        assert!(d.push(b"data: ").is_ok());
        assert_eq!(d.push(&big), Err(SseError::LineTooLong));
    }
}
