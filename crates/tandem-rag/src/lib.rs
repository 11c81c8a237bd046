//! The logic of Tandem's collaborative RAG, free of I/O and of any model: the caller
//! retrieves [`Passage`]s, calls the models with the prompts built here, and hands their
//! answers back for parsing and checking.
//!
//! Modes ([`Mode`]):
//! * `local`: the SLM answers from the passages with citations, or says it does not know.
//! * `escalate`: as `local`, then [`ground::check`] looks at the answer — an "I don't know",
//!   missing citations, sentences their cited passages do not support, low token
//!   log-probabilities — and the LLM answers with the same passages if it fails.
//! * `compress`: the SLM picks the sentences that matter ([`compress`]), and the LLM answers
//!   from those alone, with the original citation numbers.
//! * `draft_verify` (Speculative RAG): the SLM writes short drafts, each from a different
//!   subset of the passages, with a rationale ([`draft`]); the LLM reads the drafts in one
//!   call and returns the best, corrected if needed.
//!
//! [`eval`] grades answers against a question set and renders the report and chart.

pub mod cite;
pub mod compress;
pub mod draft;
pub mod eval;
pub mod evidence;
pub mod ground;
pub mod prompt;
pub mod text;

pub use cite::{Citation, citations, is_idk};
pub use text::Lang;

/// A retrieved chunk as the modes see it. `n` is its 1-based number in the prompt, the
/// number answers cite as `[n]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Passage {
    pub n: usize,
    /// Source path (relative to the ingested folder when possible).
    pub source: String,
    pub title: Option<String>,
    /// Heading path, outermost first.
    pub heading: Vec<String>,
    /// Page (PDF).
    pub page: Option<u32>,
    pub text: String,
    /// Retrieval score (higher is better).
    pub score: f32,
}

impl Passage {
    /// "title › heading › subheading" (or the source when there is neither).
    pub fn label(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if let Some(t) = self.title.as_deref().filter(|t| !t.is_empty()) {
            parts.push(t);
        }
        for h in &self.heading {
            if parts.last() != Some(&h.as_str()) && !h.is_empty() {
                parts.push(h);
            }
        }
        if parts.is_empty() {
            self.source.clone()
        } else {
            parts.join(" › ")
        }
    }
}

/// How the SLM and the LLM share a RAG answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Local,
    Escalate,
    Compress,
    DraftVerify,
}

impl Mode {
    /// Every mode, in order of increasing LLM involvement.
    pub const ALL: [Mode; 4] = [
        Mode::Local,
        Mode::Escalate,
        Mode::Compress,
        Mode::DraftVerify,
    ];

    /// The name used in configs, requests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Escalate => "escalate",
            Mode::Compress => "compress",
            Mode::DraftVerify => "draft_verify",
        }
    }

    /// Whether the mode may call the LLM.
    pub fn uses_llm(self) -> bool {
        !matches!(self, Mode::Local)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown RAG mode `{0}`: expected local, escalate, compress or draft_verify")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "local" => Ok(Mode::Local),
            "escalate" => Ok(Mode::Escalate),
            "compress" => Ok(Mode::Compress),
            "draft_verify" | "draftverify" | "speculative" => Ok(Mode::DraftVerify),
            _ => Err(UnknownMode(s.to_string())),
        }
    }
}

#[cfg(test)]
pub(crate) fn passage(n: usize, source: &str, text: &str) -> Passage {
    Passage {
        n,
        source: source.into(),
        title: None,
        heading: Vec::new(),
        page: None,
        text: text.into(),
        score: 1.0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert_eq!("Draft-Verify".parse::<Mode>(), Ok(Mode::DraftVerify));
        let e = "fast".parse::<Mode>().unwrap_err();
        assert!(e.to_string().contains("`fast`"));
    }

    #[test]
    fn labels() {
        let mut p = passage(1, "hr/leave.md", "x");
        assert_eq!(p.label(), "hr/leave.md");
        p.title = Some("Leave policy".into());
        p.heading = vec!["Leave policy".into(), "Annual leave".into()];
        assert_eq!(p.label(), "Leave policy › Annual leave");
    }
}
