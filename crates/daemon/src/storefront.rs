//! The storefront's HTTP side: renders from the store on each request (cheap: one list),
//! with the catalog headers of obol-stack.md §6.1 (CORS `*`, five-minute caching).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use obol_control::storefront;
use obol_control::{ServiceOffer, ServiceOfferSpec, Store, StoreExt};
use obol_x402::token::TokenRegistry;

#[derive(Clone)]
struct StorefrontState {
    store: Arc<dyn Store>,
    tokens: Arc<TokenRegistry>,
    base_url: Arc<str>,
}

/// `/`, `/api/services.json`, `/skill.md`, `/openapi.json`.
pub(crate) fn router(store: Arc<dyn Store>, base_url: &str) -> Router {
    let state = StorefrontState {
        store,
        tokens: Arc::new(TokenRegistry::builtin()),
        base_url: Arc::from(base_url.trim_end_matches('/')),
    };
    Router::new()
        .route("/", get(index))
        .route("/api/services.json", get(services))
        .route("/skill.md", get(skill))
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

async fn offers(state: &StorefrontState) -> Vec<ServiceOffer> {
    state
        .store
        .list::<ServiceOfferSpec>(None)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "storefront cannot list offers");
            Vec::new()
        })
}

fn catalog(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn index(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    catalog(
        "text/html; charset=utf-8",
        storefront::html(&state.tokens, &state.base_url, &offers, now),
    )
}

async fn services(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = storefront::services_json(&state.tokens, &state.base_url, &offers, now);
    catalog(
        "application/json",
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
}

async fn skill(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    catalog(
        "text/markdown; charset=utf-8",
        storefront::skill_md(&state.tokens, &state.base_url, &offers, now),
    )
}

async fn openapi(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = storefront::openapi_json(&state.base_url, &offers, now);
    catalog(
        "application/json",
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
}
