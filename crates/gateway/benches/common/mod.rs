//! Helpers shared by the in-process gateway benches (`gateway`, `metered`): servers on
//! loopback, a closed-loop load generator that measures rate and process CPU, the paygate with
//! its facilitator stubbed, the plain proxy baseline, and pre-signed payments.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::proxy::UpstreamClient;
use obol_gateway::server::{GatewayConfig, UpstreamService, app, serve};
use obol_gateway::{Offer, PaymentOption, Route, RouteTable, Routes};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_SIGNATURE};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::v2;
use tokio::net::TcpListener;
use tower::Service;

/// Requests in flight during a measure.
pub(crate) const CONCURRENCY: usize = 32;

/// Serves `router` on a loopback port with the gateway's [`serve`].
pub(crate) async fn spawn(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router, std::future::pending()));
    url
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks of 1/100 s).
    (ticks(11) + ticks(12)) / 100.0
}

/// One measure: requests per second and the process's CPU per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) per_second: f64,
    pub(crate) cpu_us: f64,
}

/// Sends one request per entry of `headers` (its `PAYMENT-SIGNATURE`, if any) to `url`,
/// [`CONCURRENCY`] in flight, each answer expected to be `expect` and read to the end. A GET,
/// or a POST of `body` as JSON when there is one.
pub(crate) async fn load(
    url: String,
    headers: Arc<Vec<Option<String>>>,
    body: Option<Bytes>,
    expect: StatusCode,
) -> Run {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let n = headers.len();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, next, headers, url, body) = (
            client.clone(),
            next.clone(),
            headers.clone(),
            url.clone(),
            body.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(header) = headers.get(i) else { break };
                let mut request = match &body {
                    Some(body) => client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone()),
                    None => client.get(&url),
                };
                if let Some(value) = header {
                    request = request.header(PAYMENT_SIGNATURE, value);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), expect);
                response.bytes().await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    Run {
        per_second: n as f64 / elapsed.as_secs_f64(),
        cpu_us: (cpu_seconds() - cpu) * 1e6 / n as f64,
    }
}

/// An `exact` option: 0.001 USDC (EIP-3009) per request on Base Sepolia.
pub(crate) fn exact_option() -> PaymentOption {
    let requirements: v2::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}
    }))
    .unwrap();
    PaymentOption {
        requirements,
        price: Price {
            unit: PriceUnit::PerRequest,
            amount: "0.001".parse().unwrap(),
        },
        asset_symbol: "USDC".into(),
        eip2612_gas_sponsoring: false,
        metering: None,
    }
}

/// A gateway over `routes` with the facilitator stubbed (approves everything, no chain) and
/// the double-serve guard at `guard` (in memory with `BENCH_GUARD_MEMORY`).
pub(crate) async fn paygate(routes: Vec<Route>, guard: &std::path::Path) -> String {
    let table = Arc::new(Routes::new());
    table.store(RouteTable::new(routes));
    let guard = Arc::new(if std::env::var_os("BENCH_GUARD_MEMORY").is_some() {
        ReplayGuard::in_memory().unwrap()
    } else {
        ReplayGuard::open(guard).unwrap()
    });
    spawn(
        app(
            table,
            Arc::new(obol_facilitator::stub::Approving),
            guard,
            GatewayConfig::default(),
        )
        .unwrap(),
    )
    .await
}

/// The plain proxy: `offer`'s upstream served without the paygate.
pub(crate) async fn plain_proxy(offer: Arc<Offer>) -> String {
    let proxy =
        UpstreamService::new(UpstreamClient::new(Duration::from_secs(30), 4 << 20).unwrap());
    spawn(
        Router::new().fallback_service(tower::service_fn(move |mut request: Request<Body>| {
            let mut proxy = proxy.clone();
            request.extensions_mut().insert(offer.clone());
            async move { Ok::<Response<Body>, Infallible>(proxy.call(request).await.unwrap()) }
        })),
    )
    .await
}

/// `n` distinct payments for `requirement`, signed by one buyer, as `PAYMENT-SIGNATURE`
/// values (signing is the buyer's cost: done before timing).
pub(crate) fn presign(requirement: &v2::PaymentRequirements, n: usize) -> Vec<Option<String>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let buyer = LocalSigner::random();
    (0..n)
        .map(|_| {
            let unsigned = prepare_payment(
                requirement,
                None,
                buyer.address(),
                ValidityWindow::for_request(now, 300),
                random_nonce(),
            )
            .unwrap();
            let payload = unsigned.sign_with(&buyer).unwrap();
            Some(header::encode(&payload).unwrap())
        })
        .collect()
}
