//! The storefront's HTTP side: renders from the store on each request (cheap: one list),
//! with the catalog headers of obol-stack.md §6.1 (CORS `*`, five-minute caching), and the
//! ERC-8004 registration document at `/.well-known/agent-registration.json` (§6.5: active from
//! the registration-enabled offers, or the tombstone; one-minute caching, since it changes
//! when an agent id is recorded). The stack's icon (`assets/agent-icon.png`, drawn by
//! `assets/agent-icon.py`) answers both the document's default `image` (`/agent-icon.png`) and
//! the catalog's `logoUrl` (`/obol-stack-logo.png`).

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use obol_config::public_url::SharedPublicUrl;
use obol_config::stack::{Branding, StackFile};
use obol_control::identity::{AgentIdentitySpec, DEFAULT_IDENTITY, default_identity};
use obol_control::registration::{self, ChainIdSource};
use obol_control::{ServiceOffer, ServiceOfferSpec, Store, StoreExt};
use obol_control::{storefront, wellknown};
use obol_x402::token::TokenRegistry;

#[derive(Clone)]
struct StorefrontState {
    store: Arc<dyn Store>,
    tokens: Arc<TokenRegistry>,
    public_url: SharedPublicUrl,
    chains: ChainIdSource,
    stack_file: Arc<Path>,
}

impl StorefrontState {
    /// The stack's public URL now (a tunnel may change it while the stack serves).
    fn base_url(&self) -> String {
        self.public_url
            .get()
            .map(|url| url.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }
}

/// The storefront's branding, read from the stack settings on each request (`obol sell info
/// set` applies without a restart); unreadable settings are the defaults.
pub(crate) fn branding(stack_file: &Path) -> Branding {
    match StackFile::load(stack_file) {
        Ok(settings) => settings.branding.unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the branding; showing the defaults");
            Branding::default()
        }
    }
}

/// `/`, `/api/services.json`, `/skill.md`, `/openapi.json` and
/// `/.well-known/agent-registration.json`; `chains` resolves the identity's chain names.
pub(crate) fn router(
    store: Arc<dyn Store>,
    public_url: SharedPublicUrl,
    chains: ChainIdSource,
    stack_file: &Path,
) -> Router {
    let state = StorefrontState {
        store,
        tokens: Arc::new(TokenRegistry::builtin()),
        public_url,
        chains,
        stack_file: Arc::from(stack_file),
    };
    Router::new()
        .route("/", get(index))
        .route("/api/services.json", get(services))
        .route("/skill.md", get(skill))
        .route("/openapi.json", get(openapi))
        .route("/.well-known/openapi.json", get(openapi))
        .route("/.well-known/x402", get(x402_resources))
        .route("/.well-known/x402.json", get(x402_json))
        .route("/llms.txt", get(llms_txt))
        .route(obol_erc8004::WELL_KNOWN_PATH, get(agent_registration))
        .route(registration::DEFAULT_IMAGE_PATH, get(icon))
        .route("/obol-stack-logo.png", get(icon))
        .with_state(state)
}

/// The stack's icon: a 128×128 PNG compiled into the binary.
async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_bytes!("../assets/agent-icon.png").as_slice(),
    )
        .into_response()
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

pub(crate) fn catalog(content_type: &'static str, body: String) -> Response {
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
        storefront::html(
            &state.tokens,
            &state.base_url(),
            &offers,
            now,
            &branding(&state.stack_file),
        ),
    )
}

async fn services(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = storefront::services_json(
        &state.tokens,
        &state.base_url(),
        &offers,
        now,
        &branding(&state.stack_file),
    );
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
        storefront::skill_md(
            &state.tokens,
            &state.base_url(),
            &offers,
            now,
            &branding(&state.stack_file),
        ),
    )
}

async fn openapi(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = storefront::openapi_json(&state.tokens, &state.base_url(), &offers, now);
    catalog(
        "application/json",
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
}

async fn x402_resources(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = wellknown::x402_resources(&state.tokens, &state.base_url(), &offers, now);
    catalog(
        "application/json",
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
}

async fn x402_json(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    let value = wellknown::x402_json(&state.tokens, &state.base_url(), &offers, now);
    catalog(
        "application/json",
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
}

async fn llms_txt(State(state): State<StorefrontState>) -> Response {
    let offers = offers(&state).await;
    let now = obol_config::time::unix_now();
    catalog(
        "text/markdown; charset=utf-8",
        wellknown::llms_txt(
            &state.tokens,
            &state.base_url(),
            &offers,
            now,
            &branding(&state.stack_file),
        ),
    )
}

/// The registration document. A store failure is a 503, never a document without the
/// registrations (a buyer would take it for a real tombstone).
async fn agent_registration(State(state): State<StorefrontState>) -> Response {
    let identity = match state
        .store
        .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
        .await
    {
        Ok(identity) => identity.unwrap_or_else(default_identity),
        Err(error) => {
            tracing::error!(%error, "cannot read the agent identity");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response();
        }
    };
    let offers = match state.store.list::<ServiceOfferSpec>(None).await {
        Ok(offers) => offers,
        Err(error) => {
            tracing::error!(%error, "cannot list offers for the registration document");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response();
        }
    };
    let chains = (state.chains)();
    let now = obol_config::time::unix_now();
    let base_url = state.base_url();
    let mut document = registration::document(
        &offers,
        &identity,
        &base_url,
        |chain| chains.registry(chain),
        now,
    );
    // The branding's logo stands in for the stack's default icon (an image the identity or
    // the offer names wins).
    let default_image = format!("{base_url}{}", registration::DEFAULT_IMAGE_PATH);
    if document.image.as_deref() == Some(default_image.as_str())
        && let Some(logo) = branding(&state.stack_file).logo_url
    {
        document.image = Some(logo);
    }
    let mut response = catalog("application/json", document.to_json_pretty());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
