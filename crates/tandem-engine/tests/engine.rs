//! The engine with the real SmolLM2-135M, without HTTP.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use tandem_engine::{Engine, EngineConfig, FinishReason, GenEvent, GenerateRequest};
use tandem_types::openai::{ChatMessage, SamplingParams};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let path = tandem_models::ModelStore::from_env()
            .resolve("smollm2-135m")
            .unwrap_or_else(|e| panic!("{e}: run `make test-models`"))
            .path;
        let mut c = EngineConfig::new(path, "smollm2-135m");
        c.threads = Some(2);
        c.parallel = 2;
        c.ctx_size = 2048;
        Engine::load(c).unwrap()
    })
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
        name: None,
        ..Default::default()
    }
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ..Default::default()
    }
}

async fn generate(prompt: Vec<i32>, max_tokens: u32) -> (String, tandem_engine::DoneInfo) {
    let mut rx = engine()
        .generate(GenerateRequest {
            prompt,
            sampling: greedy(),
            max_tokens: Some(max_tokens),
            logprobs: None,
            constraint: None,
        })
        .unwrap();
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Token { text: t, .. } => text.push_str(&t),
            GenEvent::Done(d) => return (text, d),
            GenEvent::Error(e) => panic!("{e}"),
        }
    }
    panic!("stream ended without Done")
}

#[test]
fn info_and_template() {
    let e = engine();
    let info = e.info();
    assert_eq!(info.arch, "llama");
    assert_eq!(info.n_vocab, 49152);
    assert_eq!(info.max_request_tokens, 1024);
    let text = e
        .render_chat(&[msg("system", "Be brief."), msg("user", "Hi")])
        .unwrap();
    assert!(text.contains("<|im_start|>user\nHi<|im_end|>"), "{text}");
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
    // Special tokens in the rendered template are parsed as single tokens.
    let toks = e.chat_prompt(&[msg("user", "Hi")]).unwrap();
    let im_start = e.tokenize("<|im_start|>", false);
    assert_eq!(im_start.len(), 1);
    assert!(toks.contains(&im_start[0]));
    assert!(!e.eog_tokens().is_empty());
}

#[test]
fn detokenize_roundtrips_cjk() {
    let e = engine();
    let s = "Hello 台灣 — ünïcödé";
    assert_eq!(e.detokenize(&e.tokenize(s, false)), s);
}

#[tokio::test]
async fn exact_budget_and_prefix_cache() {
    let e = engine();
    let conv = vec![msg("user", "Write a story about a lighthouse keeper.")];
    let prompt = e.chat_prompt(&conv).unwrap();
    let (text, d) = generate(prompt.clone(), 10).await;
    assert_eq!(d.completion_tokens, 10);
    assert_eq!(d.finish_reason, FinishReason::Length);
    assert_eq!(d.prompt_tokens as usize, prompt.len());
    // A follow-up turn shares the first turn's prefix: only the new part is computed.
    let mut conv2 = conv.clone();
    conv2.push(msg("assistant", &text));
    conv2.push(msg("user", "Continue."));
    let (_, d2) = generate(e.chat_prompt(&conv2).unwrap(), 4).await;
    assert!(
        d2.cached_tokens as usize >= prompt.len() - 1,
        "cached {} of {}",
        d2.cached_tokens,
        prompt.len()
    );
    // The same prompt again gives the same greedy text, cache or not.
    let (again, _) = generate(prompt, 10).await;
    assert_eq!(again, text);
}

#[tokio::test]
async fn errors_before_generation() {
    let e = engine();
    assert!(matches!(
        e.generate(GenerateRequest {
            prompt: vec![],
            sampling: greedy(),
            max_tokens: None,
            logprobs: None,
            constraint: None,
        }),
        Err(tandem_engine::EngineError::EmptyPrompt)
    ));
    assert!(matches!(
        e.generate(GenerateRequest {
            prompt: vec![1, 999_999],
            sampling: greedy(),
            max_tokens: None,
            logprobs: None,
            constraint: None,
        }),
        Err(tandem_engine::EngineError::InvalidToken { token: 999_999, .. })
    ));
    let long = vec![1; 1024];
    assert!(matches!(
        e.generate(GenerateRequest {
            prompt: long,
            sampling: greedy(),
            max_tokens: None,
            logprobs: None,
            constraint: None,
        }),
        Err(tandem_engine::EngineError::ContextLength { prompt: 1024, .. })
    ));
}
