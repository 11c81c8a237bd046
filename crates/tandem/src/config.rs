//! `tandem.yaml`: the serve configuration (flags and `TANDEM_*` variables override it).

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and API behaviour.
    #[serde(default)]
    pub server: ServerSection,
    /// Engine defaults for every chat model.
    #[serde(default)]
    pub engine: EngineSection,
    /// Models to load: catalog names or paths, with optional per-model overrides.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Ignore unknown OpenAI parameters instead of answering 400.
    pub drop_unknown_params: Option<bool>,
    /// Largest request body (bytes).
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub threads: Option<usize>,
    pub threads_batch: Option<usize>,
    pub ctx_size: Option<u32>,
    pub parallel: Option<u32>,
    pub batch_size: Option<u32>,
    pub max_queue: Option<usize>,
    pub prompt_cache: Option<bool>,
}

/// A model line: either a bare name or a map with overrides.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ModelEntry {
    Name(String),
    Detailed(DetailedModel),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedModel {
    /// Catalog name or path.
    pub model: String,
    /// Id to serve it under (default: the catalog name or file stem).
    pub name: Option<String>,
    #[serde(flatten)]
    pub engine: EngineSection,
}

impl ModelEntry {
    pub fn model(&self) -> &str {
        match self {
            ModelEntry::Name(n) => n,
            ModelEntry::Detailed(d) => &d.model,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => anyhow::anyhow!("line {}, column {}: {e}", l.line(), l.column()),
            None => anyhow::anyhow!("{e}"),
        })?;
        Ok(cfg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_overrides() {
        let c = Config::parse(
            "server:\n  port: 9000\nengine:\n  threads: 1\nmodels:\n  - smollm2-135m\n  - model: /tmp/x.gguf\n    name: big\n    parallel: 2\n",
        )
        .unwrap();
        assert_eq!(c.server.port, Some(9000));
        assert_eq!(c.engine.threads, Some(1));
        assert_eq!(c.models.len(), 2);
        assert_eq!(c.models[1].model(), "/tmp/x.gguf");
        match &c.models[1] {
            ModelEntry::Detailed(d) => assert_eq!(d.engine.parallel, Some(2)),
            ModelEntry::Name(_) => panic!("expected detailed"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = Config::parse("server:\n  port: notaport\n").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        let e = Config::parse("serverr: {}\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        assert!(Config::parse("").unwrap().models.is_empty());
    }
}
