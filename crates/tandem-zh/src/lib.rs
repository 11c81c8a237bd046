//! Chinese script for answers: which script a text is written in ([`detect`]), and
//! Simplified → Traditional (Taiwan) conversion of prose and JSON, whole or streamed
//! ([`convert`]), with OpenCC's phrase-level `s2twp` chain. No I/O.

pub mod convert;
pub mod detect;

pub use convert::{Converter, Format, HOLD_MAX, LoadError, convert};
pub use detect::{Counts, Script, has_simplified, is_han, is_simplified_only, is_traditional_only};

/// The locale answers are converted to.
pub const ZH_TW: &str = "zh-TW";

#[cfg(test)]
mod tests;
