//! The admin API (loopback only, bearer token) and its client.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /healthz` | liveness (no token) |
//! | `GET /v1/status` | stack id, gateway address, public URL, route count |
//! | `GET /v1/offers` | every `ServiceOffer` |
//! | `GET/PUT/DELETE /v1/offers/{namespace}/{name}` | one offer (PUT validates, then applies) |
//! | `POST /v1/shutdown` | graceful stop |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use obol_control::store::{ApplyOutcome, DeleteOutcome, StoreError};
use obol_control::validate::validate_offer;
use obol_control::{ServiceOffer, ServiceOfferSpec, Store, StoreExt};
use obol_gateway::Routes;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) token: Arc<str>,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    pub(crate) gateway: String,
    pub(crate) public_url: String,
    pub(crate) public_url_is_default: bool,
    pub(crate) stack_id: String,
}

/// The stack's status as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// The stack id.
    pub stack_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// The gateway's bound address.
    pub gateway: String,
    /// The public base URL.
    pub public_url: String,
    /// True when no public URL is configured (buyers elsewhere cannot reach the stack).
    pub public_url_is_default: bool,
    /// Routes the gateway serves.
    pub routes: usize,
}

/// The answer to an apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    /// `created`, `updated` or `unchanged`.
    pub outcome: String,
    /// The stored offer.
    pub offer: ServiceOffer,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn store_error(e: &StoreError) -> Response {
    let status = match e {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Deleting { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    presented.len() == state.token.len()
        && presented
            .bytes()
            .zip(state.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/offers", get(list))
        .route(
            "/v1/offers/{namespace}/{name}",
            get(get_offer).put(put_offer).delete(delete_offer),
        )
        .route("/v1/shutdown", post(shutdown))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .with_state(state)
}

async fn require_token(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&state, request.headers()) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs the bearer token from <config>/admin.token",
        )
    }
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(StackStatus {
        stack_id: state.stack_id.clone(),
        pid: std::process::id(),
        gateway: state.gateway.clone(),
        public_url: state.public_url.clone(),
        public_url_is_default: state.public_url_is_default,
        routes: state.routes.load().len(),
    })
    .into_response()
}

async fn list(State(state): State<AdminState>) -> Response {
    match state.store.list::<ServiceOfferSpec>(None).await {
        Ok(offers) => axum::Json(offers).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn get_offer(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match state.store.get::<ServiceOfferSpec>(&namespace, &name).await {
        Ok(Some(offer)) => axum::Json(offer).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("ServiceOffer {namespace}/{name} not found"),
        ),
        Err(e) => store_error(&e),
    }
}

async fn put_offer(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    axum::Json(mut offer): axum::Json<ServiceOffer>,
) -> Response {
    offer.metadata.namespace = namespace;
    offer.metadata.name = name;
    if let Err(invalid) = validate_offer(&offer) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, invalid.to_string());
    }
    match state.store.apply(&offer).await {
        Ok((stored, outcome)) => {
            let outcome = match outcome {
                ApplyOutcome::Created => "created",
                ApplyOutcome::Updated => "updated",
                ApplyOutcome::Unchanged => "unchanged",
            };
            axum::Json(Applied {
                outcome: outcome.to_owned(),
                offer: stored,
            })
            .into_response()
        }
        Err(e) => store_error(&e),
    }
}

async fn delete_offer(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match state.store.delete("ServiceOffer", &namespace, &name).await {
        Ok(DeleteOutcome::NotFound) => error(StatusCode::NOT_FOUND, format!("ServiceOffer {namespace}/{name} not found")),
        Ok(outcome) => axum::Json(json!({"deleted": outcome == DeleteOutcome::Deleted, "pending": outcome == DeleteOutcome::Marked})).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn shutdown(State(state): State<AdminState>) -> Response {
    let _ = state.stop.send(true);
    axum::Json(json!({"status": "stopping"})).into_response()
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status, when the daemon answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

/// A client of the admin API (used by the CLI).
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the admin API at `address` (`host:port`) with `token`.
    pub fn new(address: &str, token: &str) -> Self {
        Self {
            base: format!("http://{address}"),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, AdminError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| AdminError {
            status: None,
            message: format!(
                "the stack daemon at {} is not answering ({}); is it running? try `obol stack up`",
                self.base,
                e.without_url()
            ),
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(text);
            return Err(AdminError {
                status: Some(status),
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| AdminError {
            status: Some(status),
            message: format!("unexpected answer from the daemon: {e}"),
        })
    }

    /// The stack's status.
    pub async fn status(&self) -> Result<StackStatus, AdminError> {
        self.call(reqwest::Method::GET, "/v1/status", None::<&()>)
            .await
    }

    /// Every offer.
    pub async fn offers(&self) -> Result<Vec<ServiceOffer>, AdminError> {
        self.call(reqwest::Method::GET, "/v1/offers", None::<&()>)
            .await
    }

    /// One offer.
    pub async fn offer(&self, namespace: &str, name: &str) -> Result<ServiceOffer, AdminError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/offers/{namespace}/{name}"),
            None::<&()>,
        )
        .await
    }

    /// Creates or updates an offer.
    pub async fn apply(&self, offer: &ServiceOffer) -> Result<Applied, AdminError> {
        let path = format!(
            "/v1/offers/{}/{}",
            offer.metadata.namespace, offer.metadata.name
        );
        self.call(reqwest::Method::PUT, &path, Some(offer)).await
    }

    /// Deletes an offer.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<serde_json::Value, AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/offers/{namespace}/{name}"),
            None::<&()>,
        )
        .await
    }

    /// Asks the daemon to stop.
    pub async fn shutdown(&self) -> Result<serde_json::Value, AdminError> {
        self.call(reqwest::Method::POST, "/v1/shutdown", None::<&()>)
            .await
    }
}
