//! The gateway over real loopback HTTP: a devnet, the embedded facilitator, a test upstream,
//! and x402 clients built from our own signer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    missing_debug_implementations
)]

mod flows;
mod hostile;
mod limits;
mod mcp;
mod metering;
mod modes;
mod replicas;
mod routes;
mod siwx;
mod streams;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use obol_chain::ChainClient;
use obol_devnet::{Devnet, USDC};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::{EvmFacilitator, Facilitator, FacilitatorConfig, FacilitatorError};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::proxy::UpstreamAuth;
use obol_gateway::server::{GatewayConfig, gateway, serve};
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, Routes, SettleMode};
use obol_x402::LocalSigner;
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::signer::{ValidityWindow, random_nonce};
use obol_x402::token::TokenRegistry;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse, v2,
};
use serde_json::json;

pub use obol_testkit::accounts::PAY_TO;
pub use obol_testkit::now;
pub use obol_testkit::x402::challenge_of;

/// Serves `router` on a free loopback port, with the gateway's own `serve`.
pub async fn spawn(router: Router) -> String {
    let (listener, url) = obol_testkit::http::bind().await;
    tokio::spawn(serve(listener, router, std::future::pending()));
    url
}

/// What the test upstream saw.
#[derive(Default)]
pub struct UpstreamLog {
    pub calls: AtomicUsize,
}

/// A test upstream: `/echo` returns the request headers it saw, `/fail` answers 500, `/slow`
/// waits 300 ms, `/stream` is an SSE stream of five events.
pub async fn upstream(log: Arc<UpstreamLog>) -> String {
    let counted = |log: Arc<UpstreamLog>| {
        move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                log.calls.fetch_add(1, Ordering::SeqCst);
                let seen: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                    .collect();
                axum::Json(json!({"ok": true, "headers": seen}))
            }
        }
    };
    let failing = {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                log.calls.fetch_add(1, Ordering::SeqCst);
                (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response()
            }
        }
    };
    let slow = {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                log.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                axum::Json(json!({"slow": true}))
            }
        }
    };
    let router = Router::new()
        .route("/echo", any(counted(log.clone())))
        .route("/v1/chat/completions", any(counted(log.clone())))
        .route("/fail", any(failing))
        .route("/slow", any(slow))
        .route("/stream", get(streams::sse_upstream))
        .route("/slowstream", get(streams::slow_sse_upstream))
        .route("/latestream", get(streams::late_sse_upstream));
    spawn(router).await
}

/// Wraps a facilitator to count calls, or to fail on purpose.
pub struct Probe {
    pub inner: Arc<dyn Facilitator>,
    pub verifies: AtomicUsize,
    pub settles: AtomicUsize,
    pub reject_settles: std::sync::atomic::AtomicBool,
    pub stall_verify: std::sync::atomic::AtomicBool,
    /// The next this-many settles really settle, then answer `settlement_pending`.
    pub pending_settles: AtomicUsize,
    /// The next this-many settles really settle, then lose the answer (a transport error).
    pub lost_settles: AtomicUsize,
    /// Settle for real, then never answer (the process dies mid-settlement).
    pub hang_after_settle: std::sync::atomic::AtomicBool,
    /// Answer `balance` with "cannot read" (as a remote facilitator does).
    pub hide_balance: std::sync::atomic::AtomicBool,
}

impl Probe {
    /// A fresh embedded facilitator (nothing remembered: a new process) paying gas from
    /// `gas_key`, behind a probe.
    pub fn over(client: &ChainClient, gas_key: &str) -> Arc<Self> {
        let signer = LocalSigner::from_private_key_hex(gas_key).unwrap();
        let facilitator = EvmFacilitator::new(
            FacilitatorConfig::default(),
            vec![ChainSetup {
                client: client.clone(),
                signer,
            }],
        )
        .unwrap();
        Arc::new(Self {
            inner: Arc::new(facilitator),
            verifies: AtomicUsize::new(0),
            settles: AtomicUsize::new(0),
            reject_settles: false.into(),
            stall_verify: false.into(),
            pending_settles: AtomicUsize::new(0),
            lost_settles: AtomicUsize::new(0),
            hang_after_settle: false.into(),
            hide_balance: false.into(),
        })
    }
}

impl Probe {
    /// How many settles reached the probe.
    pub fn settled(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }

    /// How many verifies reached the probe.
    pub fn verified(&self) -> usize {
        self.verifies.load(Ordering::SeqCst)
    }
}

/// Takes one from `counter` when it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Facilitator for Probe {
    async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        if self.stall_verify.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        self.inner.verify(request).await
    }

    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        if self.reject_settles.load(Ordering::SeqCst) {
            return Ok(SettleResponse {
                success: false,
                error_reason: Some("invalid_exact_evm_insufficient_balance".into()),
                network: "eip155:84532".into(),
                ..SettleResponse::default()
            });
        }
        let receipt = self.inner.settle(request).await?;
        if self.hang_after_settle.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if take_one(&self.pending_settles) {
            return Ok(SettleResponse {
                success: false,
                error_reason: Some("settlement_pending".into()),
                ..receipt
            });
        }
        if take_one(&self.lost_settles) {
            return Err(FacilitatorError::Remote {
                url: "http://facilitator.test".into(),
                status: None,
                message: "connection reset before the answer".into(),
                retriable: true,
            });
        }
        Ok(receipt)
    }

    fn reads_balances(&self) -> bool {
        !self.hide_balance.load(Ordering::SeqCst) && self.inner.reads_balances()
    }

    async fn balance(
        &self,
        chain_id: u64,
        asset: obol_x402::primitives::Address,
        owner: obol_x402::primitives::Address,
    ) -> Result<Option<obol_x402::primitives::U256>, FacilitatorError> {
        if self.hide_balance.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.balance(chain_id, asset, owner).await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.inner.supported().await
    }
}

pub struct Fixture {
    pub devnet: Devnet,
    pub client: ChainClient,
    pub probe: Arc<Probe>,
    pub log: Arc<UpstreamLog>,
    /// The test upstream's base URL.
    pub upstream: String,
    pub routes: Arc<Routes>,
    pub guard_path: std::path::PathBuf,
    pub gateway: String,
    /// The internal listener: `/metrics`, ForwardAuth `/verify`.
    pub internal: String,
    pub dir: tempfile::TempDir,
}

pub fn option(symbol: &str, amount: &str) -> PaymentOption {
    let token = TokenRegistry::builtin()
        .resolve(symbol, "base-sepolia")
        .unwrap()
        .clone();
    let requirements = obol_testkit::x402::requirement(symbol, amount, PAY_TO);
    PaymentOption::exact(requirements, per_request("0.001"), &token)
}

pub fn offer(name: &str, upstream: &str, kind: OfferKind, symbol: &str, amount: &str) -> Route {
    Route::below_prefix(Offer {
        upstream_auth: Some(UpstreamAuth::new("Authorization", "upstream-secret").unwrap()),
        description: format!("test offer {name}"),
        ..Offer::at_services(
            name,
            kind,
            upstream.parse().unwrap(),
            vec![option(symbol, amount)],
        )
    })
}

/// A per-request price of `amount`.
pub fn per_request(amount: &str) -> Price {
    Price {
        unit: PriceUnit::PerRequest,
        amount: amount.parse().unwrap(),
    }
}

/// `route` in settle-before-serve mode.
fn settle_first(mut route: Route) -> Route {
    Arc::make_mut(&mut route.offer).settle = SettleMode::SettleFirst;
    route
}

impl Fixture {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devnet = Devnet::start().await.unwrap();
        let client = ChainClient::connect("base-sepolia", &devnet.endpoints()).unwrap();
        let probe = Probe::over(&client, devnet.key(9));
        let log = Arc::new(UpstreamLog::default());
        let upstream = upstream(log.clone()).await;
        let routes = Arc::new(Routes::new());
        routes.store(RouteTable::new(vec![
            offer("echo", &upstream, OfferKind::Http, "USDC", "1000"),
            offer("llm", &upstream, OfferKind::Inference, "USDC", "2000"),
            settle_first(offer("first", &upstream, OfferKind::Http, "USDC", "1000")),
            offer(
                "obol",
                &upstream,
                OfferKind::Http,
                "OBOL",
                "1000000000000000",
            ),
        ]));
        let guard_path = dir.path().join("guard.sqlite");
        let (gateway, internal) =
            Self::gateway_pair_with(&routes, &probe, &guard_path, |_| {}).await;
        Self {
            devnet,
            client,
            probe,
            log,
            upstream,
            routes,
            guard_path,
            gateway,
            internal,
            dir,
        }
    }

    /// The guard's files as a process killed now would leave them, copied aside: a gateway
    /// opened on the copy is a restart. (The running gateway keeps its store locked, as a live
    /// process does.)
    pub fn guard_after_a_crash(&self) -> std::path::PathBuf {
        static RESTARTS: AtomicUsize = AtomicUsize::new(0);
        let n = RESTARTS.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("restart-{n}"));
        std::fs::create_dir(&dir).unwrap();
        let copy = dir.join("guard.sqlite");
        for suffix in ["", "-wal"] {
            let from = format!("{}{suffix}", self.guard_path.display());
            if std::path::Path::new(&from).exists() {
                std::fs::copy(&from, format!("{}{suffix}", copy.display())).unwrap();
            }
        }
        copy
    }

    /// A gateway instance over the same routes, facilitator and guard file.
    pub async fn gateway(
        routes: &Arc<Routes>,
        probe: &Arc<Probe>,
        guard_path: &std::path::Path,
    ) -> String {
        Self::gateway_with(routes, probe, guard_path, |_| {}).await
    }

    /// [`Fixture::gateway`] with a tuned configuration.
    pub async fn gateway_with(
        routes: &Arc<Routes>,
        probe: &Arc<Probe>,
        guard_path: &std::path::Path,
        tune: impl FnOnce(&mut GatewayConfig),
    ) -> String {
        Self::gateway_pair_with(routes, probe, guard_path, tune)
            .await
            .0
    }

    /// A gateway's public and internal listeners.
    pub async fn gateway_pair_with(
        routes: &Arc<Routes>,
        probe: &Arc<Probe>,
        guard_path: &std::path::Path,
        tune: impl FnOnce(&mut GatewayConfig),
    ) -> (String, String) {
        let guard = Arc::new(ReplayGuard::open(guard_path).unwrap());
        Self::gateway_over(routes, probe, guard, tune).await
    }

    /// A gateway's public and internal listeners, over `guard`.
    pub async fn gateway_over(
        routes: &Arc<Routes>,
        probe: &Arc<Probe>,
        guard: Arc<ReplayGuard>,
        tune: impl FnOnce(&mut GatewayConfig),
    ) -> (String, String) {
        let mut config = GatewayConfig::default();
        config.paygate.verify_timeout = Duration::from_secs(2);
        tune(&mut config);
        let served = gateway(routes.clone(), probe.clone(), guard, config).unwrap();
        (spawn(served.public).await, spawn(served.internal).await)
    }

    /// The gateway's `/metrics` exposition.
    pub async fn metrics(&self) -> String {
        obol_testkit::http::get_text(format!("{}/metrics", self.internal)).await
    }

    pub fn buyer(&self, index: usize) -> LocalSigner {
        LocalSigner::from_private_key_hex(self.devnet.key(index)).unwrap()
    }

    pub async fn usdc(&self, owner: &str) -> obol_x402::primitives::U256 {
        self.client
            .token_balance(USDC, owner.parse().unwrap())
            .await
            .unwrap()
    }
}

/// Signs `accepts[index]` of a challenge and returns the `PAYMENT-SIGNATURE` value.
pub fn sign(buyer: &LocalSigner, required: &v2::PaymentRequired, index: usize) -> String {
    sign_window(
        buyer,
        required,
        index,
        ValidityWindow::for_request(now(), 300),
    )
}

/// [`sign`] with a chosen validity window.
pub fn sign_window(
    buyer: &LocalSigner,
    required: &v2::PaymentRequired,
    index: usize,
    window: ValidityWindow,
) -> String {
    obol_testkit::x402::pay(buyer, required, index, window, random_nonce())
}

/// GETs `base + path` with a `PAYMENT-SIGNATURE`.
pub async fn paid_get(base: &str, path: &str, payment: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header(obol_x402::header::PAYMENT_SIGNATURE, payment)
        .send()
        .await
        .unwrap()
}

/// GETs `path` unpaid, signs the first option with `buyer`, and returns the header value.
pub async fn pay_for(fixture: &Fixture, path: &str, buyer: &LocalSigner) -> String {
    let response = reqwest::get(format!("{}{path}", fixture.gateway))
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    sign(buyer, &challenge_of(&response), 0)
}
