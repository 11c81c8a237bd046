//! Axum routes. Thin: parse, call [`crate::pipeline`], map errors.

use crate::respond::{HttpError, HttpResult, finish, model_label, read_body, routing_headers, sse};
use crate::state::AppState;
use crate::{dialects, gateway, pipeline};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Instant;
use tandem_types::dialect::Dialect;
use tandem_types::openai::{
    self, EmbeddingData, EmbeddingInput, EmbeddingResponse, EmbeddingUsage, EncodingFormat,
    ModelList, ModelObject,
};
use tandem_types::{ApiError, ErrorKind};

/// The full router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(dialects::messages))
        .route("/v1/messages/count_tokens", post(dialects::count_tokens))
        .route("/v1/responses", post(dialects::responses))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/route/explain", post(route_explain))
        .route("/v1/tandem/stats", get(stats))
        .route("/v1/tandem/feedback", post(feedback))
        .route("/v1/kb", get(kb_list).post(kb_create))
        .route("/v1/kb/{name}", axum::routing::delete(kb_delete))
        .route("/v1/kb/{name}/ingest", post(kb_ingest))
        .route("/v1/kb/{name}/search", post(kb_search))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            crate::drain::track,
        ))
        .with_state(state)
}

async fn not_found(req: Request) -> HttpError {
    HttpError(ApiError::new(
        ErrorKind::NotFound,
        format!("Unknown endpoint: {} {}", req.method(), req.uri().path()),
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    let e = ApiError::new(
        ErrorKind::InvalidRequest,
        format!(
            "Method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    );
    let mut r = HttpError(e).into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dialects::chat(state, headers, body, Dialect::OpenAiChat).await
}

async fn route_explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let meta = gateway::RequestMeta::from_headers(&headers);
    let start = meta.start;
    let r: HttpResult = async {
        let bytes = read_body(&state, body).await?;
        // Explain accepts any chat request; generation parameters are irrelevant here.
        let req = openai::parse_chat_request(&bytes, true)?;
        let (body, route, model, overhead) = gateway::explain(&state, &req, &meta).await?;
        let mut resp = axum::Json(body).into_response();
        routing_headers(&mut resp, Some(&route), model.as_deref(), overhead);
        Ok(resp)
    }
    .await;
    finish("none", "explain", start, r)
}

/// `POST /v1/tandem/feedback`: a user's rating of one answer, `{"id": "<x-tandem-request-id
/// or the completion's id>", "rating": "good" | "bad"}` or `{"id": ..., "score": 0..1}`.
/// Stored in the ledger; ratings of the SLM's answers teach `tandem router train --ledger`.
async fn feedback(State(state): State<Arc<AppState>>, body: Body) -> HttpResult {
    let bytes = read_body(&state, body).await?;
    let (id, score) = parse_feedback(&bytes).map_err(HttpError)?;
    let Some(ledger) = state.ledger.clone() else {
        return Err(HttpError(ApiError::new(
            ErrorKind::NotFound,
            "The ledger is disabled on this server (server.ledger: off); ratings cannot be stored.",
        )));
    };
    let lookup = id.clone();
    let rec = tokio::task::spawn_blocking(move || {
        ledger.flush()?;
        let rec = ledger.get(&lookup)?;
        if rec.is_some() {
            ledger.add_feedback(tandem_ledger::Feedback {
                id: lookup,
                ts_ms: gateway::now_ms(),
                score,
            })?;
        }
        Ok::<_, tandem_ledger::LedgerError>(rec)
    })
    .await
    .map_err(|e| HttpError(ApiError::internal(format!("feedback task failed: {e}"))))?
    .map_err(|e| HttpError(ApiError::internal(format!("writing the ledger: {e}"))))?;
    let Some(rec) = rec else {
        return Err(HttpError(ApiError::new(
            ErrorKind::NotFound,
            format!("No request with id `{id}` in the ledger."),
        )));
    };
    Ok(axum::Json(serde_json::json!({
        "object": "tandem.feedback",
        "id": id,
        "score": score,
        "answered_by": rec.answered_by,
        "local": rec.local,
    }))
    .into_response())
}

/// The id and score (0–1) of a feedback body.
fn parse_feedback(bytes: &[u8]) -> Result<(String, f64), ApiError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The body is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request("The body must be a JSON object."));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "rating" | "score"))
    {
        return Err(ApiError::invalid(
            k,
            format!("Unknown field `{k}` (expected `id` and `rating` or `score`)."),
        ));
    }
    let id = match obj.get("id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(_) => return Err(ApiError::invalid("id", "`id` must be a non-empty string.")),
        None => {
            return Err(ApiError::invalid(
                "id",
                "Missing `id`: the rated response's `x-tandem-request-id` (or its `id`).",
            ));
        }
    };
    let score = match (obj.get("rating"), obj.get("score")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "score",
                "Give either `rating` or `score`, not both.",
            ));
        }
        (Some(r), None) => match r.as_str() {
            Some("good") => 1.0,
            Some("bad") => 0.0,
            _ => {
                return Err(ApiError::invalid(
                    "rating",
                    "`rating` must be \"good\" or \"bad\".",
                ));
            }
        },
        (None, Some(s)) => match s.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => x,
            _ => {
                return Err(ApiError::invalid(
                    "score",
                    "`score` must be a number from 0 to 1.",
                ));
            }
        },
        (None, None) => {
            return Err(ApiError::invalid(
                "rating",
                "Missing `rating` (\"good\" or \"bad\") or `score` (0 to 1).",
            ));
        }
    };
    Ok((id, score))
}

#[derive(serde::Deserialize)]
struct StatsQuery {
    /// Only requests since this many seconds ago.
    since_secs: Option<i64>,
    /// Only this tenant.
    tenant: Option<String>,
}

async fn stats(
    State(state): State<Arc<AppState>>,
    q: Result<axum::extract::Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> HttpResult {
    let axum::extract::Query(q) =
        q.map_err(|e| HttpError(ApiError::bad_request(format!("Bad query string: {e}"))))?;
    let Some(ledger) = state.ledger.clone() else {
        return Err(HttpError(ApiError::new(
            ErrorKind::NotFound,
            "The ledger is disabled on this server (server.ledger: off).",
        )));
    };
    if let Some(s) = q.since_secs
        && s < 0
    {
        return Err(HttpError(ApiError::invalid(
            "since_secs",
            "`since_secs` must be ≥ 0.",
        )));
    }
    let filter = tandem_ledger::StatsFilter {
        since_ms: q.since_secs.map(|s| gateway::now_ms() - s * 1000),
        tenant: q.tenant,
    };
    let stats = tokio::task::spawn_blocking(move || {
        ledger.flush()?;
        ledger.stats(&filter)
    })
    .await
    .map_err(|e| HttpError(ApiError::internal(format!("stats task failed: {e}"))))?
    .map_err(|e| HttpError(ApiError::internal(format!("reading the ledger: {e}"))))?;
    let rt = state.runtime();
    Ok(axum::Json(serde_json::json!({
        "object": "tandem.stats",
        "baseline_model": rt.config.llm_model,
        "stats": stats,
    }))
    .into_response())
}

async fn completions(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let start = Instant::now();
    let mut model = String::from("unknown");
    let r = async {
        let bytes = read_body(&state, body).await?;
        let mut req = openai::parse_completion_request(&bytes, state.options.drop_unknown_params)?;
        req.model = legacy_model(&state, &req.model)?;
        model = model_label(&state, &req.model);
        let engine = state.chat_engine(&req.model)?;
        if req.stream {
            Ok(sse(pipeline::completion_stream(
                engine,
                &req,
                &state.fingerprint,
            )?))
        } else {
            Ok(
                axum::Json(pipeline::completion(engine, &req, &state.fingerprint).await?)
                    .into_response(),
            )
        }
    }
    .await;
    finish(&model, "completions", start, r)
}

/// Legacy completions are served by local models only: aliases resolve to their model, the
/// policy (`auto`) to the policy's local model.
fn legacy_model(state: &AppState, requested: &str) -> Result<String, ApiError> {
    let rt = state.runtime();
    let resolved = match rt.config.aliases.get(requested) {
        Some(Some(m)) => m.clone(),
        Some(None) => rt.config.fallback_local().unwrap_or(requested).to_string(),
        None => requested.to_string(),
    };
    if rt.remotes.contains_key(&resolved) {
        return Err(ApiError::invalid(
            "model",
            format!(
                "`{resolved}` is a remote model; /v1/completions serves local models only (use /v1/chat/completions)."
            ),
        ));
    }
    Ok(resolved)
}

async fn embeddings(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let start = Instant::now();
    let mut model = String::from("unknown");
    let r = async {
        let bytes = read_body(&state, body).await?;
        let req = openai::parse_embedding_request(&bytes, state.options.drop_unknown_params)?;
        model = model_label(&state, &req.model);
        let m = state.embed_model(&req.model)?;
        let dim = m.embedder.dim();
        if let Some(d) = req.dimensions
            && d as usize != dim {
                return Err(ApiError::invalid(
                    "dimensions",
                    format!("This model produces {dim}-dimensional embeddings; 'dimensions' = {d} is not supported."),
                )
                .into());
            }
        let _permit = state.embed_permit().await?;
        let embedder = m.embedder.clone();
        let input = req.input.clone();
        let out = tokio::task::spawn_blocking(move || match &input {
            EmbeddingInput::Texts(t) => {
                let refs: Vec<&str> = t.iter().map(String::as_str).collect();
                embedder.embed(&refs)
            }
            EmbeddingInput::Tokens(ids) => embedder.embed_ids(ids),
        })
        .await
        .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))?
        .map_err(crate::state::embed_error)?;
        let data = out
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| EmbeddingData {
                object: "embedding".into(),
                index: i as u32,
                embedding: match req.encoding_format {
                    EncodingFormat::Float => serde_json::json!(v),
                    EncodingFormat::Base64 => serde_json::Value::String(openai::embedding_to_base64(v)),
                },
            })
            .collect();
        let tokens = out.prompt_tokens as u32;
        Ok(axum::Json(EmbeddingResponse {
            object: "list".into(),
            data,
            model: m.name.clone(),
            usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
        })
        .into_response())
    }
    .await;
    finish(&model, "embeddings", start, r)
}

fn model_objects(state: &AppState) -> Vec<ModelObject> {
    let mut v: Vec<ModelObject> = state
        .chat_engines()
        .map(|e| ModelObject {
            id: e.info().name.clone(),
            object: "model".into(),
            created: e.info().loaded_at,
            owned_by: "tandem".into(),
        })
        .collect();
    v.extend(state.embed_models().map(|m| ModelObject {
        id: m.name.clone(),
        object: "model".into(),
        created: m.loaded_at,
        owned_by: "tandem".into(),
    }));
    let rt = state.runtime();
    for name in rt.remotes.keys() {
        v.push(ModelObject {
            id: name.clone(),
            object: "model".into(),
            created: 0,
            owned_by: "remote".into(),
        });
    }
    for alias in rt.config.aliases.keys() {
        if !v.iter().any(|m| &m.id == alias) {
            v.push(ModelObject {
                id: alias.clone(),
                object: "model".into(),
                created: 0,
                owned_by: "tandem-router".into(),
            });
        }
    }
    v
}

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(ModelList {
        object: "list".into(),
        data: model_objects(&state),
    })
    .into_response()
}

async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> HttpResult {
    model_objects(&state)
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| axum::Json(m).into_response())
        .ok_or_else(|| {
            let ids: Vec<String> = model_objects(&state).into_iter().map(|m| m.id).collect();
            HttpError(ApiError::model_not_found(&id, &ids))
        })
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let models: Vec<serde_json::Value> = state
        .chat_engines()
        .map(|e| {
            serde_json::json!({
                "id": e.info().name, "kind": "chat", "running": e.running(), "waiting": e.queue_depth(),
                "parallel": e.info().parallel, "ctx_size": e.info().ctx_size,
            })
        })
        .chain(state.embed_models().map(|m| serde_json::json!({"id": m.name, "kind": "embedding"})))
        .collect();
    axum::Json(serde_json::json!({"status": "ok", "models": models})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    for e in state.chat_engines() {
        crate::metrics::engine_gauges(&e.info().name, e.queue_depth(), e.running());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Knowledge bases
// ---------------------------------------------------------------------------------------------

fn kb_service(state: &AppState) -> Result<Arc<crate::kb::KbService>, HttpError> {
    state.kb.clone().ok_or_else(|| {
        HttpError(ApiError::new(
            ErrorKind::NotFound,
            "Knowledge bases are not enabled on this server (no embedding model).",
        ))
    })
}

fn json_body(body: &Bytes) -> Result<serde_json::Value, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        HttpError(ApiError::bad_request(format!(
            "The body is not valid JSON: {e}"
        )))
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            HttpError(ApiError::internal(format!(
                "knowledge-base task failed: {e}"
            )))
        })?
        .map_err(HttpError)
}

async fn kb_list(State(state): State<Arc<AppState>>) -> HttpResult {
    let kb = kb_service(&state)?;
    Ok(axum::Json(blocking(move || kb.list()).await?).into_response())
}

async fn kb_create(State(state): State<Arc<AppState>>, body: Bytes) -> HttpResult {
    let kb = kb_service(&state)?;
    let v = json_body(&body)?;
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| HttpError(ApiError::invalid("name", "`name` must be a string.")))?
        .to_string();
    let out = blocking(move || kb.create(&name)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

async fn kb_delete(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> HttpResult {
    let kb = kb_service(&state)?;
    Ok(axum::Json(blocking(move || kb.remove(&name)).await?).into_response())
}

/// `{"paths": [...], "files": [{"name", "content" | "content_base64"}], "prune", "tags"}`.
async fn kb_ingest(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> HttpResult {
    use base64::Engine as _;
    let kb = kb_service(&state)?;
    let v = json_body(&body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| HttpError(ApiError::bad_request("The body must be a JSON object.")))?;
    for k in obj.keys() {
        if !["paths", "files", "prune", "tags"].contains(&k.as_str()) {
            return Err(HttpError(ApiError::invalid(
                k,
                format!("Unknown field `{k}`."),
            )));
        }
    }
    let strings = |key: &str| -> Result<Vec<String>, HttpError> {
        match obj.get(key) {
            None => Ok(Vec::new()),
            Some(a) => a
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                .ok_or_else(|| {
                    HttpError(ApiError::invalid(
                        key,
                        format!("`{key}` must be an array of strings."),
                    ))
                }),
        }
    };
    let mut paths: Vec<std::path::PathBuf> =
        strings("paths")?.into_iter().map(Into::into).collect();
    let tags = strings("tags")?;
    let prune = match obj.get("prune") {
        None => false,
        Some(b) => b
            .as_bool()
            .ok_or_else(|| HttpError(ApiError::invalid("prune", "`prune` must be a boolean.")))?,
    };
    let mut uploads: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(files) = obj.get("files") {
        let files = files
            .as_array()
            .ok_or_else(|| HttpError(ApiError::invalid("files", "`files` must be an array.")))?;
        for (i, f) in files.iter().enumerate() {
            let bad = |m: &str| HttpError(ApiError::invalid(format!("files[{i}]"), m.to_string()));
            let fname = f
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| bad("each file needs a string `name`"))?;
            let fname = crate::kb::upload_name(fname).map_err(HttpError)?;
            let bytes = match (f.get("content"), f.get("content_base64")) {
                (Some(c), None) => c
                    .as_str()
                    .ok_or_else(|| bad("`content` must be a string"))?
                    .as_bytes()
                    .to_vec(),
                (None, Some(c)) => base64::engine::general_purpose::STANDARD
                    .decode(
                        c.as_str()
                            .ok_or_else(|| bad("`content_base64` must be a string"))?,
                    )
                    .map_err(|e| bad(&format!("`content_base64` is not base64: {e}")))?,
                _ => return Err(bad("give exactly one of `content` and `content_base64`")),
            };
            uploads.push((fname, bytes));
        }
    }
    if paths.is_empty() && uploads.is_empty() {
        return Err(HttpError(ApiError::invalid(
            "paths",
            "Give `paths` (on the server) or `files` (uploaded) to ingest.",
        )));
    }
    let out = blocking(move || {
        if !uploads.is_empty() {
            let dir = kb.upload_dir(&name)?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
            for (fname, bytes) in &uploads {
                let p = dir.join(fname);
                std::fs::write(&p, bytes)
                    .map_err(|e| ApiError::internal(format!("writing {}: {e}", p.display())))?;
                paths.push(p);
            }
        }
        let opts = tandem_kb::IngestOptions {
            prune,
            tags,
            ..Default::default()
        };
        let s = kb.ingest(&name, &paths, &opts)?;
        Ok(crate::kb::summary_json(&name, &s))
    })
    .await?;
    Ok(axum::Json(out).into_response())
}

async fn kb_search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> HttpResult {
    let kb = kb_service(&state)?;
    let v = json_body(&body)?;
    let (query, opts) = crate::kb::parse_search(&v).map_err(HttpError)?;
    let start = Instant::now();
    let hits = blocking(move || kb.search_hits(&name, &query, &opts)).await?;
    let data: Vec<serde_json::Value> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| crate::kb::hit_json(i + 1, h))
        .collect();
    Ok(axum::Json(serde_json::json!({
        "object": "list", "data": data,
        "took_ms": start.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response())
}
