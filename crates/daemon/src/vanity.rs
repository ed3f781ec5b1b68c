//! Vanity hostnames (`spec.hostname`), in front of the whole public listener: a request whose
//! `Host` (port dropped, lower case) is a published offer's hostname is that offer's alone —
//! `/` its page, `/openapi.json` its API at `/`, `/.well-known/x402` its resources (the
//! original's shape, `obol_control::wellknown`), and every other path below the offer's own path, marked with the
//! [`Vanity`] origin so that its 402s and sign-ins name `https://<hostname>` and the path as
//! sent. Such a request can never reach another offer or the stack's own pages. Any other
//! `Host` goes to the stack's router unchanged (the original's `so-<name>-host` route).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse as _;
use obol_control::{ServiceOfferSpec, Store, StoreExt, storefront, wellknown};
use obol_gateway::siwx::Origin;
use obol_gateway::{Offer, Routes, Vanity};
use obol_x402::token::TokenRegistry;
use tower::ServiceExt as _;

use crate::storefront::catalog;

#[derive(Clone)]
struct Hosts {
    inner: Router,
    routes: Arc<Routes>,
    store: Arc<dyn Store>,
    tokens: Arc<TokenRegistry>,
    stack_file: Arc<std::path::Path>,
}

/// `inner` behind the vanity host router.
pub(crate) fn wrap(
    inner: Router,
    routes: Arc<Routes>,
    store: Arc<dyn Store>,
    stack_file: &std::path::Path,
) -> Router {
    let hosts = Hosts {
        inner,
        routes,
        store,
        tokens: Arc::new(TokenRegistry::builtin()),
        stack_file: Arc::from(stack_file),
    };
    Router::new().fallback_service(tower::service_fn(move |request: Request<Body>| {
        let hosts = hosts.clone();
        async move { Ok::<_, Infallible>(hosts.serve(request).await) }
    }))
}

/// The request's host name: `Host` without its port, lower case (`None` for an IP literal or
/// no `Host`).
fn host_of(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    if host.starts_with('[') {
        return None;
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    Some(name.to_ascii_lowercase())
}

impl Hosts {
    async fn serve(self, mut request: Request<Body>) -> Response<Body> {
        let offer = host_of(request.headers())
            .and_then(|host| Some((self.routes.load().vanity(&host)?.clone(), host)));
        let Some((offer, host)) = offer else {
            return self.inner.oneshot(request).await.into_response();
        };
        let Some(origin) = Origin::https(&host) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        match request.uri().path() {
            "/" => return self.page(&offer, &origin).await,
            "/openapi.json" | "/.well-known/openapi.json" => {
                return self.openapi(&offer, &origin).await;
            }
            "/.well-known/x402" => return self.x402(&offer, &origin).await,
            _ => {}
        }
        let rewritten = format!(
            "{}{path_and_query}",
            offer.strip_prefix.trim_end_matches('/')
        );
        match rewritten.parse::<Uri>() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
        request.extensions_mut().insert(Vanity {
            origin,
            path_and_query,
        });
        self.inner.oneshot(request).await.into_response()
    }

    /// The offer's control-plane object (the page and the OpenAPI document are rendered from
    /// it, as the stack's storefront is).
    async fn spec(&self, offer: &Offer) -> Option<obol_control::ServiceOffer> {
        self.store
            .get::<ServiceOfferSpec>(&offer.namespace, &offer.name)
            .await
            .ok()
            .flatten()
    }

    async fn page(&self, offer: &Offer, origin: &Origin) -> Response<Body> {
        let Some(spec) = self.spec(offer).await else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let now = obol_config::time::unix_now();
        let branding = crate::storefront::branding(&self.stack_file);
        let html = storefront::html(&self.tokens, origin.as_str(), &[spec], now, &branding);
        catalog("text/html; charset=utf-8", html)
    }

    async fn x402(&self, offer: &Offer, origin: &Origin) -> Response<Body> {
        let Some(spec) = self.spec(offer).await else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let now = obol_config::time::unix_now();
        let value = wellknown::x402_resources(&self.tokens, origin.as_str(), &[spec], now);
        catalog(
            "application/json",
            serde_json::to_string_pretty(&value).unwrap_or_default(),
        )
    }

    async fn openapi(&self, offer: &Offer, origin: &Origin) -> Response<Body> {
        let Some(spec) = self.spec(offer).await else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let value = storefront::offer_openapi_json(&self.tokens, origin.as_str(), &spec);
        catalog(
            "application/json",
            serde_json::to_string_pretty(&value).unwrap_or_default(),
        )
    }
}
