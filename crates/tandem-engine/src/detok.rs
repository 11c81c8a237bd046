//! Incremental text assembly for streaming: UTF-8 sequences split across tokens are held
//! until complete, and text that may be the beginning of a stop sequence is held until it
//! is known not to be one.

/// Assembles token bytes into text deltas and detects stop sequences.
#[derive(Debug, Default)]
pub struct TextAssembler {
    pending_bytes: Vec<u8>,
    /// Decoded text not yet released (could start a stop sequence).
    held: String,
    stops: Vec<String>,
    stopped: bool,
}

/// What pushing bytes produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Text safe to send now.
    pub text: String,
    /// A stop sequence matched: generation must end; `text` holds what precedes it.
    pub stopped: bool,
}

impl TextAssembler {
    /// A new assembler watching `stops`.
    pub fn new(stops: Vec<String>) -> Self {
        TextAssembler {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    /// Add the bytes of one token.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        if self.stopped {
            return Pushed {
                text: String::new(),
                stopped: true,
            };
        }
        self.pending_bytes.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => s.len(),
            Err(e) => {
                if e.error_len().is_some() {
                    // Genuinely invalid bytes (not a truncated sequence): replace them.
                    let s = String::from_utf8_lossy(&self.pending_bytes).into_owned();
                    self.pending_bytes.clear();
                    self.held.push_str(&s);
                    return self.release();
                }
                e.valid_up_to()
            }
        };
        let rest = self.pending_bytes.split_off(valid);
        let decoded = std::mem::replace(&mut self.pending_bytes, rest);
        // `decoded` is valid UTF-8 by construction.
        self.held.push_str(&String::from_utf8_lossy(&decoded));
        self.release()
    }

    fn release(&mut self) -> Pushed {
        // A full stop sequence anywhere in the held text ends generation.
        let mut first: Option<usize> = None;
        for s in &self.stops {
            if let Some(p) = self.held.find(s.as_str()) {
                first = Some(first.map_or(p, |f: usize| f.min(p)));
            }
        }
        if let Some(p) = first {
            let text = self.held[..p].to_string();
            self.held.clear();
            self.stopped = true;
            return Pushed {
                text,
                stopped: true,
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        let mut keep = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(self.held.len());
            for k in (1..=max).rev() {
                let start = self.held.len() - k;
                if self.held.is_char_boundary(start) && s.starts_with(&self.held[start..]) {
                    keep = keep.max(k);
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Pushed {
            text,
            stopped: false,
        }
    }

    /// End of generation: release whatever is held (incomplete UTF-8 becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let mut out = std::mem::take(&mut self.held);
        if !self.pending_bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending_bytes));
            self.pending_bytes.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool, Vec<String>) {
        let mut a = TextAssembler::new(stops.iter().map(|s| s.to_string()).collect());
        let mut all = String::new();
        let mut deltas = Vec::new();
        for p in pieces {
            let r = a.push(p);
            all.push_str(&r.text);
            deltas.push(r.text.clone());
            if r.stopped {
                return (all, true, deltas);
            }
        }
        all.push_str(&a.finish());
        (all, false, deltas)
    }

    #[test]
    fn split_utf8_is_reassembled() {
        let s = "中文".as_bytes();
        let (t, stopped, deltas) = run(&[], &[&s[..1], &s[1..4], &s[4..]]);
        assert_eq!(t, "中文");
        assert!(!stopped);
        assert_eq!(deltas, vec!["", "中", "文"]);
    }

    #[test]
    fn stop_sequence_across_tokens() {
        let (t, stopped, _) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert_eq!(t, "hello ");
        assert!(stopped);
    }

    #[test]
    fn false_prefix_is_released() {
        let (t, stopped, deltas) = run(&["END"], &[b"an E", b"xample"]);
        assert_eq!(t, "an Example");
        assert!(!stopped);
        assert_eq!(deltas[0], "an ");
    }

    #[test]
    fn earliest_stop_wins() {
        let (t, stopped, _) = run(&["b", "a"], &[b"xxab"]);
        assert_eq!(t, "xx");
        assert!(stopped);
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let (t, _, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(t, "a\u{fffd}b");
        let (t, _, _) = run(&[], &[b"a\xe4"]);
        assert_eq!(t, "a\u{fffd}");
    }

    #[test]
    fn cjk_stop_sequence() {
        let (t, stopped, _) = run(&["。"], &["你好".as_bytes(), "。再見".as_bytes()]);
        assert_eq!(t, "你好");
        assert!(stopped);
    }
}
