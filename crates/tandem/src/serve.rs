//! `tandem serve`.

use crate::models::resolve;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_engine::{Engine, EngineConfig};
use tandem_models::{ModelKind, ModelStore};
use tandem_policy::config::{Config, EngineSection, ModelSource};
use tandem_server::runtime::Runtime;
use tandem_server::state::EmbedModel;
use tandem_server::{AppState, ServerOptions};

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
    /// YAML configuration (models, routes, policy); default: the built-in hybrid table.
    /// Reloaded when the file changes or on SIGHUP.
    #[arg(long, short = 'c', env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "TANDEM_HOST")]
    host: Option<String>,
    /// Port to bind (0 picks a free one).
    #[arg(long, short = 'p', env = "TANDEM_PORT")]
    port: Option<u16>,
    /// Serve exactly these local models (catalog names or paths) without routing rules,
    /// instead of the configuration's models; `auto` is the first chat model.
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
    /// Ledger database (SQLite), or `off`. Default: $TANDEM_HOME/ledger.sqlite.
    #[arg(long, env = "TANDEM_LEDGER")]
    ledger: Option<String>,
    /// On SIGTERM / Ctrl-C: seconds to let requests in flight finish (new ones get 503)
    /// before stopping.
    #[arg(long, env = "TANDEM_DRAIN_TIMEOUT", default_value_t = 30)]
    drain_timeout: u64,
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

/// A local model to load: served name, catalog name or path, engine overrides.
pub struct LocalEntry {
    pub name: String,
    pub source: String,
    pub engine: EngineSection,
}

/// The local models a configuration names.
pub fn local_entries(cfg: &Config) -> Vec<LocalEntry> {
    cfg.models
        .iter()
        .filter_map(|m| match &m.source {
            ModelSource::Local { source, engine } => Some(LocalEntry {
                name: m.name.clone(),
                source: source.clone(),
                engine: engine.clone(),
            }),
            ModelSource::Remote(_) => None,
        })
        .collect()
}

/// Load the local models.
pub fn load_models(
    store: &ModelStore,
    entries: &[LocalEntry],
    engine_args: &EngineArgs,
    engine_section: &EngineSection,
    pull: bool,
) -> Result<(Vec<Engine>, Vec<EmbedModel>)> {
    let mut chat = Vec::new();
    let mut embed = Vec::new();
    for entry in entries {
        let resolved = resolve(store, &entry.source, pull)?;
        match resolved.kind {
            ModelKind::Chat => {
                let cfg = engine_config(
                    resolved.path.clone(),
                    entry.name.clone(),
                    engine_args,
                    &[&entry.engine, engine_section],
                );
                let engine = Engine::load(cfg)
                    .with_context(|| format!("loading {}", resolved.path.display()))?;
                chat.push(engine);
            }
            ModelKind::Embedding => {
                let e = EmbedModel::load(&entry.name, &resolved.path, unix_now())
                    .with_context(|| format!("loading {}", resolved.path.display()))?;
                tracing::info!(
                    model = %entry.name,
                    dim = e.embedder.dim(),
                    classifier_weights = %e.classifier_embedder.weight_precision(),
                    "embedding model loaded"
                );
                embed.push(e);
            }
        }
    }
    Ok((chat, embed))
}

/// The knowledge bases, searched with the configuration's embedding model (`rag.embedding_model`,
/// else the classifier's, else the first loaded one). None without any embedding model.
pub fn kb_service(cfg: &Config, embed: &[EmbedModel]) -> Option<Arc<tandem_server::kb::KbService>> {
    let wanted = cfg
        .rag
        .embedding_model
        .as_ref()
        .or(cfg.embedding_model.as_ref());
    let m = wanted
        .and_then(|w| embed.iter().find(|m| &m.name == w))
        .or_else(|| embed.first())?;
    let id = match cfg.model(&m.name).map(|s| &s.source) {
        Some(ModelSource::Local { source, .. }) => source.clone(),
        _ => m.name.clone(),
    };
    let e = tandem_kb::LocalEmbedder::from_shared(m.embedder.clone(), id);
    let manager = tandem_kb::KbManager::new(crate::kb::kb_dir(), Arc::new(e));
    let loader: Box<tandem_server::kb::EmbedLoader> =
        Box::new(|id: &str| crate::kb::load_embedder(id).map_err(|e| format!("{e:#}")));
    Some(Arc::new(
        tandem_server::kb::KbService::new(manager).with_loader(loader),
    ))
}

/// Everything `serve` loads for `cfg`, without a listener or a ledger (for `tandem eval`).
pub fn local_state(cfg: Config, pull: bool) -> Result<Arc<AppState>> {
    let store = ModelStore::from_env();
    let entries = local_entries(&cfg);
    let (chat, embed) = load_models(&store, &entries, &EngineArgs::default(), &cfg.engine, pull)?;
    let kb = kb_service(&cfg, &embed);
    let state = AppState::with_config(chat, embed, ServerOptions::default(), cfg, None)
        .map_err(|(e, ..)| anyhow::anyhow!("configuration: {e}"))?;
    Ok(Arc::new(match kb {
        Some(kb) => state.with_kb(kb),
        None => state,
    }))
}

/// The ledger file a `server.ledger` / `--ledger` setting names: `None` when it turns the
/// ledger off (`off`, `none`, `false`), else the path (default
/// `$TANDEM_HOME/ledger.sqlite`).
pub fn ledger_path(setting: Option<&str>) -> Option<PathBuf> {
    match setting {
        Some("off") | Some("none") | Some("false") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(tandem_models::tandem_home().join("ledger.sqlite")),
    }
}

fn open_ledger(setting: Option<&str>) -> Result<Option<tandem_ledger::Ledger>> {
    let Some(path) = ledger_path(setting) else {
        return Ok(None);
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let l = tandem_ledger::Ledger::open(&path)
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    tracing::info!(path = %path.display(), "ledger");
    Ok(Some(l))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let (mut cfg, cfg_label) = crate::config::load_or_default(args.config.as_deref())?;
    let host = args
        .host
        .clone()
        .or(cfg.server.host.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.or(cfg.server.port).unwrap_or(8080);
    let defaults = ServerOptions::default();
    let options = ServerOptions {
        drop_unknown_params: args.drop_unknown_params
            || cfg.server.drop_unknown_params.unwrap_or(false),
        max_body_bytes: cfg.server.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        ..defaults
    };
    let store = ModelStore::from_env();
    let entries: Vec<LocalEntry> = if args.models.is_empty() {
        local_entries(&cfg)
    } else {
        args.models
            .iter()
            .map(|m| LocalEntry {
                name: store
                    .resolve(m)
                    .map(|r| r.name)
                    .unwrap_or_else(|_| m.clone()),
                source: m.clone(),
                engine: EngineSection::default(),
            })
            .collect()
    };
    // A gateway over remote models only (no local model) is a valid deployment.
    if entries.is_empty() && cfg.models.is_empty() {
        bail!("no models to serve: the configuration defines none and no --model was given");
    }
    let (chat, embed) = load_models(&store, &entries, &args.engine, &cfg.engine, args.pull)?;
    let mut cfg_label = cfg_label;
    if !args.models.is_empty() {
        cfg_label = "--model (local models, no routing rules)".to_string();
        let chat_names: Vec<String> = chat.iter().map(|e| e.info().name.clone()).collect();
        let embed_names: Vec<String> = embed.iter().map(|m| m.name.clone()).collect();
        let server = cfg.server.clone();
        cfg = Runtime::local_only_config(&chat_names, &embed_names);
        cfg.server = server;
    }
    let ledger = open_ledger(args.ledger.as_deref().or(cfg.server.ledger.as_deref()))?;
    let kb = kb_service(&cfg, &embed);
    let state = AppState::with_config(chat, embed, options, cfg, ledger)
        .map_err(|(e, ..)| anyhow::anyhow!("configuration ({cfg_label}): {e}"))?;
    let state = Arc::new(match kb {
        Some(kb) => state.with_kb(kb),
        None => state,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let watch = if args.models.is_empty() {
        args.config.clone()
    } else {
        None
    };
    let drain_timeout = std::time::Duration::from_secs(args.drain_timeout);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr()?;
        if let Some(path) = watch {
            tandem_server::reload::spawn_watcher(
                state.clone(),
                path,
                std::time::Duration::from_secs(1),
            );
        }
        // Machine-readable line for scripts and tests that start with --port 0.
        println!("listening on http://{addr}");
        eprintln!(
            "tandem serving {} on http://{addr} (configuration: {cfg_label})",
            state.model_ids().join(", ")
        );
        let ledger = state.ledger.clone();
        tandem_server::serve_draining(listener, state, shutdown_signal(), drain_timeout).await?;
        if let Some(l) = ledger
            && let Err(e) = l.flush()
        {
            tracing::warn!(error = %e, "ledger flush at shutdown failed");
        }
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
