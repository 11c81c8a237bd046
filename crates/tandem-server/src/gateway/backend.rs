//! One interface over the models the gateway calls: the local engine, and remote upstreams
//! (OpenAI-compatible or Anthropic, translated by `tandem-providers`). A model name is
//! resolved to a [`Backend`] in one place ([`backend`]); nothing above this module asks
//! where a model runs. What differs lives in the two implementations: a remote call masks
//! PII on the way out and restores it on the way back, and records what left the machine.

use super::*;
use crate::runtime::RemoteEntry;
use futures::future::BoxFuture;

/// A model the gateway can call. Both methods record that the model was called; a stream
/// also accounts its tokens and cost when it ends, a whole completion leaves that to
/// [`call_full`](super::call_full). Which answer the client gets is the caller's to record.
pub(super) trait Backend: Send + Sync {
    /// A whole completion.
    fn complete<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatCompletion, ApiError>>;

    /// A stream of SSE payloads, returned once it has started (failures before the first
    /// byte are errors the fallback chain can act on); the call is accounted when it ends.
    fn stream<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<SsePayload>, ApiError>>;
}

/// The backend serving `model`: a configured remote model, else a loaded local engine.
pub(super) fn backend<'a>(ctx: &'a Ctx, model: &'a str) -> Result<Box<dyn Backend + 'a>, ApiError> {
    if let Some(entry) = ctx.rt.remotes.get(model) {
        return Ok(Box::new(Remote { name: model, entry }));
    }
    let engine = ctx.state.chat_engine(model)?;
    Ok(Box::new(Local {
        name: model,
        engine,
    }))
}

/// A model in this process.
struct Local<'a> {
    name: &'a str,
    engine: &'a tandem_engine::Engine,
}

impl Backend for Local<'_> {
    fn complete<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatCompletion, ApiError>> {
        Box::pin(async move {
            ctx.acct.called(self.name);
            pipeline::chat_completion(self.engine, req, &ctx.state.fingerprint).await
        })
    }

    fn stream<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<SsePayload>, ApiError>> {
        Box::pin(async move {
            ctx.acct.called(self.name);
            let acct = ctx.acct.clone();
            let name = self.name.to_string();
            let grammar = wants_grammar(req);
            let on_done: pipeline::OnDone = Box::new(move |o: StreamOutcome| {
                acct.call(&name, o.prompt_tokens, o.completion_tokens);
                acct.answered(&name, o.prompt_tokens, o.completion_tokens);
                let called = !o.tool_calls.is_empty();
                acct.output(o.tool_calls, grammar || called);
                let status = if o.error.is_some() {
                    500
                } else if o.cancelled {
                    499
                } else {
                    200
                };
                acct.finish(status, o.error, o.ttft_ms);
            });
            pipeline::chat_stream(self.engine, req, &ctx.state.fingerprint, Some(on_done))
        })
    }
}

/// A model behind an upstream API.
struct Remote<'a> {
    name: &'a str,
    entry: &'a RemoteEntry,
}

impl Backend for Remote<'_> {
    fn complete<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatCompletion, ApiError>> {
        Box::pin(async move {
            let (out, masker) = outbound(ctx, req)?;
            ctx.acct.called(self.name);
            let reply = self
                .entry
                .upstream
                .chat(&out)
                .await
                .map_err(|e| provider_error(self.name, &e))?;
            let mut c = reply.completion;
            // What left the machine goes to the ledger as it was sent (moved, not copied).
            let sent = reply.sent;
            ctx.acct.with(|r| r.sent_out = Some(sent));
            c.model = self.name.to_string();
            if let Some(m) = &masker {
                for ch in &mut c.choices {
                    ch.message.content = m.restore(&ch.message.content);
                    for t in &mut ch.message.tool_calls {
                        t.function.arguments = m.restore(&t.function.arguments);
                    }
                }
            }
            Ok(c)
        })
    }

    fn stream<'a>(
        &'a self,
        ctx: &'a Ctx,
        req: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<SsePayload>, ApiError>> {
        Box::pin(async move {
            let (out, masker) = outbound(ctx, req)?;
            ctx.acct.called(self.name);
            let us = self
                .entry
                .upstream
                .chat_stream(&out)
                .await
                .map_err(|e| provider_error(self.name, &e))?;
            let sent = us.sent;
            ctx.acct.with(|r| r.sent_out = Some(sent));
            Ok(forward_remote(
                us.stream,
                self.name.to_string(),
                req.include_usage,
                masker,
                ctx.acct.clone(),
            ))
        })
    }
}
