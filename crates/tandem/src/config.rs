//! `tandem.yaml` loading for the CLI (the schema and validation live in `tandem-policy`),
//! and `tandem config check|default`.

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use tandem_policy::config::{self, Config, DEFAULT_CONFIG};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate a configuration file; exits non-zero with the line and reason of each error.
    Check {
        /// The file (YAML).
        file: PathBuf,
    },
    /// Print the built-in default configuration (a starting point for your own).
    Default,
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    config::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The configuration to run with: the file, or the built-in default.
pub fn load_or_default(path: Option<&Path>) -> Result<(Config, String)> {
    match path {
        Some(p) => Ok((load(p)?, p.display().to_string())),
        None => Ok((
            config::parse(DEFAULT_CONFIG).map_err(|e| anyhow!("built-in configuration: {e}"))?,
            "built-in default".to_string(),
        )),
    }
}

pub fn run(cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Default => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        ConfigCmd::Check { file } => {
            let c = load(&file)?;
            let local = c.models.iter().filter(|m| m.is_local()).count();
            println!(
                "{}: ok — {} models ({} local, {} remote), {} routes, {} aliases",
                file.display(),
                c.models.len(),
                local,
                c.models.len() - local,
                c.routes.len(),
                c.aliases.len()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let (c, _) = load_or_default(None).unwrap();
        assert!(c.routes.len() >= 8);
        assert_eq!(c.local_model.as_deref(), Some("qwen2.5-coder-0.5b"));
        assert_eq!(c.llm_model.as_deref(), Some("qwen2.5-coder-1.5b"));
    }
}
