//! `POST /verify`, `POST /settle`, `GET /supported`, `GET /healthz`, `GET /metrics`.
//!
//! Status conventions: an invalid payment is a **200** whose body says `isValid:false` /
//! `success:false` (the TS reference does the same), except a missing Permit2 allowance, which
//! is **412** like x402-rs and the TS server. A body that is not a verify/settle request is
//! **400** with `invalid_payload` (or `invalid_x402_version`). A facilitator failure (chain
//! unreachable) is **503**, retriable. Untrusted input never reaches the logs: only reason codes
//! and sizes are logged.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use obol_x402::wire::VerifyRequest;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{Facilitator, FacilitatorError, Reason};

/// Largest accepted request body. A verify request is ~1–2 KB; contract-wallet signatures and
/// extensions stay far below this.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Options of the HTTP service.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// When set, `/verify`, `/settle` and `/supported` require `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// Request body limit in bytes (0 = [`DEFAULT_BODY_LIMIT`]).
    pub body_limit: usize,
}

#[derive(Clone)]
struct AppState {
    facilitator: Arc<dyn Facilitator>,
    auth_token: Option<Arc<str>>,
    metrics: PrometheusHandle,
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding applications); ours then
            // only renders what it sees, which is still a valid exposition.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The service's routes.
pub fn router(facilitator: Arc<dyn Facilitator>, options: ServerOptions) -> Router {
    let limit = if options.body_limit == 0 {
        DEFAULT_BODY_LIMIT
    } else {
        options.body_limit
    };
    let state = AppState {
        facilitator,
        auth_token: options.auth_token.map(Arc::from),
        metrics: metrics_handle(),
    };
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .auth_token
        .as_ref()
        .is_none_or(|token| bearer_matches(headers, token))
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time). Shared
/// by every bearer-protected service (this one, the daemon's admin API).
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({"error": "unauthorized", "message": "a valid bearer token is required"})),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a verify/settle body, or answers 400 with the x402-shaped `invalid` body.
/// A refused request: its status and x402-shaped body.
type Rejection = (StatusCode, axum::Json<serde_json::Value>);

fn parse(body: &[u8], endpoint: &'static str) -> Result<VerifyRequest, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let reason = if message.contains("x402Version") {
            Reason::InvalidX402Version
        } else {
            Reason::InvalidPayload
        };
        metrics::counter!("obol_x402_facilitator_requests_total", "endpoint" => endpoint, "outcome" => "malformed").increment(1);
        tracing::info!(endpoint, reason = reason.as_str(), bytes = body.len(), "malformed request");
        let body = if endpoint == "verify" {
            json!({"isValid": false, "invalidReason": reason.as_str(), "invalidMessage": message})
        } else {
            json!({"success": false, "errorReason": reason.as_str(), "errorMessage": message,
                   "transaction": "", "network": ""})
        };
        (StatusCode::BAD_REQUEST, axum::Json(body))
    })
}

fn failure(error: &FacilitatorError, endpoint: &'static str) -> Response {
    let status = if error.retriable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    metrics::counter!("obol_x402_facilitator_requests_total", "endpoint" => endpoint, "outcome" => "error").increment(1);
    tracing::warn!(endpoint, error = %error, "facilitator failure");
    let body = if endpoint == "verify" {
        json!({"isValid": false, "invalidReason": "unexpected_verify_error", "invalidMessage": error.to_string()})
    } else {
        json!({"success": false, "errorReason": "unexpected_settle_error", "errorMessage": error.to_string(),
               "transaction": "", "network": ""})
    };
    (status, axum::Json(body)).into_response()
}

fn verdict_status(reason: Option<&str>) -> StatusCode {
    if reason == Some(Reason::Permit2AllowanceRequired.as_str()) {
        StatusCode::PRECONDITION_FAILED
    } else {
        StatusCode::OK
    }
}

async fn verify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let request = match parse(&body, "verify") {
        Ok(request) => request,
        Err(rejection) => return rejection.into_response(),
    };
    let started = Instant::now();
    match state.facilitator.verify(&request).await {
        Ok(response) => {
            record(
                "verify",
                outcome(response.is_valid, response.invalid_reason.as_deref()),
                started,
            );
            respond(
                verdict_status(response.invalid_reason.as_deref()),
                &response,
            )
        }
        Err(error) => failure(&error, "verify"),
    }
}

async fn settle(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let request = match parse(&body, "settle") {
        Ok(request) => request,
        Err(rejection) => return rejection.into_response(),
    };
    let started = Instant::now();
    match state.facilitator.settle(&request).await {
        Ok(response) => {
            record(
                "settle",
                outcome(response.success, response.error_reason.as_deref()),
                started,
            );
            respond(verdict_status(response.error_reason.as_deref()), &response)
        }
        Err(error) => failure(&error, "settle"),
    }
}

async fn supported(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    match state.facilitator.supported().await {
        Ok(response) => respond(StatusCode::OK, &response),
        Err(error) => failure(&error, "supported"),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `valid`/`invalid:<reason>` for the metrics label (reasons are a closed set).
fn outcome(ok: bool, reason: Option<&str>) -> String {
    if ok {
        "ok".to_owned()
    } else {
        let reason = reason.unwrap_or("unknown");
        // Only our own codes become label values; anything else is folded.
        if Reason::ALL.iter().any(|r| r.as_str() == reason) {
            reason.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

fn record(endpoint: &'static str, outcome: String, started: Instant) {
    metrics::counter!("obol_x402_facilitator_requests_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    metrics::histogram!("obol_x402_facilitator_request_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
}

fn respond<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}
