//! The tunnel's admin routes (behind the admin token, on loopback) and their client:
//! `GET /v1/tunnel` (the status), `PUT /v1/tunnel` (start with the setting in the body,
//! replacing a running tunnel), `DELETE /v1/tunnel` (stop).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use obol_config::tunnel::TunnelSetting;
use serde_json::json;

use super::{TunnelStatus, Tunnels};
use crate::{AdminClient, AdminError};

/// The routes.
pub(crate) fn router(tunnels: Tunnels) -> Router {
    Router::new()
        .route("/v1/tunnel", get(status).put(start).delete(stop))
        .with_state(tunnels)
}

async fn status(State(tunnels): State<Tunnels>) -> Response {
    axum::Json(tunnels.status()).into_response()
}

async fn start(
    State(tunnels): State<Tunnels>,
    axum::Json(setting): axum::Json<TunnelSetting>,
) -> Response {
    match tunnels.start(setting).await {
        Ok(status) => axum::Json(status).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

async fn stop(State(tunnels): State<Tunnels>) -> Response {
    axum::Json(tunnels.stop().await).into_response()
}

impl AdminClient {
    /// The tunnel's status.
    pub async fn tunnel_status(&self) -> Result<TunnelStatus, AdminError> {
        self.call(reqwest::Method::GET, "/v1/tunnel", None::<&()>)
            .await
    }

    /// Starts the tunnel `setting` asks for (replacing a running one).
    pub async fn tunnel_start(&self, setting: &TunnelSetting) -> Result<TunnelStatus, AdminError> {
        self.call(reqwest::Method::PUT, "/v1/tunnel", Some(setting))
            .await
    }

    /// Stops the tunnel.
    pub async fn tunnel_stop(&self) -> Result<TunnelStatus, AdminError> {
        self.call(reqwest::Method::DELETE, "/v1/tunnel", None::<&()>)
            .await
    }
}
