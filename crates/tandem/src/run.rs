//! `tandem run`: chat with a model in the terminal, streaming tokens as they come.

use crate::models::resolve;
use crate::serve::{EngineArgs, engine_config};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{BufRead, Write};
use tandem_engine::{Engine, GenEvent, GenerateRequest};
use tandem_models::{ModelKind, ModelStore};
use tandem_types::openai::{ChatMessage, SamplingParams};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Catalog name or GGUF path.
    model: String,
    /// Ask this and exit (otherwise: an interactive chat; `/bye` or Ctrl-D ends it).
    prompt: Option<String>,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Token budget per answer.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Pull the model if it is missing.
    #[arg(long)]
    pull: bool,
    /// Print timing after each answer.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let store = ModelStore::from_env();
    let m = resolve(&store, &args.model, args.pull)?;
    if m.kind != ModelKind::Chat {
        bail!(
            "{} is an embedding model; `tandem run` needs a chat model",
            m.name
        );
    }
    let mut ecfg = engine_config(m.path.clone(), m.name.clone(), &args.engine, &[]);
    ecfg.parallel = 1;
    let engine = Engine::load(ecfg).context("loading the model")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
            name: None,
            ..Default::default()
        });
    }
    let mut sampling = SamplingParams {
        temperature: args.temperature,
        seed: args.seed,
        ..Default::default()
    };
    if let Some(p) = &args.prompt {
        history.push(ChatMessage {
            role: "user".into(),
            content: p.clone(),
            name: None,
            ..Default::default()
        });
        rt.block_on(answer(
            &engine,
            &history,
            &sampling,
            args.max_tokens,
            args.verbose,
        ))?;
        return Ok(());
    }
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    if interactive {
        eprintln!(
            "chatting with {} — /bye to quit, /clear to forget the conversation",
            engine.info().name
        );
    }
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!(">>> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/bye" | "/exit" | "/quit" => break,
            "/clear" => {
                history.retain(|m| m.role == "system");
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage {
            role: "user".into(),
            content: text.to_string(),
            name: None,
            ..Default::default()
        });
        match rt.block_on(answer(
            &engine,
            &history,
            &sampling,
            args.max_tokens,
            args.verbose,
        )) {
            Ok(reply) => history.push(ChatMessage {
                role: "assistant".into(),
                content: reply,
                name: None,
                ..Default::default()
            }),
            Err(e) => {
                eprintln!("error: {e:#}");
                history.pop();
            }
        }
        // Later turns stay reproducible but not identical to the first.
        sampling.seed = sampling.seed.map(|s| s.wrapping_add(1));
    }
    Ok(())
}

async fn answer(
    engine: &Engine,
    history: &[ChatMessage],
    sampling: &SamplingParams,
    max_tokens: Option<u32>,
    verbose: bool,
) -> Result<String> {
    let prompt = engine.chat_prompt(history)?;
    let mut rx = engine.generate(GenerateRequest {
        prompt,
        sampling: sampling.clone(),
        max_tokens,
        logprobs: None,
        constraint: None,
    })?;
    let mut out = std::io::stdout();
    let mut reply = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Token { text, .. } => {
                reply.push_str(&text);
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            GenEvent::Done(d) => {
                writeln!(out)?;
                if verbose {
                    eprintln!(
                        "[{} prompt tokens ({} cached) in {:.2}s, {} tokens in {:.2}s = {:.1} tok/s, finish: {}]",
                        d.prompt_tokens,
                        d.cached_tokens,
                        d.prompt_secs,
                        d.completion_tokens,
                        d.gen_secs,
                        if d.gen_secs > 0.0 {
                            (d.completion_tokens.saturating_sub(1)) as f64 / d.gen_secs
                        } else {
                            0.0
                        },
                        d.finish_reason.as_str()
                    );
                }
                return Ok(reply);
            }
            GenEvent::Error(e) => bail!(e),
        }
    }
    bail!("the engine stopped")
}
