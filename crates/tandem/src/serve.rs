//! `tandem serve`.

use crate::config::{Config, EngineSection, ModelEntry};
use crate::models::resolve;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_embed::Embedder;
use tandem_engine::{Engine, EngineConfig};
use tandem_models::{ModelKind, ModelStore};
use tandem_server::state::EmbedModel;
use tandem_server::{AppState, ServerOptions};

/// Default models when none are named: the SLM that reads Traditional Chinese, and MiniLM.
pub const DEFAULT_MODELS: &[&str] = &["qwen2.5-coder-0.5b", "minilm-l6"];

#[derive(Args, Debug, Clone, Default)]
pub struct EngineArgs {
    /// Threads for generation (default: free cores).
    #[arg(long, env = "TANDEM_THREADS")]
    pub threads: Option<usize>,
    /// Threads for prompt processing (default: --threads).
    #[arg(long, env = "TANDEM_THREADS_BATCH")]
    pub threads_batch: Option<usize>,
    /// KV-cache size in tokens, shared by the parallel sequences.
    #[arg(long, env = "TANDEM_CTX_SIZE")]
    pub ctx_size: Option<u32>,
    /// Sequences decoded together (continuous batching).
    #[arg(long, env = "TANDEM_PARALLEL")]
    pub parallel: Option<u32>,
    /// Requests that may wait for a slot before new ones get 429.
    #[arg(long, env = "TANDEM_MAX_QUEUE")]
    pub max_queue: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, short = 'c', env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "TANDEM_HOST")]
    host: Option<String>,
    /// Port to bind (0 picks a free one).
    #[arg(long, short = 'p', env = "TANDEM_PORT")]
    port: Option<u16>,
    /// Model to load (catalog name or path); repeat for several. Chat and embedding models.
    #[arg(
        long = "model",
        short = 'm',
        env = "TANDEM_MODELS",
        value_delimiter = ','
    )]
    models: Vec<String>,
    /// Pull catalog models that are missing instead of failing.
    #[arg(long)]
    pull: bool,
    /// Accept and ignore unknown OpenAI parameters.
    #[arg(long, env = "TANDEM_DROP_UNKNOWN_PARAMS")]
    drop_unknown_params: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Engine settings: flag/env > per-model config > engine section > default.
pub fn engine_config(
    path: PathBuf,
    name: String,
    args: &EngineArgs,
    sections: &[&EngineSection],
) -> EngineConfig {
    let mut c = EngineConfig::new(path, name);
    let pick = |f: &dyn Fn(&EngineSection) -> Option<u64>| sections.iter().find_map(|s| f(s));
    c.threads = args
        .threads
        .or(pick(&|s| s.threads.map(|x| x as u64)).map(|x| x as usize));
    c.threads_batch = args
        .threads_batch
        .or(pick(&|s| s.threads_batch.map(|x| x as u64)).map(|x| x as usize));
    if let Some(x) = args
        .ctx_size
        .or(pick(&|s| s.ctx_size.map(u64::from)).map(|x| x as u32))
    {
        c.ctx_size = x;
    }
    if let Some(x) = args
        .parallel
        .or(pick(&|s| s.parallel.map(u64::from)).map(|x| x as u32))
    {
        c.parallel = x;
    }
    if let Some(x) = pick(&|s| s.batch_size.map(u64::from)) {
        c.batch_size = x as u32;
    }
    if let Some(x) = args
        .max_queue
        .or(pick(&|s| s.max_queue.map(|x| x as u64)).map(|x| x as usize))
    {
        c.max_queue = x;
    }
    if let Some(x) = sections.iter().find_map(|s| s.prompt_cache) {
        c.prompt_cache = x;
    }
    c
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Load every model and build the server state.
pub fn load_state(
    store: &ModelStore,
    entries: &[ModelEntry],
    engine_args: &EngineArgs,
    engine_section: &EngineSection,
    pull: bool,
    options: ServerOptions,
) -> Result<AppState> {
    let mut chat = Vec::new();
    let mut embed = Vec::new();
    for entry in entries {
        let resolved = resolve(store, entry.model(), pull)?;
        let (name, sections): (String, Vec<&EngineSection>) = match entry {
            ModelEntry::Name(_) => (resolved.name.clone(), vec![engine_section]),
            ModelEntry::Detailed(d) => (
                d.name.clone().unwrap_or_else(|| resolved.name.clone()),
                vec![&d.engine, engine_section],
            ),
        };
        match resolved.kind {
            ModelKind::Chat => {
                let cfg = engine_config(resolved.path.clone(), name, engine_args, &sections);
                let engine = Engine::load(cfg)
                    .with_context(|| format!("loading {}", resolved.path.display()))?;
                chat.push(engine);
            }
            ModelKind::Embedding => {
                let e = Embedder::load(&resolved.path)
                    .with_context(|| format!("loading {}", resolved.path.display()))?;
                tracing::info!(model = %name, dim = e.dim(), "embedding model loaded");
                embed.push(EmbedModel {
                    name,
                    embedder: Arc::new(e),
                    loaded_at: unix_now(),
                });
            }
        }
    }
    Ok(AppState::new(chat, embed, options))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let host = args
        .host
        .clone()
        .or(cfg.server.host.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.or(cfg.server.port).unwrap_or(8080);
    let entries: Vec<ModelEntry> = if !args.models.is_empty() {
        args.models
            .iter()
            .map(|m| ModelEntry::Name(m.clone()))
            .collect()
    } else if !cfg.models.is_empty() {
        cfg.models
    } else {
        DEFAULT_MODELS
            .iter()
            .map(|m| ModelEntry::Name((*m).to_string()))
            .collect()
    };
    if entries.is_empty() {
        bail!("no models to serve");
    }
    let defaults = ServerOptions::default();
    let options = ServerOptions {
        drop_unknown_params: args.drop_unknown_params
            || cfg.server.drop_unknown_params.unwrap_or(false),
        max_body_bytes: cfg.server.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        ..defaults
    };
    let store = ModelStore::from_env();
    let state = load_state(
        &store,
        &entries,
        &args.engine,
        &cfg.engine,
        args.pull,
        options,
    )?;
    let state = Arc::new(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr()?;
        // Machine-readable line for scripts and tests that start with --port 0.
        println!("listening on http://{addr}");
        eprintln!(
            "tandem serving {} on http://{addr}",
            state.model_ids().join(", ")
        );
        tandem_server::serve(listener, state, shutdown_signal()).await?;
        Ok::<(), anyhow::Error>(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
