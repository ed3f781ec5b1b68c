//! The gateway application: the paygate over the upstream proxy, plus health, readiness and
//! metrics.

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
use axum::routing::get;
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
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// The gateway's routes: `/healthz`, `/readyz`, `/metrics`, and the paygate for everything
/// else.
pub fn app(
    routes: Arc<Routes>,
    facilitator: Arc<dyn Facilitator>,
    guard: Arc<ReplayGuard>,
    config: GatewayConfig,
) -> Result<Router, GatewayError> {
    let upstream = UpstreamClient::new(config.upstream_timeout, config.body_limit)?;
    let paygate = PaygateLayer::new(routes.clone(), facilitator, guard, config.paygate)
        .layer(UpstreamService::new(upstream));
    let state = AppState {
        routes,
        metrics: obol_facilitator::http::metrics_handle(),
    };
    Ok(Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .fallback_service(paygate))
}

async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    if state.routes.is_loaded() {
        axum::Json(json!({"status": "ready", "routes": state.routes.load().len()})).into_response()
    } else {
        GatewayError::not_ready().into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
