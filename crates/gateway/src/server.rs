//! The gateway application: the paygate over the upstream proxy with health and readiness
//! (public), and metrics and ForwardAuth (internal: never on the buyers' listener).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, header};
use axum::response::IntoResponse as _;
use axum::routing::{any, get};
use obol_facilitator::Facilitator;
use serde_json::json;
use tokio::net::TcpListener;
use tower::{Layer as _, Service};

use crate::error::GatewayError;
use crate::guard::ReplayGuard;
use crate::paygate::{PaygateConfig, PaygateLayer};
use crate::proxy::{DEFAULT_UPSTREAM_TIMEOUT, UpstreamClient};
use crate::route::{Offer, Routes};

/// Default cap on request bodies (4 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Everything the gateway is configured with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Paygate tunables (public URL, facilitator timeouts, buffering).
    pub paygate: PaygateConfig,
    /// Budget for an upstream to start answering.
    pub upstream_timeout: Duration,
    /// Cap on request bodies.
    pub body_limit: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            paygate: PaygateConfig::default(),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// The inner service: proxies a request to the offer the paygate put in its extensions.
#[derive(Debug, Clone)]
pub struct UpstreamService {
    client: UpstreamClient,
}

impl UpstreamService {
    /// Over `client`.
    pub fn new(client: UpstreamClient) -> Self {
        Self { client }
    }
}

impl Service<Request<Body>> for UpstreamService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let Some(offer) = parts.extensions.get::<Arc<Offer>>().cloned() else {
                return Ok(GatewayError::not_found().into_response());
            };
            Ok(match client.forward(&offer, &parts, body).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            })
        })
    }
}

#[derive(Clone)]
struct AppState {
    routes: Arc<Routes>,
    guard: Arc<ReplayGuard>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    forward_auth: PaygateLayer,
}

async fn forward_auth(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response<Body> {
    state.forward_auth.forward_auth(headers).await
}

/// The gateway's two faces.
#[derive(Debug)]
pub struct Gateway {
    /// For buyers: the paygate for everything, plus `/healthz` and `/readyz`.
    pub public: Router,
    /// Never for buyers (mount it on a loopback listener): `/metrics` (sales and, in the
    /// daemon, the buyer's pools and spend) and `/verify` (Traefik ForwardAuth, never
    /// settles).
    pub internal: Router,
}

/// The gateway's public and internal routers, sharing one paygate (and guard).
pub fn gateway(
    routes: Arc<Routes>,
    facilitator: Arc<dyn Facilitator>,
    guard: Arc<ReplayGuard>,
    config: GatewayConfig,
) -> Result<Gateway, GatewayError> {
    let upstream = UpstreamClient::new(config.upstream_timeout, config.body_limit)?;
    let layer = PaygateLayer::new(routes.clone(), facilitator, guard.clone(), config.paygate);
    let paygate = layer.layer(UpstreamService::new(upstream));
    let state = AppState {
        routes,
        guard,
        metrics: obol_facilitator::http::metrics_handle(),
        forward_auth: layer,
    };
    let public = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route(
            &format!("{}/{{nonce}}", crate::paygate::RECEIPTS_PATH),
            get(receipt),
        )
        .with_state(state.clone())
        .fallback_service(paygate);
    let internal = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/verify", any(forward_auth))
        .with_state(state);
    Ok(Gateway { public, internal })
}

/// The public router alone (see [`gateway`]).
pub fn app(
    routes: Arc<Routes>,
    facilitator: Arc<dyn Facilitator>,
    guard: Arc<ReplayGuard>,
    config: GatewayConfig,
) -> Result<Router, GatewayError> {
    Ok(gateway(routes, facilitator, guard, config)?.public)
}

/// `GET /.well-known/x402/receipts/<nonce>`: the settlement of the payment with that
/// authorization nonce — 200 with the receipt once settled (with the `amount` charged when the
/// settlement said: a metered payment's), 202 while it is under way, 404 for a payment this
/// gateway does not know (or one whose record expired).
async fn receipt(
    State(state): State<AppState>,
    axum::extract::Path(nonce): axum::extract::Path<String>,
) -> axum::response::Response {
    let Ok(nonce) = nonce.parse::<obol_x402::primitives::B256>() else {
        return GatewayError::not_found().into_response();
    };
    match state.guard.receipt(nonce).await {
        None => GatewayError::not_found().into_response(),
        Some(found) => {
            let mut body = json!({
                "success": found.settled,
                "transaction": found.transaction,
                "network": format!("eip155:{}", found.chain_id),
                "payer": found.payer.to_checksum(None),
            });
            if let Some(amount) = found.amount {
                body["amount"] = amount.to_string().into();
            }
            let status = if found.settled {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::ACCEPTED
            };
            (status, axum::Json(body)).into_response()
        }
    }
}

async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    if state.routes.is_loaded() {
        axum::Json(json!({"status": "ready", "routes": state.routes.load().len()})).into_response()
    } else {
        GatewayError::not_ready().into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> axum::response::Response {
    let table = state.routes.load();
    let live: Vec<(String, String)> = table
        .routes()
        .map(|r| (r.offer.namespace.clone(), r.offer.name.clone()))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prune(&state.metrics.render(), &live),
    )
        .into_response()
}

/// Drops the per-offer series of offers no longer in the route table, so a removed offer's
/// last-success gauge does not linger (obol-stack.md §4.9).
fn prune(exposition: &str, live: &[(String, String)]) -> String {
    let label = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("{key}=\""))? + key.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    let mut out = String::with_capacity(exposition.len());
    for line in exposition.lines() {
        let stale = line.starts_with("obol_x402_verifier_")
            && match (label(line, "offer_namespace"), label(line, "offer_name")) {
                (Some(ns), Some(name)) => !live.iter().any(|(n, o)| *n == ns && *o == name),
                _ => false,
            };
        if !stale {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY on every connection: a paid stream, its trailers and small answers are
    // written in pieces, which Nagle's algorithm would hold for the client's delayed ACK
    // (about 40 ms each, docs/performance.md).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    serve_on(listener, app, shutdown).await
}

/// Serves `app` on any listener of socket addresses (plain TCP, or TLS: [`crate::tls`]).
pub(crate) async fn serve_on<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    // The client's address goes with each request (`ConnectInfo`): payment verifications are
    // limited per client. (axum reads it through `TapIo` from any listener of socket
    // addresses.)
    let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_removed_offers_only() {
        let text = "# TYPE obol_x402_verifier_requests_total counter\n\
obol_x402_verifier_requests_total{offer_namespace=\"default\",offer_name=\"kept\",chain=\"eip155:84532\",asset_symbol=\"USDC\"} 3\n\
obol_x402_verifier_requests_total{offer_namespace=\"default\",offer_name=\"gone\",chain=\"eip155:84532\",asset_symbol=\"USDC\"} 1\n\
obol_x402_facilitator_requests_total{endpoint=\"verify\",outcome=\"ok\"} 9\n";
        let pruned = prune(text, &[("default".into(), "kept".into())]);
        assert!(pruned.contains("offer_name=\"kept\""));
        assert!(!pruned.contains("offer_name=\"gone\""));
        assert!(pruned.contains("obol_x402_facilitator_requests_total"));
        assert!(pruned.contains("# TYPE"));
    }
}
