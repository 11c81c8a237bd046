//! JSON in Python's `json.dumps` layout (`", "` between items, `": "` after keys, non-ASCII
//! kept): what chat templates' `tojson` produced when the models were trained, and what they
//! write in their tool calls. A `serde_json` formatter, so escaping stays serde_json's.

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::Formatter;
use std::io;

struct PyFormatter {
    indent: Option<Vec<u8>>,
    depth: usize,
}

impl PyFormatter {
    fn newline(&self, w: &mut (impl io::Write + ?Sized)) -> io::Result<()> {
        if let Some(ind) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.depth {
                w.write_all(ind)?;
            }
        }
        Ok(())
    }

    fn sep(&self) -> &'static [u8] {
        if self.indent.is_some() { b"," } else { b", " }
    }
}

impl Formatter for PyFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        w.write_all(b"]")
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            w.write_all(self.sep())?;
        }
        self.newline(w)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        w.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            w.write_all(self.sep())?;
        }
        self.newline(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

fn write(v: &Value, indent: Option<usize>) -> String {
    let mut out = Vec::new();
    let fmt = PyFormatter {
        indent: indent.map(|n| vec![b' '; n]),
        depth: 0,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serialising a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    // Python closes a non-empty indented container on its own line; serde_json's formatter
    // gives no hook that knows emptiness at the end, so indented output is post-processed.
    let s = String::from_utf8(out).unwrap_or_default();
    match indent {
        Some(n) => close_on_own_line(&s, n),
        None => s,
    }
}

/// Compact Python layout: `{"a": 1, "b": [1, 2]}`.
pub fn to_string(v: &Value) -> String {
    write(v, None)
}

/// Indented Python layout (`json.dumps(v, indent=n)`).
pub fn to_string_indent(v: &Value, n: usize) -> String {
    write(v, Some(n))
}

/// Move each closing bracket of a non-empty container to its own line at its depth.
fn close_on_own_line(s: &str, n: usize) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut prev_open = false;
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            prev_open = false;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
                prev_open = false;
            }
            '{' | '[' => {
                depth += 1;
                out.push(c);
                prev_open = true;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if !prev_open {
                    out.push('\n');
                    out.push_str(&" ".repeat(depth * n));
                }
                out.push(c);
                prev_open = false;
            }
            _ => {
                out.push(c);
                if !c.is_whitespace() {
                    prev_open = false;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_layout() {
        let v = json!({"name": "天氣", "args": {"a": [1, 2], "b": "x\"y"}, "e": {}});
        assert_eq!(
            to_string(&v),
            r#"{"name": "天氣", "args": {"a": [1, 2], "b": "x\"y"}, "e": {}}"#
        );
        assert_eq!(
            to_string_indent(&json!({"a": [1], "b": {}}), 2),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
    }
}
