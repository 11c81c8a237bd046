//! Evaluating Tandem's routing the way the routing literature does (RouteLLM, RouterBench):
//! datasets with graders, the SLM-only / LLM-only baselines, routers swept over thresholds,
//! PGR / APGR / CPT, a learned router over query embeddings, calibration and reports.
//!
//! Pure logic: running the models is the caller's job (the `tandem eval route` command).

pub mod dataset;
pub mod prepare;
