//! The HTTP routes (see `docs/HTTP.md`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::bridge::{Bridge, BridgeError};
use super::metrics::{self, HttpStats};
use super::params::{self, gateway_param, query_pairs, query_to_json};
use super::GatewayConfig;
use crate::job::JobId;
use crate::protocol::Frame;

pub(crate) struct AppState {
    pub(crate) bridge: Bridge,
    pub(crate) config: GatewayConfig,
    pub(crate) stats: HttpStats,
}

type St = State<Arc<AppState>>;

/// Builds the router over a shared state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_route))
        .route("/jobs/{id}", get(job_status).delete(job_cancel))
        .route("/jobs/{id}/result", get(job_result))
        .route("/{service}", get(service).post(service))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

// ------------------------------------------------------------------ responses

fn json_response(status: u16, value: &Value) -> Response {
    let mut body = value.to_string();
    body.push('\n');
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("static response parts are valid")
}

/// `{"error": message}` with `status`; `extra` fields are added beside it.
fn error_response(status: u16, message: &str, extra: &[(&str, Value)]) -> Response {
    let mut obj = serde_json::Map::new();
    obj.insert("error".into(), Value::String(message.to_string()));
    for (k, v) in extra {
        if !v.is_null() {
            obj.insert((*k).to_string(), v.clone());
        }
    }
    json_response(status, &Value::Object(obj))
}

fn bridge_error(e: &BridgeError, extra: &[(&str, Value)]) -> Response {
    let mut all: Vec<(&str, Value)> = extra.to_vec();
    if let Some(id) = &e.job_id {
        all.push(("job_id", Value::String(id.clone())));
    }
    error_response(e.status, &e.message, &all)
}

fn bytes_response(status: u16, data: Vec<u8>, job_id: Option<&str>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, params::sniff_content_type(&data));
    if let Some(id) = job_id.and_then(|i| HeaderValue::from_str(i).ok()) {
        b = b.header("x-zmws-job-id", id);
    }
    b.body(Body::from(data)).expect("static response parts are valid")
}

/// A raw JSON document from the broker, sent as it is.
fn broker_json(text: &[u8]) -> Response {
    let mut data = text.to_vec();
    data.push(b'\n');
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data))
        .expect("static response parts are valid")
}

/// `[code, message]` refusal from a `zmws.*` service.
fn broker_refusal(body: &[Frame]) -> BridgeError {
    let code = body.first().cloned().unwrap_or_else(|| b"502".to_vec());
    let msg = body
        .get(1)
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_else(|| "unexpected broker reply".into());
    BridgeError::from_broker(&code, msg)
}

fn is_refusal(body: &[Frame]) -> bool {
    body.len() == 2 && body[0].len() == 3 && body[0][0] >= b'3' && body[0].iter().all(u8::is_ascii_digit)
}

// ------------------------------------------------------------------ middleware

fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let v = v.trim();
    let Some((scheme, given)) = v.split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    // Length leaks; contents are compared in constant time.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bearer-token check (every route but `/healthz`), request counting and logging.
async fn guard(State(st): St, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match &st.config.token {
        Some(token) if path != "/healthz" && !token_ok(req.headers(), token) => {
            let mut r = error_response(401, "missing or wrong bearer token (send Authorization: Bearer TOKEN)", &[]);
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"zmws\""));
            r
        }
        _ => next.run(req).await,
    };
    let status = response.status().as_u16();
    st.stats.record(status);
    tracing::debug!(%method, %path, status, ms = started.elapsed().as_millis() as u64, "http request");
    response
}

async fn not_found(req: Request) -> Response {
    error_response(404, &format!("no route for {}", req.uri().path()), &[])
}

async fn method_not_allowed(req: Request) -> Response {
    method_refused(req.method(), req.uri().path(), "")
}

/// The methods a path answers, for `Allow`. `HEAD` (a `GET` without the
/// body) only where a `GET` has no side effects: not on service routes,
/// where a `GET` submits or runs a job.
fn allowed_methods(path: &str) -> &'static str {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["jobs", _] => "GET,HEAD,DELETE",
        ["jobs", _, "result"] | ["healthz"] | ["metrics"] => "GET,HEAD",
        [name] if params::path_decode(name).starts_with(b"SERVER-") => "GET,HEAD,POST",
        _ => "GET,POST",
    }
}

/// `405` with the JSON error body and an `Allow` header naming what `path` answers.
fn method_refused(method: &Method, path: &str, why: &str) -> Response {
    let allow = allowed_methods(path);
    let mut r = error_response(405, &format!("method {method} is not allowed on {path}{why} (allowed: {allow})"), &[]);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

// ------------------------------------------------------------------ helpers

/// The request body, up to `limit` bytes. Errors are (status, message).
async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Vec<u8>, (u16, String)> {
    let too_big = |n: u64| (413, format!("request body of {n} bytes is over the limit of {limit} bytes"));
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            drain(&mut body).await;
            return Err(too_big(len));
        }
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(buf),
            Some(Err(e)) => return Err((400, format!("cannot read the request body: {e}"))),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    if buf.len() + data.len() > limit {
                        let n = (buf.len() + data.len()) as u64;
                        drain(&mut body).await;
                        return Err(too_big(n));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Reads and drops what is left of a refused body (at most 16 MiB, 2 s):
/// closing a connection with unread bytes makes the kernel send a reset,
/// which can destroy the 413 answer before the client reads it.
async fn drain(body: &mut Body) {
    const BUDGET: usize = 16 << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut seen = 0usize;
    while seen < BUDGET {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx));
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Some(Ok(f))) => seen += f.data_ref().map(|d| d.len()).unwrap_or(0),
            _ => break,
        }
    }
}

fn path_segments(req: &Request) -> Vec<String> {
    req.uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(&params::path_decode(s)).into_owned())
        .collect()
}

/// The job id of `/jobs/{id}…`, or why it is not one.
fn job_id_from(req: &Request) -> Result<String, String> {
    let segs = path_segments(req);
    let id = segs.get(1).cloned().unwrap_or_default();
    match JobId::parse(id.as_bytes()) {
        Some(j) => Ok(j.to_string()),
        None => Err(format!("'{id}' is not a job id (32 hex characters)")),
    }
}

// ------------------------------------------------------------------ routes

async fn healthz(State(st): St) -> Response {
    let t = Instant::now();
    match st.bridge.admin("mmi.service", vec![b"zmws.healthz".to_vec()], Some(Duration::from_secs(2))).await {
        Ok(_) => json_response(
            200,
            &json!({"status": "ok", "broker": st.bridge.endpoint(), "broker_ms": t.elapsed().as_millis() as u64}),
        ),
        Err(e) => error_response(
            503,
            &e.message,
            &[("status", json!("unavailable")), ("broker", json!(st.bridge.endpoint()))],
        ),
    }
}

async fn metrics_route(State(st): St) -> Response {
    let services = match st.bridge.admin("zmws.services", vec![Vec::new()], None).await {
        Ok(body) => body.first().and_then(|f| serde_json::from_slice::<Value>(f).ok()),
        Err(e) => {
            tracing::debug!(error = %e.message, "metrics: broker did not answer");
            None
        }
    };
    let text = metrics::render(services.as_ref(), &st.stats, st.bridge.inflight_calls(), st.bridge.calls_total());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, metrics::CONTENT_TYPE)
        .body(Body::from(text))
        .expect("static response parts are valid")
}

async fn job_status(State(st): St, req: Request) -> Response {
    let id = match job_id_from(&req) {
        Ok(id) => id,
        Err(m) => return error_response(400, &m, &[]),
    };
    match st.bridge.admin("zmws.status", vec![id.clone().into_bytes()], None).await {
        Ok(body) if is_refusal(&body) => bridge_error(&broker_refusal(&body), &[("job_id", json!(id))]),
        Ok(body) => broker_json(body.first().map(|f| f.as_slice()).unwrap_or(b"null")),
        Err(e) => bridge_error(&e, &[("job_id", json!(id))]),
    }
}

async fn job_result(State(st): St, req: Request) -> Response {
    let id = match job_id_from(&req) {
        Ok(id) => id,
        Err(m) => return error_response(400, &m, &[]),
    };
    match st.bridge.admin("zmws.result", vec![id.clone().into_bytes()], None).await {
        Ok(body) => match body.first().map(|f| f.as_slice()) {
            Some(b"200") => bytes_response(200, body[1..].concat(), Some(&id)),
            Some(b"300") => {
                let detail = body.get(1).map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
                let state = detail.strip_prefix("job is ").unwrap_or("pending").to_string();
                let mut r = json_response(202, &json!({"job_id": id, "state": state, "detail": detail}));
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Some(b"500") => {
                // Failed (502, like a failed SYNC call) or cancelled (410: no result will ever come)?
                let e = broker_refusal(&body);
                let cancelled = match st.bridge.admin("zmws.status", vec![id.clone().into_bytes()], None).await {
                    Ok(b) => b
                        .first()
                        .and_then(|f| serde_json::from_slice::<Value>(f).ok())
                        .map(|v| v.get("state").and_then(Value::as_str) == Some("cancelled"))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if cancelled {
                    error_response(410, &e.message, &[("job_id", json!(id)), ("state", json!("cancelled"))])
                } else {
                    error_response(502, &e.message, &[("job_id", json!(id)), ("state", json!("failed"))])
                }
            }
            _ => bridge_error(&broker_refusal(&body), &[("job_id", json!(id))]),
        },
        Err(e) => bridge_error(&e, &[("job_id", json!(id))]),
    }
}

/// `DELETE /jobs/{id}`. Idempotent, like the broker's `zmws.cancel`: a job
/// already cancelled answers 200 again; a completed or failed one 409.
async fn job_cancel(State(st): St, req: Request) -> Response {
    let id = match job_id_from(&req) {
        Ok(id) => id,
        Err(m) => return error_response(400, &m, &[]),
    };
    match st.bridge.admin("zmws.cancel", vec![id.clone().into_bytes()], None).await {
        Ok(body) if body.first().map(|f| f.as_slice()) == Some(b"200") => {
            json_response(200, &json!({"job_id": id, "state": "cancelled"}))
        }
        Ok(body) => bridge_error(&broker_refusal(&body), &[("job_id", json!(id))]),
        Err(e) => bridge_error(&e, &[("job_id", json!(id))]),
    }
}

/// The seed's `SERVER-*` commands.
async fn server_command(st: &AppState, name: &str) -> Response {
    let (service, body): (&str, Vec<u8>) = match name {
        "SERVER-WORKERS" => ("zmws.workers", Vec::new()),
        "SERVER-JOBS" => ("zmws.jobs", b"queued".to_vec()),
        "SERVER-ACTIVE" => ("zmws.jobs", b"active".to_vec()),
        "SERVER-HIST" => ("zmws.jobs", b"history".to_vec()),
        "SERVER-SERVICES" => ("zmws.services", Vec::new()),
        other => {
            return error_response(
                404,
                &format!("unknown server command '{other}' (SERVER-WORKERS, SERVER-JOBS, SERVER-ACTIVE, SERVER-HIST, SERVER-SERVICES)"),
                &[],
            )
        }
    };
    match st.bridge.admin(service, vec![body], None).await {
        Ok(b) if is_refusal(&b) => bridge_error(&broker_refusal(&b), &[]),
        Ok(b) => broker_json(b.first().map(|f| f.as_slice()).unwrap_or(b"[]")),
        Err(e) => bridge_error(&e, &[]),
    }
}

/// `GET|POST /SERVICE` (async), `/SYNC-SERVICE` and `/SYNC:SERVICE` (wait);
/// `HEAD` gets 405 here, except on the read-only `SERVER-*` commands.
async fn service(State(st): St, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let segment = parts.uri.path().trim_start_matches('/');
    let name = match String::from_utf8(params::path_decode(segment)) {
        Ok(n) => n,
        Err(_) => return error_response(400, "the service name is not UTF-8", &[]),
    };
    if name.starts_with("SERVER-") {
        return server_command(&st, &name).await;
    }
    // axum answers HEAD with the GET handler; here a GET submits or runs a job.
    if parts.method == Method::HEAD {
        return method_refused(&parts.method, parts.uri.path(), ": it would submit or run a job");
    }
    let (sync, svc) = match name.strip_prefix("SYNC-").or_else(|| name.strip_prefix("SYNC:")) {
        Some(rest) => (true, rest.to_string()),
        None => (false, name.clone()),
    };
    if svc.is_empty() || svc.len() > 255 {
        return error_response(400, "the service name must be 1 to 255 bytes", &[("service", json!(svc))]);
    }
    let pairs = match query_pairs(parts.uri.query().unwrap_or("")) {
        Ok(p) => p,
        Err(m) => return error_response(400, &m, &[("service", json!(svc))]),
    };
    let data = match read_body(&parts.headers, body, st.config.max_body_bytes).await {
        Ok(d) => d,
        Err((status, msg)) => return error_response(status, &msg, &[("service", json!(svc))]),
    };
    let payload = if data.is_empty() {
        query_to_json(&pairs).to_string().into_bytes()
    } else {
        let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if params::is_json_content_type(ct) {
            if let Err(e) = params::check_json(&data) {
                return error_response(400, &format!("the body is not valid JSON: {e}"), &[("service", json!(svc))]);
            }
        }
        data
    };
    if sync {
        let timeout = match gateway_param(&pairs, "timeout_ms") {
            None => Duration::from_millis(st.config.default_timeout.as_millis() as u64),
            Some(t) => match t.trim().parse::<u64>() {
                Ok(ms) if ms >= 1 && ms <= st.config.max_timeout.as_millis() as u64 => Duration::from_millis(ms),
                _ => {
                    return error_response(
                        400,
                        &format!(
                            "timeout_ms must be a whole number of milliseconds from 1 to {}",
                            st.config.max_timeout.as_millis()
                        ),
                        &[("service", json!(svc))],
                    )
                }
            },
        };
        match st.bridge.call(&svc, payload, timeout).await {
            Ok(ok) => bytes_response(200, ok.result, Some(&ok.job_id)),
            Err(e) => {
                let mut extra = vec![("service", json!(svc))];
                if e.status == 504 {
                    extra.push(("timeout_ms", json!(timeout.as_millis() as u64)));
                }
                bridge_error(&e, &extra)
            }
        }
    } else {
        // `Idempotency-Key`: the same key returns the same job while that job
        // is queued, running or within its result TTL (zmws.submit.unique).
        let key = match parts.headers.get("idempotency-key").map(|v| v.to_str()) {
            None => None,
            Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => Some(k.to_string()),
            Some(_) => {
                return error_response(
                    400,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    &[("service", json!(svc))],
                )
            }
        };
        let (submit, frames) = match key {
            Some(k) => ("zmws.submit.unique", vec![k.into_bytes(), svc.clone().into_bytes(), payload]),
            None => ("zmws.submit", vec![svc.clone().into_bytes(), payload]),
        };
        match st.bridge.admin(submit, frames, None).await {
            Ok(b) if b.len() == 1 && JobId::parse(&b[0]).is_some() => {
                let id = String::from_utf8_lossy(&b[0]).into_owned();
                let mut r = json_response(202, &json!({"job_id": id, "service": svc}));
                if let Ok(loc) = HeaderValue::from_str(&format!("/jobs/{id}")) {
                    r.headers_mut().insert(header::LOCATION, loc);
                }
                r
            }
            Ok(b) => bridge_error(&broker_refusal(&b), &[("service", json!(svc))]),
            Err(e) => bridge_error(&e, &[("service", json!(svc))]),
        }
    }
}
