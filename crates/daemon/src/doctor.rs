//! `GET /v1/doctor`: what only the running daemon can tell `obol doctor` — its facilitator's
//! `/supported` (embedded or remote, as the gateway sees it), the payments whose settlement is
//! pending in the payment guard (SQLite locked by this process, or PostgreSQL), and the buyer
//! pools' expiries.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use obol_buyer::AuthPool;
use obol_facilitator::Facilitator;
use obol_gateway::guard::{Pending, ReplayGuard};
use obol_x402::wire::SupportedResponse;
use serde::{Deserialize, Serialize};

/// How long the daemon waits for its facilitator's `/supported` (under the doctor's own 5 s).
const SUPPORTED_TIMEOUT: Duration = Duration::from_secs(4);

/// Authorizations expiring sooner than this are reported.
pub const POOL_HORIZON_SECS: u64 = 3600;

/// The answer of `GET /v1/doctor`; each part is `{"Ok": …}` or `{"Err": "why"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoctorFacts {
    /// The daemon's clock (unix seconds) when it answered.
    pub now: u64,
    /// The facilitator's `/supported`, or why it could not be read.
    pub supported: Result<SupportedResponse, String>,
    /// Payments whose settlement is pending, or why the guard could not say.
    pub settlements: Result<Pending, String>,
    /// Every buyer pool with authorizations left, or why the pool could not say.
    pub pools: Result<Vec<PoolFacts>, String>,
}

/// One buyer pool's authorizations left and those expiring within [`POOL_HORIZON_SECS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolFacts {
    /// The pool (its purchase).
    pub pool: String,
    /// Authorizations left.
    pub available: u64,
    /// Of those, expiring within the hour.
    pub expiring: u64,
    /// The earliest expiry (unix seconds).
    pub next_expiry: Option<u64>,
}

/// What the doctor endpoint reads.
#[derive(Clone)]
pub(crate) struct DoctorState {
    pub(crate) facilitator: Arc<dyn Facilitator>,
    pub(crate) guard: Arc<ReplayGuard>,
    pub(crate) pool: Arc<AuthPool>,
}

impl std::fmt::Debug for DoctorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoctorState").finish_non_exhaustive()
    }
}

/// Gathers the facts (each part on its own: one failing does not hide the others).
pub(crate) async fn facts(state: &DoctorState) -> DoctorFacts {
    let now = obol_config::time::unix_now();
    let supported = async {
        match tokio::time::timeout(SUPPORTED_TIMEOUT, state.facilitator.supported()).await {
            Ok(Ok(supported)) => Ok(supported),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s",
                SUPPORTED_TIMEOUT.as_secs()
            )),
        }
    };
    let settlements = async { state.guard.pending().await.map_err(|e| e.to_string()) };
    let pool = state.pool.clone();
    let pools = async move {
        let horizon = now.saturating_add(POOL_HORIZON_SECS);
        match tokio::task::spawn_blocking(move || pool.expiring(horizon)).await {
            Ok(Ok(pools)) => Ok(pools
                .into_iter()
                .map(|p| PoolFacts {
                    pool: p.pool,
                    available: p.available,
                    expiring: p.expiring,
                    next_expiry: p.next_expiry,
                })
                .collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let (supported, settlements, pools) = tokio::join!(supported, settlements, pools);
    DoctorFacts {
        now,
        supported,
        settlements,
        pools,
    }
}

async fn handler(State(state): State<DoctorState>) -> Response {
    axum::Json(facts(&state).await).into_response()
}

/// `GET /v1/doctor` (mounted behind the admin token).
pub(crate) fn router(state: DoctorState) -> axum::Router {
    axum::Router::new()
        .route("/v1/doctor", axum::routing::get(handler))
        .with_state(state)
}
