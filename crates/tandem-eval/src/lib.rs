//! Evaluation harness for the hybrid (issue 5): routing datasets prepared from the offline
//! data packages, graders for model answers, RouteLLM-style cost–quality curves (PGR, APGR,
//! CPT), a learned kNN router, threshold calibration on a dev split and JSON/Markdown/SVG
//! reports. Pure logic: no model, no engine (the `tandem eval route` command runs the
//! models); the only I/O is the router file (`knn::LearnedRouter::save` / `load`).

pub mod calibrate;
pub mod dataset;
pub mod error;
pub mod grade;
pub mod knn;
pub mod metrics;
pub mod outcomes;
pub mod prepare;
pub mod report;
pub mod routellm;

pub use error::EvalError;
