//! Constrained decoding, measured on the bundled SLM (Qwen2.5-Coder-0.5B, 151k tokens):
//!
//! 1. Decode speed with a JSON-schema grammar active against unconstrained decoding, same
//!    prompt, same run, greedy, alternating reps; tokens/s between the first and the last
//!    generated token. Goal: constrained ≥ 0.9× unconstrained.
//! 2. Per-step cost of the two grammar engines on the same valid output over the full
//!    vocabulary: llguidance (what Tandem uses) against llama.cpp's GBNF sampler with the
//!    equivalent grammar.
//!
//! `cargo bench -p tandem-engine --bench grammar` (needs `tandem pull qwen2.5-coder-0.5b`).
//! `TANDEM_BENCH_REPS` (default 3) and `TANDEM_BENCH_TOKENS` (default 96) size it.

use serde_json::json;
use std::time::Instant;
use tandem_engine::{Engine, EngineConfig, GenEvent, GenerateRequest, GrammarSpec};
use tandem_types::openai::{ChatMessage, SamplingParams};

/// The schema of part 2 and its GBNF equivalent (Python `json.dumps` layout, as Tandem's
/// llguidance grammars use).
const GBNF: &str = r#"root ::= "{" "\"name\": " string ", \"age\": " integer ", \"tags\": [" (string (", " string)*)? "]}"
string ::= "\"" ([^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]))* "\""
integer ::= "-"? ("0" | [1-9] [0-9]*)
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Greedy generation of up to `max` tokens; (tokens/s between first and last, tokens,
/// mask µs per constrained step).
fn decode(
    rt: &tokio::runtime::Runtime,
    e: &Engine,
    prompt: &[i32],
    max: u32,
    grammar: Option<&GrammarSpec>,
) -> (f64, usize, f64) {
    let constraint = grammar.map(|g| e.compile_grammar(g, None).expect("grammar compiles"));
    let mut rx = e
        .generate(GenerateRequest {
            prompt: prompt.to_vec(),
            sampling: SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            max_tokens: Some(max),
            logprobs: None,
            constraint,
        })
        .expect("generation starts");
    rt.block_on(async {
        let mut times = Vec::new();
        let mut mask = 0.0;
        while let Some(ev) = rx.recv().await {
            match ev {
                GenEvent::Token { token: Some(_), .. } => times.push(Instant::now()),
                GenEvent::Token { .. } => {}
                GenEvent::Done(d) => {
                    if d.constrained_steps > 0 {
                        mask = d.mask_secs * 1e6 / d.constrained_steps as f64;
                    }
                    break;
                }
                GenEvent::Error(e) => panic!("{e}"),
            }
        }
        let (Some(a), Some(b)) = (times.first(), times.last()) else {
            panic!("no tokens generated");
        };
        let n = times.len().saturating_sub(1) as f64;
        (
            n / b.duration_since(*a).as_secs_f64().max(1e-9),
            times.len(),
            mask,
        )
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = match tandem_models::ModelStore::from_env().resolve("qwen2.5-coder-0.5b") {
        Ok(m) => m.path,
        Err(e) => {
            eprintln!("grammar bench: {e}; run `tandem pull qwen2.5-coder-0.5b` first");
            std::process::exit(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cfg = EngineConfig::new(path, "qwen2.5-coder-0.5b");
    cfg.threads = Some(threads);
    cfg.parallel = 1;
    cfg.ctx_size = 2048;
    cfg.prompt_cache = false;
    let e = Engine::load(cfg).expect("model loads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reps = env_usize("TANDEM_BENCH_REPS", 3);
    let max = env_usize("TANDEM_BENCH_TOKENS", 96) as u32;

    // 1. Decode speed.
    let schema = json!({"type": "object", "properties": {
        "cities": {"type": "array", "items": {"type": "string"}, "minItems": 40}},
        "required": ["cities"]});
    let spec = GrammarSpec::JsonSchema(schema);
    let prompt = e
        .chat_prompt(&[ChatMessage::new(
            "user",
            "List 40 cities of Taiwan and Japan as JSON: {\"cities\": [...]}.",
        )])
        .expect("prompt");
    decode(&rt, &e, &prompt, 8, None); // warm-up
    decode(&rt, &e, &prompt, 8, Some(&spec));
    let (mut free, mut constrained, mut masks) = (Vec::new(), Vec::new(), Vec::new());
    let mut counts = (0, 0);
    for _ in 0..reps {
        let (tps, n, _) = decode(&rt, &e, &prompt, max, None);
        free.push(tps);
        counts.0 = n;
        let (tps, n, mask) = decode(&rt, &e, &prompt, max, Some(&spec));
        constrained.push(tps);
        masks.push(mask);
        counts.1 = n;
    }
    let (free, constrained) = (median(free), median(constrained));
    println!("decode, {threads} threads, {reps} reps (median), greedy:");
    println!(
        "  unconstrained        {free:>7.1} tok/s ({} tokens)",
        counts.0
    );
    println!(
        "  JSON schema grammar  {constrained:>7.1} tok/s ({} tokens), mask {:.0} µs/step",
        counts.1,
        median(masks)
    );
    println!(
        "  ratio                {:>7.3}× (goal ≥ 0.9×)",
        constrained / free
    );

    // 2. Per-step cost, llguidance vs GBNF, on one valid output.
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "age", "tags"], "additionalProperties": false});
    let text =
        r#"{"name": "王小明 (Wang Hsiao-ming)", "age": 42, "tags": ["vip", "claim-2024", "台北"]}"#;
    let tokens = e.tokenize(text, false);
    let mut llg = Vec::new();
    let mut gbnf = Vec::new();
    for _ in 0..reps {
        let c = e
            .measure_grammar_steps(GBNF, &schema, &tokens)
            .expect("both grammars accept the output");
        llg.push(c.llguidance_us);
        gbnf.push(c.gbnf_us);
    }
    let (llg, gbnf) = (median(llg), median(gbnf));
    println!(
        "per-step grammar cost over {} tokens of vocabulary, {} steps (median of {reps}):",
        e.info().n_vocab,
        tokens.len()
    );
    println!("  llguidance (Tandem)  {llg:>9.1} µs/step");
    println!("  llama.cpp GBNF       {gbnf:>9.1} µs/step");
    println!("  GBNF / llguidance    {:>9.1}×", gbnf / llg);
}
