//! Tandem's routing policy: the validated `tandem.yaml` ([`config`]), the ordered rules and
//! the decision procedure ([`rules`]), the task classifier ([`classify`]), the PII guard
//! ([`pii`]), cascade confidence scoring ([`cascade`]) and the script of answers ([`script`]). No I/O: callers hand in text,
//! token counters and an embedding function, and get decisions with their reasons.

pub mod cascade;
pub mod classify;
pub mod config;
pub mod pii;
pub mod rules;
pub mod script;

pub use config::{Config, ConfigError, ConfigIssue, ModelSpec, PiiAction, Price, RagSettings};
pub use rules::{Action, Decision, Facts, KB_PREFIX, RagAction, RouteError, RouteRequest};
pub use script::{AnswerScript, ScriptSetting};
