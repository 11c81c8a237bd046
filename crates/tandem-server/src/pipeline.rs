//! From validated requests to engine generations to OpenAI response bodies and stream chunks.
//! No sockets here: everything is testable with an engine and a channel.

use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tandem_engine::toolcall::{self, ToolCallParser, ToolEvent, ToolGrammar};
use tandem_engine::{
    Constraint, DoneInfo, Engine, EngineError, GenEvent, GenStream, GenerateRequest, GrammarSpec,
    TokenLogprobs,
};
use tandem_types::ApiError;
use tandem_types::openai::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatRequest, ChoiceLogprobs, ChunkChoice,
    ChunkDelta, Completion, CompletionChoice, CompletionRequest, LegacyLogprobs, Prompt,
    ResponseMessage, SamplingParams, TokenLogprob, TopLogprob, Usage,
};
use tandem_types::tools::{FunctionCallDelta, ResponseFormat, ToolCall, ToolCallDelta};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh response id with `prefix` (`chatcmpl`, `cmpl`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Observes token timing of one request for metrics.
struct Observer {
    model: String,
    start: Instant,
    first: bool,
    last: Option<Instant>,
}

impl Observer {
    fn new(model: &str, start: Instant) -> Self {
        Observer {
            model: model.to_string(),
            start,
            first: false,
            last: None,
        }
    }

    fn token(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last {
            crate::metrics::inter_token(&self.model, now.duration_since(last).as_secs_f64());
        }
        self.last = Some(now);
    }

    fn done(&mut self, d: &DoneInfo) {
        if !self.first {
            self.first = true;
            crate::metrics::first_token(
                &self.model,
                self.start.elapsed().as_secs_f64() - d.gen_secs,
                d.queue_secs,
            );
        }
        crate::metrics::tokens(&self.model, d.prompt_tokens, d.completion_tokens);
    }
}

/// Start one generation per (prompt, choice). Seeds are offset per choice so `n` choices
/// differ yet stay reproducible; each choice gets its own copy of the grammar state.
fn start_all(
    engine: &Engine,
    prompts: &[Vec<i32>],
    n: u32,
    sampling: &SamplingParams,
    max_tokens: Option<u32>,
    logprobs: Option<u32>,
    constraint: Option<&Constraint>,
) -> Result<Vec<GenStream>, ApiError> {
    let mut out = Vec::with_capacity(prompts.len() * n as usize);
    for p in prompts {
        for j in 0..n {
            let mut s = sampling.clone();
            s.seed = s.seed.map(|x| x.wrapping_add(u64::from(j)));
            out.push(engine.generate(GenerateRequest {
                prompt: p.clone(),
                sampling: s,
                max_tokens,
                logprobs,
                constraint: constraint.cloned(),
            })?);
        }
    }
    Ok(out)
}

/// The schema a structured-output request's answer must follow.
fn answer_schema(rf: &ResponseFormat) -> Option<serde_json::Value> {
    match rf {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(serde_json::json!({"type": "object"})),
        ResponseFormat::JsonSchema { schema, .. } => Some(schema.clone()),
    }
}

fn schema_error(param: &str, e: EngineError) -> ApiError {
    let msg = match e {
        EngineError::Grammar(m) => m,
        other => other.to_string(),
    };
    ApiError::invalid(
        param,
        format!("This schema cannot be enforced by the local model's constrained decoding: {msg}"),
    )
    .with_code("unsupported_schema")
}

/// The grammar a chat request's output must follow on the local engine: the tool-call
/// grammar (lazy under `tool_choice: auto`) when tools may be called, else the response
/// format's schema; `None` for free text. A schema that cannot be enforced is a 400 naming
/// the parameter that holds it and the keyword.
pub fn chat_constraint(engine: &Engine, req: &ChatRequest) -> Result<Option<Constraint>, ApiError> {
    let text_schema = answer_schema(&req.response_format);
    if req.wants_tools() {
        let g = toolcall::grammar(
            &req.tools,
            &req.tool_choice,
            req.parallel_tool_calls,
            text_schema.as_ref(),
        );
        let compiled = match &g {
            ToolGrammar::Strict(spec) => engine.compile_grammar(spec, None),
            ToolGrammar::Lazy(triggers) => engine.compile_lazy(triggers),
        };
        return compiled.map(Some).map_err(|e| blame_schema(engine, req, e));
    }
    match text_schema {
        None => Ok(None),
        Some(schema) => engine
            .compile_grammar(&GrammarSpec::JsonSchema(schema), None)
            .map(Some)
            .map_err(|e| schema_error("response_format.json_schema.schema", e)),
    }
}

/// Which schema of a tool request failed to compile: each function's parameters alone,
/// then the response format.
fn blame_schema(engine: &Engine, req: &ChatRequest, e: EngineError) -> ApiError {
    for (i, t) in req.tools.iter().enumerate() {
        let spec = GrammarSpec::JsonSchema(t.function.parameters.clone());
        if let Err(e) = engine.compile_grammar(&spec, None) {
            return schema_error(&format!("tools[{i}].function.parameters"), e);
        }
    }
    if let Some(schema) = answer_schema(&req.response_format)
        && let Err(e) = engine.compile_grammar(&GrammarSpec::JsonSchema(schema), None)
    {
        return schema_error("response_format.json_schema.schema", e);
    }
    schema_error("tools", e)
}

/// A fresh tool-call id.
fn call_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &u[..24])
}

/// The message of a finished choice: text, or (when tools were offered) text and calls.
fn answer_message(req: &ChatRequest, text: String) -> ResponseMessage {
    if !req.wants_tools() {
        return ResponseMessage::text(text);
    }
    let (content, calls) = toolcall::parse_output(&text);
    // A call to a function that was not offered (possible only where no grammar held the
    // model) is not a call: the whole output is the answer.
    if calls
        .iter()
        .any(|(name, _)| !req.tools.iter().any(|t| &t.function.name == name))
    {
        return ResponseMessage::text(text);
    }
    ResponseMessage {
        role: "assistant".into(),
        content,
        tool_calls: calls
            .into_iter()
            .map(|(name, args)| ToolCall::function(call_id(), name, args))
            .collect(),
    }
}

/// `finish_reason` of a choice: `tool_calls` when it ended normally with calls.
fn finish_reason(reason: &'static str, calls: bool) -> &'static str {
    match (reason, calls) {
        ("stop", true) => "tool_calls",
        (r, _) => r,
    }
}

/// A finished choice.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Generated text.
    pub text: String,
    /// Per-token logprobs (when requested).
    pub logprobs: Vec<TokenLogprobs>,
    /// Summary.
    pub done: DoneInfo,
}

async fn collect(mut rx: GenStream, obs: &mut Observer) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut lps = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Token {
                text: t,
                token,
                logprobs,
            } => {
                if token.is_some() {
                    obs.token();
                }
                text.push_str(&t);
                if let Some(lp) = logprobs {
                    lps.push(lp);
                }
            }
            GenEvent::Done(done) => {
                obs.done(&done);
                return Ok(Collected {
                    text,
                    logprobs: lps,
                    done,
                });
            }
            GenEvent::Error(e) => return Err(ApiError::internal(e)),
        }
    }
    Err(ApiError::internal(
        "the engine stopped before finishing the generation",
    ))
}

/// Collect every choice of a non-streaming request concurrently (they decode together).
async fn collect_all(
    streams: Vec<GenStream>,
    model: &str,
    start: Instant,
) -> Vec<Result<Collected, ApiError>> {
    futures::future::join_all(streams.into_iter().map(|rx| async move {
        let mut obs = Observer::new(model, start);
        collect(rx, &mut obs).await
    }))
    .await
}

fn chat_logprobs(lps: &[TokenLogprobs]) -> ChoiceLogprobs {
    ChoiceLogprobs {
        content: lps
            .iter()
            .map(|t| TokenLogprob {
                token: t.text.clone(),
                logprob: t.logprob,
                bytes: t.bytes.clone(),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|(s, b, l)| TopLogprob {
                        token: s.clone(),
                        logprob: *l,
                        bytes: b.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Start every choice of a chat request (prompt, grammar, generations); returns the streams
/// and the prompt's token count.
fn start_chat(engine: &Engine, req: &ChatRequest) -> Result<(Vec<GenStream>, u32), ApiError> {
    let prompt = chat_prompt(engine, req)?;
    let constraint = chat_constraint(engine, req)?;
    let prompt_tokens = prompt.len() as u32;
    let lp = req.logprobs.then_some(req.top_logprobs);
    let streams = start_all(
        engine,
        &[prompt],
        req.n,
        &req.sampling,
        req.max_tokens,
        lp,
        constraint.as_ref(),
    )?;
    Ok((streams, prompt_tokens))
}

/// Tokenize a chat request's conversation (offering its tools unless `tool_choice` is
/// `none`).
pub fn chat_prompt(engine: &Engine, req: &ChatRequest) -> Result<Vec<i32>, ApiError> {
    let messages = with_schema_hint(req);
    if req.wants_tools() {
        Ok(engine.chat_prompt_with_tools(&messages, &req.tools)?)
    } else {
        Ok(engine.chat_prompt(&messages)?)
    }
}

/// The conversation the local model sees. For `json_schema` the schema is also shown to
/// the model in a system message: the grammar guarantees the shape, but a small model
/// fills the fields far better when it can read what they are (their descriptions,
/// formats, bounds).
fn with_schema_hint(
    req: &ChatRequest,
) -> std::borrow::Cow<'_, [tandem_types::openai::ChatMessage]> {
    let ResponseFormat::JsonSchema { name, schema, .. } = &req.response_format else {
        return std::borrow::Cow::Borrowed(&req.messages);
    };
    let hint =
        format!("Answer with one JSON value (`{name}`) that follows this JSON schema:\n{schema}");
    let mut msgs = req.messages.clone();
    match msgs.first_mut() {
        Some(m) if m.role == "system" || m.role == "developer" => {
            m.content = format!("{}\n\n{hint}", m.content);
        }
        _ => msgs.insert(0, tandem_types::openai::ChatMessage::new("system", hint)),
    }
    std::borrow::Cow::Owned(msgs)
}

/// Answer a non-streaming chat completion.
pub async fn chat_completion(
    engine: &Engine,
    req: &ChatRequest,
    fingerprint: &str,
) -> Result<ChatCompletion, ApiError> {
    let start = Instant::now();
    let (streams, _) = start_chat(engine, req)?;
    let model = engine.info().name.clone();
    let results = collect_all(streams, &model, start).await;
    let mut choices = Vec::with_capacity(results.len());
    let mut usage = Usage::default();
    for (i, r) in results.into_iter().enumerate() {
        let c = r?;
        usage.prompt_tokens = c.done.prompt_tokens;
        usage.completion_tokens += c.done.completion_tokens;
        let message = answer_message(req, c.text);
        let reason = finish_reason(
            c.done.finish_reason.as_str(),
            !message.tool_calls.is_empty(),
        );
        choices.push(ChatChoice {
            index: i as u32,
            message,
            logprobs: req.logprobs.then(|| chat_logprobs(&c.logprobs)),
            finish_reason: Some(reason.into()),
        });
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok(ChatCompletion {
        id: new_id("chatcmpl"),
        object: "chat.completion".into(),
        created: now_secs(),
        model,
        system_fingerprint: fingerprint.to_string(),
        choices,
        usage,
        tandem: None,
    })
}

/// One server-sent event payload: a JSON chunk, an error object, or `[DONE]`.
pub type SsePayload = String;

fn merged(streams: Vec<GenStream>) -> impl futures::Stream<Item = (usize, GenEvent)> + Unpin {
    futures::stream::select_all(streams.into_iter().enumerate().map(|(i, rx)| {
        UnboundedReceiverStream::new(rx)
            .map(move |ev| (i, ev))
            .boxed()
    }))
}

/// An error as the payload of an SSE event (`{"error": {...}}`), for failures after a
/// stream started.
pub fn error_payload(e: &ApiError) -> String {
    serde_json::to_string(&e.body()).unwrap_or_else(|_| "{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}".into())
}

/// What a stream's renderer is asked to turn into one SSE payload.
enum StreamItem {
    /// New text (and its logprobs) of choice `index`.
    Token {
        index: usize,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    /// Choice `index` finished.
    Finish { index: usize, reason: &'static str },
    /// Totals, after every choice finished (`stream_options.include_usage`).
    Usage(Usage),
}

/// How a stream ended, for accounting (the ledger).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOutcome {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Tokens generated over all choices.
    pub completion_tokens: u32,
    /// Milliseconds from the start to the first generated text.
    pub ttft_ms: Option<f64>,
    /// The error sent to the client, if the stream failed.
    pub error: Option<String>,
    /// The client went away before the end.
    pub cancelled: bool,
    /// Functions the first choice called, in order.
    pub tool_calls: Vec<String>,
}

/// Called once when a stream ends (normally, with an error, or cancelled).
pub type OnDone = Box<dyn FnOnce(StreamOutcome) + Send>;

/// Drive `streams` to the client: a task renders each event with `render`, sends the
/// `prelude` payloads first and `[DONE]` last, records metrics, and stops (cancelling the
/// generations) as soon as the receiver is dropped. `on_done` learns how it ended.
#[allow(clippy::too_many_arguments)]
fn spawn_stream(
    streams: Vec<GenStream>,
    model: String,
    start: Instant,
    prelude: Vec<SsePayload>,
    prompt_tokens: u32,
    include_usage: bool,
    mut render: impl FnMut(StreamItem) -> Vec<SsePayload> + Send + 'static,
    on_done: Option<OnDone>,
) -> mpsc::Receiver<SsePayload> {
    let (tx, rx) = mpsc::channel::<SsePayload>(256);
    let n = streams.len();
    tokio::spawn(async move {
        let mut outcome = StreamOutcome {
            prompt_tokens,
            ..StreamOutcome::default()
        };
        let finish = move |o: StreamOutcome| {
            if let Some(f) = on_done {
                f(o);
            }
        };
        for p in prelude {
            if tx.send(p).await.is_err() {
                outcome.cancelled = true;
                finish(outcome);
                return;
            }
        }
        let mut events = merged(streams);
        let mut obs: Vec<Observer> = (0..n).map(|_| Observer::new(&model, start)).collect();
        let mut remaining = n;
        let mut completion_tokens = 0;
        while remaining > 0 {
            let item = tokio::select! {
                _ = tx.closed() => {
                    outcome.completion_tokens = completion_tokens;
                    outcome.cancelled = true;
                    finish(outcome);
                    return;
                }
                item = events.next() => item,
            };
            let Some((index, ev)) = item else { break };
            let payloads = match ev {
                GenEvent::Token {
                    text,
                    token,
                    logprobs,
                } => {
                    if token.is_some() {
                        obs[index].token();
                    }
                    if text.is_empty() && logprobs.is_none() {
                        continue;
                    }
                    if outcome.ttft_ms.is_none() && !text.is_empty() {
                        outcome.ttft_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                    }
                    render(StreamItem::Token {
                        index,
                        text,
                        logprobs,
                    })
                }
                GenEvent::Done(d) => {
                    obs[index].done(&d);
                    remaining -= 1;
                    completion_tokens += d.completion_tokens;
                    render(StreamItem::Finish {
                        index,
                        reason: d.finish_reason.as_str(),
                    })
                }
                GenEvent::Error(e) => {
                    let _ = tx.send(error_payload(&ApiError::internal(e.clone()))).await;
                    outcome.completion_tokens = completion_tokens;
                    outcome.error = Some(e);
                    finish(outcome);
                    return;
                }
            };
            for payload in payloads {
                if tx.send(payload).await.is_err() {
                    outcome.completion_tokens = completion_tokens;
                    outcome.cancelled = true;
                    finish(outcome);
                    return;
                }
            }
        }
        outcome.completion_tokens = completion_tokens;
        if remaining > 0 {
            let e = ApiError::internal("the engine stopped before finishing the generation");
            let _ = tx.send(error_payload(&e)).await;
            outcome.error = Some(e.message);
            finish(outcome);
            return;
        }
        if include_usage {
            for p in render(StreamItem::Usage(Usage::new(
                prompt_tokens,
                completion_tokens,
            ))) {
                let _ = tx.send(p).await;
            }
        }
        let _ = tx.send("[DONE]".to_string()).await;
        finish(outcome);
    });
    rx
}

/// Start a streaming chat completion. Errors that happen before the first byte (bad model,
/// context too long, overload) are returned here so they become proper HTTP errors; later
/// ones arrive in the stream as `{"error": …}`. Dropping the receiver cancels generation.
pub fn chat_stream(
    engine: &Engine,
    req: &ChatRequest,
    fingerprint: &str,
    on_done: Option<OnDone>,
) -> Result<mpsc::Receiver<SsePayload>, ApiError> {
    let start = Instant::now();
    let (streams, prompt_tokens) = start_chat(engine, req)?;
    let model = engine.info().name.clone();
    let base = ChatCompletionChunk {
        id: new_id("chatcmpl"),
        object: "chat.completion.chunk".into(),
        created: now_secs(),
        model: model.clone(),
        system_fingerprint: fingerprint.to_string(),
        choices: Vec::new(),
        usage: None,
    };
    let chunk = move |choice: Option<ChunkChoice>, usage: Option<Usage>| {
        let mut c = base.clone();
        c.choices.extend(choice);
        c.usage = usage;
        serde_json::to_string(&c).unwrap_or_default()
    };
    let choice = |index: usize, delta: ChunkDelta, logprobs, finish: Option<&str>| ChunkChoice {
        index: index as u32,
        delta,
        logprobs,
        finish_reason: finish.map(str::to_string),
    };
    // The first chunk of every choice carries the role.
    let prelude = (0..streams.len())
        .map(|i| {
            let delta = ChunkDelta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                tool_calls: None,
            };
            chunk(Some(choice(i, delta, None, None)), None)
        })
        .collect();
    let want_lp = req.logprobs;
    // The names of the first choice's calls, for the ledger.
    let names: Arc<Mutex<Vec<String>>> = Arc::default();
    let on_done = on_done.map(|f| {
        let names = names.clone();
        Box::new(move |mut o: StreamOutcome| {
            o.tool_calls = std::mem::take(&mut *names.lock().unwrap_or_else(|e| e.into_inner()));
            f(o)
        }) as OnDone
    });
    let seen = names;
    // With tools offered, each choice's text goes through a tool-call parser.
    let mut parsers: Option<Vec<ToolCallParser>> = req
        .wants_tools()
        .then(|| (0..streams.len()).map(|_| ToolCallParser::new()).collect());
    let render = move |item: StreamItem| match item {
        StreamItem::Token {
            index,
            text,
            logprobs,
        } => {
            let lps = want_lp.then(|| chat_logprobs(&logprobs.into_iter().collect::<Vec<_>>()));
            let Some(parsers) = parsers.as_mut() else {
                let delta = ChunkDelta {
                    content: Some(text),
                    ..ChunkDelta::default()
                };
                return vec![chunk(Some(choice(index, delta, lps, None)), None)];
            };
            let events = parsers[index].push(&text);
            if index == 0 {
                note_calls(&seen, &events);
            }
            tool_chunks(events, lps)
                .into_iter()
                .map(|d| chunk(Some(choice(index, d.0, d.1, None)), None))
                .collect()
        }
        StreamItem::Finish { index, reason } => {
            let mut out = Vec::new();
            let mut calls = false;
            if let Some(parsers) = parsers.as_mut() {
                let events = parsers[index].finish();
                if index == 0 {
                    note_calls(&seen, &events);
                }
                out.extend(
                    tool_chunks(events, None)
                        .into_iter()
                        .map(|d| chunk(Some(choice(index, d.0, d.1, None)), None)),
                );
                calls = parsers[index].calls() > 0;
            }
            let reason = finish_reason(reason, calls);
            out.push(chunk(
                Some(choice(index, ChunkDelta::default(), None, Some(reason))),
                None,
            ));
            out
        }
        StreamItem::Usage(u) => vec![chunk(None, Some(u))],
    };
    Ok(spawn_stream(
        streams,
        model,
        start,
        prelude,
        prompt_tokens,
        req.include_usage,
        render,
        on_done,
    ))
}

fn note_calls(names: &Mutex<Vec<String>>, events: &[ToolEvent]) {
    let mut g = names.lock().unwrap_or_else(|e| e.into_inner());
    for e in events {
        if let ToolEvent::Start { name, .. } = e {
            g.push(name.clone());
        }
    }
}

/// Deltas for parser events: text as `content`, a call's first fragment with its id, type
/// and name, then argument fragments. Logprobs ride on the first delta (or on an empty one
/// when the text is held back).
fn tool_chunks(
    events: Vec<ToolEvent>,
    logprobs: Option<ChoiceLogprobs>,
) -> Vec<(ChunkDelta, Option<ChoiceLogprobs>)> {
    let mut out: Vec<(ChunkDelta, Option<ChoiceLogprobs>)> = Vec::new();
    for e in events {
        let delta = match e {
            ToolEvent::Text(t) => ChunkDelta {
                content: Some(t),
                ..ChunkDelta::default()
            },
            ToolEvent::Start { index, name } => {
                let id = call_id();
                ChunkDelta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: index as u32,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: Some(FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }]),
                    ..ChunkDelta::default()
                }
            }
            ToolEvent::Args { index, fragment } => ChunkDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: index as u32,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(fragment),
                    }),
                    ..ToolCallDelta::default()
                }]),
                ..ChunkDelta::default()
            },
        };
        out.push((delta, None));
    }
    if let Some(lp) = logprobs {
        match out.first_mut() {
            Some(first) => first.1 = Some(lp),
            None => out.push((ChunkDelta::default(), Some(lp))),
        }
    }
    out
}

/// Tokenize the prompts of a legacy completion request, with their echo text.
fn completion_prompts(engine: &Engine, req: &CompletionRequest) -> Vec<(Vec<i32>, String)> {
    req.prompts
        .iter()
        .map(|p| match p {
            Prompt::Text(t) => (engine.tokenize(t, true), t.clone()),
            Prompt::Tokens(ts) => (ts.clone(), engine.detokenize(ts)),
        })
        .collect()
}

fn legacy_logprobs(lps: &[TokenLogprobs], offset0: usize) -> LegacyLogprobs {
    let mut out = LegacyLogprobs::default();
    let mut off = offset0;
    for t in lps {
        out.tokens.push(t.text.clone());
        out.token_logprobs.push(Some(t.logprob));
        out.top_logprobs
            .push(t.top.iter().map(|(s, _, l)| (s.clone(), *l)).collect());
        out.text_offset.push(off as u32);
        off += t.text.chars().count();
    }
    out
}

/// Legacy completions default to 16 tokens, as OpenAI's API does.
const LEGACY_DEFAULT_MAX_TOKENS: u32 = 16;

/// Answer a non-streaming legacy completion.
pub async fn completion(
    engine: &Engine,
    req: &CompletionRequest,
    fingerprint: &str,
) -> Result<Completion, ApiError> {
    let start = Instant::now();
    let prompts = completion_prompts(engine, req);
    let toks: Vec<Vec<i32>> = prompts.iter().map(|p| p.0.clone()).collect();
    let max = Some(req.max_tokens.unwrap_or(LEGACY_DEFAULT_MAX_TOKENS));
    let model = engine.info().name.clone();
    if max == Some(0) {
        // max_tokens 0 with echo: return the prompt only (used to score prompts).
        let choices = prompts
            .iter()
            .enumerate()
            .map(|(i, (_, t))| CompletionChoice {
                text: if req.echo { t.clone() } else { String::new() },
                index: i as u32,
                logprobs: None,
                finish_reason: Some("length".into()),
            })
            .collect();
        let pt: u32 = toks.iter().map(|t| t.len() as u32).sum();
        return Ok(Completion {
            id: new_id("cmpl"),
            object: "text_completion".into(),
            created: now_secs(),
            model,
            system_fingerprint: fingerprint.to_string(),
            choices,
            usage: Some(Usage::new(pt, 0)),
        });
    }
    let streams = start_all(engine, &toks, req.n, &req.sampling, max, req.logprobs, None)?;
    let results = collect_all(streams, &model, start).await;
    let mut choices = Vec::new();
    let mut usage = Usage::default();
    for (k, r) in results.into_iter().enumerate() {
        let c = r?;
        let (ptoks, ptext) = &prompts[k / req.n as usize];
        if k % req.n as usize == 0 {
            usage.prompt_tokens += ptoks.len() as u32;
        }
        usage.completion_tokens += c.done.completion_tokens;
        let echo = if req.echo {
            ptext.clone()
        } else {
            String::new()
        };
        let offset0 = echo.chars().count();
        choices.push(CompletionChoice {
            text: echo + &c.text,
            index: k as u32,
            logprobs: req.logprobs.map(|_| legacy_logprobs(&c.logprobs, offset0)),
            finish_reason: Some(c.done.finish_reason.as_str().into()),
        });
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok(Completion {
        id: new_id("cmpl"),
        object: "text_completion".into(),
        created: now_secs(),
        model,
        system_fingerprint: fingerprint.to_string(),
        choices,
        usage: Some(usage),
    })
}

/// Start a streaming legacy completion (see [`chat_stream`] for the error contract).
pub fn completion_stream(
    engine: &Engine,
    req: &CompletionRequest,
    fingerprint: &str,
) -> Result<mpsc::Receiver<SsePayload>, ApiError> {
    let start = Instant::now();
    let prompts = completion_prompts(engine, req);
    let toks: Vec<Vec<i32>> = prompts.iter().map(|p| p.0.clone()).collect();
    let prompt_tokens = toks.iter().map(|t| t.len() as u32).sum();
    let max = Some(req.max_tokens.unwrap_or(LEGACY_DEFAULT_MAX_TOKENS).max(1));
    let streams = start_all(engine, &toks, req.n, &req.sampling, max, req.logprobs, None)?;
    let model = engine.info().name.clone();
    let base = Completion {
        id: new_id("cmpl"),
        object: "text_completion".into(),
        created: now_secs(),
        model: model.clone(),
        system_fingerprint: fingerprint.to_string(),
        choices: Vec::new(),
        usage: None,
    };
    let chunk = move |choice: Option<CompletionChoice>, usage: Option<Usage>| {
        let mut c = base.clone();
        c.choices.extend(choice);
        c.usage = usage;
        serde_json::to_string(&c).unwrap_or_default()
    };
    let n_per = req.n as usize;
    // With `echo`, each choice starts with its prompt's text.
    let prelude = if req.echo {
        (0..streams.len())
            .map(|k| {
                let text = prompts[k / n_per].1.clone();
                chunk(
                    Some(CompletionChoice {
                        text,
                        index: k as u32,
                        logprobs: None,
                        finish_reason: None,
                    }),
                    None,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let want_lp = req.logprobs.is_some();
    let render = move |item: StreamItem| {
        vec![match item {
            StreamItem::Token {
                index,
                text,
                logprobs,
            } => chunk(
                Some(CompletionChoice {
                    text,
                    index: index as u32,
                    logprobs: want_lp
                        .then(|| legacy_logprobs(&logprobs.into_iter().collect::<Vec<_>>(), 0)),
                    finish_reason: None,
                }),
                None,
            ),
            StreamItem::Finish { index, reason } => chunk(
                Some(CompletionChoice {
                    text: String::new(),
                    index: index as u32,
                    logprobs: None,
                    finish_reason: Some(reason.into()),
                }),
                None,
            ),
            StreamItem::Usage(u) => chunk(None, Some(u)),
        }]
    };
    Ok(spawn_stream(
        streams,
        model,
        start,
        prelude,
        prompt_tokens,
        req.include_usage,
        render,
        None,
    ))
}
