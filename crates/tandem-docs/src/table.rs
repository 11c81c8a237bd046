//! Tables as text that survives chunking and retrieval: every body row is written with its
//! header ("年資：滿 3 年未滿 5 年；特休天數：每年 14 天", "Plan: B; Payout: NT$500,000"), one
//! row per line, so a chunk that holds a row holds what its cells mean and the chunker
//! (which never cuts inside a table row) and the RAG evidence selection can treat a line as
//! a unit. Markdown, HTML and DOCX tables share it.

use crate::builder::is_cjk;

/// A table as parsed: rows of cell texts, and how many leading rows are header rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    pub rows: Vec<Vec<String>>,
    /// Leading rows that label the columns (Markdown's head, `<th>`/`<thead>` rows, the
    /// first row of a DOCX table).
    pub header_rows: usize,
}

/// Collapses runs of whitespace in a cell into one space.
pub(crate) fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Table {
    /// The table's text, one line per body row. With a header, each cell is prefixed by
    /// its column's label (`label：value` joined by `；` when the row is Chinese, `label:
    /// value` joined by `; ` otherwise; empty cells are left out). Several header rows
    /// label a column with their cells joined by " / ". Without a header (or when the
    /// table is only a header) rows are cells joined by " | ".
    pub(crate) fn to_text(&self) -> String {
        let rows: Vec<&Vec<String>> = self
            .rows
            .iter()
            .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
            .collect();
        let header_rows = self.header_rows.min(rows.len());
        if header_rows == 0 || header_rows == rows.len() {
            return rows
                .iter()
                .map(|r| r.join(" | "))
                .collect::<Vec<_>>()
                .join("\n");
        }
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let labels: Vec<String> = (0..width)
            .map(|col| {
                let mut parts: Vec<&str> = Vec::new();
                for r in &rows[..header_rows] {
                    if let Some(c) = r.get(col).map(|c| c.trim()).filter(|c| !c.is_empty())
                        && parts.last() != Some(&c)
                    {
                        parts.push(c);
                    }
                }
                parts.join(" / ")
            })
            .collect();
        let mut out: Vec<String> = Vec::with_capacity(rows.len() - header_rows);
        for r in &rows[header_rows..] {
            let chinese = r.iter().chain(labels.iter()).any(|c| c.chars().any(is_cjk));
            let (kv, sep) = if chinese {
                ("：", "；")
            } else {
                (": ", "; ")
            };
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.trim().is_empty())
                .map(|(i, c)| match labels.get(i).filter(|l| !l.is_empty()) {
                    // A label equal to the value adds nothing ("—" columns, repeated keys).
                    Some(l) if l != c.trim() => format!("{l}{kv}{}", c.trim()),
                    _ => c.trim().to_string(),
                })
                .collect();
            out.push(cells.join(sep));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[&str]], header_rows: usize) -> String {
        Table {
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
            header_rows,
        }
        .to_text()
    }

    #[test]
    fn rows_carry_their_header() {
        assert_eq!(
            t(
                &[
                    &["年資", "特休天數"],
                    &["滿 2 年未滿 3 年", "10 天"],
                    &["滿 3 年未滿 5 年", "每年 14 天"],
                ],
                1
            ),
            "年資：滿 2 年未滿 3 年；特休天數：10 天\n年資：滿 3 年未滿 5 年；特休天數：每年 14 天"
        );
        assert_eq!(
            t(&[&["Plan", "Payout"], &["B", "NT$500,000"]], 1),
            "Plan: B; Payout: NT$500,000"
        );
    }

    #[test]
    fn empty_cells_and_missing_labels() {
        assert_eq!(
            t(&[&["Plan", "", "Note"], &["A", "x", ""], &["", "", ""]], 1),
            "Plan: A; x"
        );
    }

    #[test]
    fn no_header_or_only_a_header() {
        assert_eq!(t(&[&["a", "b"], &["1", "2"]], 0), "a | b\n1 | 2");
        assert_eq!(t(&[&["a", "b"]], 1), "a | b");
        assert_eq!(t(&[], 1), "");
    }

    #[test]
    fn two_header_rows_join_their_labels() {
        assert_eq!(
            t(
                &[&["Plan", "Benefit"], &["", "Daily cash"], &["A", "1,000"]],
                2
            ),
            "Plan: A; Benefit / Daily cash: 1,000"
        );
    }
}
