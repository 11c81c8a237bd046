//! `tandem route --explain "text"`: the routing decision for a message, without generating.

use crate::serve::{EngineArgs, load_models, local_entries};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_models::ModelStore;
use tandem_server::gateway::{self, RequestMeta};
use tandem_server::runtime::Runtime;
use tandem_types::openai::{ChatMessage, ChatRequest};

#[derive(Args, Debug)]
pub struct RouteArgs {
    /// The user message to route.
    #[arg(long)]
    explain: String,
    /// Configuration (default: the built-in one).
    #[arg(long, short = 'c', env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Requested model (`auto` = routed by the policy).
    #[arg(long, default_value = "auto")]
    model: String,
    /// A system message to put before it.
    #[arg(long)]
    system: Option<String>,
    /// Request header `name: value` (repeatable), e.g. `x-tandem-latency-budget-ms: 500`.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print a short summary instead of the JSON document.
    #[arg(long)]
    brief: bool,
    /// Pull catalog models that are missing.
    #[arg(long)]
    pull: bool,
}

pub fn run(args: RouteArgs) -> Result<()> {
    let (cfg, _) = crate::config::load_or_default(args.config.as_deref())?;
    if args.explain.trim().is_empty() {
        bail!("--explain needs a non-empty message");
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("--header `{h}`: expected `name: value`"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }

    // Load what deciding needs: the classifier's embedding model and the local model whose
    // tokenizer counts prompt tokens. Not the other chat models.
    let wanted: Vec<&str> = [cfg.embedding_model.as_deref(), cfg.fallback_local()]
        .into_iter()
        .flatten()
        .collect();
    let entries: Vec<_> = local_entries(&cfg)
        .into_iter()
        .filter(|e| wanted.contains(&e.name.as_str()))
        .collect();
    let store = ModelStore::from_env();
    let engine_args = EngineArgs {
        ctx_size: Some(2048),
        parallel: Some(1),
        ..EngineArgs::default()
    };
    let (chat, embed) = load_models(&store, &entries, &engine_args, &cfg.engine, args.pull)?;
    let chat_map: BTreeMap<_, _> = chat
        .iter()
        .map(|e| (e.info().name.clone(), e.clone()))
        .collect();
    let embed_map: BTreeMap<_, _> = embed.iter().map(|m| (m.name.clone(), m.clone())).collect();
    let token_engine = cfg.fallback_local().and_then(|m| chat_map.get(m)).cloned();
    let rt = Arc::new(Runtime::for_decisions(cfg, &chat_map, &embed_map).map_err(|e| anyhow!(e))?);
    let meta = RequestMeta {
        headers,
        start: std::time::Instant::now(),
        ts_ms: gateway::now_ms(),
    };
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
            name: None,
            ..Default::default()
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: args.explain.clone(),
        name: None,
        ..Default::default()
    });
    let req = ChatRequest::new(args.model.clone(), messages);

    let rtm = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let doc = rtm.block_on(async {
        let p = gateway::prepare_with(rt, token_engine, &req, &meta, true)
            .await
            .map_err(|e| anyhow!("{}", e.message))?;
        let overhead = meta.start.elapsed().as_secs_f64() * 1000.0;
        Ok::<_, anyhow::Error>(gateway::explanation(&p, &req, overhead))
    })?;
    if args.brief {
        let cat = &doc["category"];
        println!(
            "route {}  →  {} ({})",
            doc["route"].as_str().unwrap_or("?"),
            doc["model"].as_str().unwrap_or("none"),
            doc["action"]["type"].as_str().unwrap_or("?")
        );
        if !cat.is_null() {
            println!(
                "category {} (score {:.2}, {})",
                cat["name"].as_str().unwrap_or("?"),
                cat["score"].as_f64().unwrap_or(0.0),
                cat["method"].as_str().unwrap_or("?")
            );
        }
        for r in doc["reasons"].as_array().into_iter().flatten() {
            println!("  - {}", r.as_str().unwrap_or_default());
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
