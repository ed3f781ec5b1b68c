//! Gateway throughput and CPU cost, each against a baseline measured in the same run.
//!
//! `cargo bench -p obol-gateway --bench gateway` (set `BENCH_GUARD_MEMORY=1` to keep the
//! double-serve store in memory instead of an SQLite file, to see its share of the cost).
//!
//! 1. Unpaid requests: the gateway's 402 challenge vs a bare server answering a fixed 402.
//! 2. Paid requests (facilitator replaced by an instant stub, so no chain I/O): process CPU per
//!    request through the paygate vs the same upstream behind the plain proxy alone.
//! 3. Both again with the offer behind a table of 128 routes, against the one-route figures.
//!
//! Load generator, gateway and upstream share the process and the machine's 2 cores.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::routing::{any, get};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::proxy::UpstreamClient;
use obol_gateway::server::{GatewayConfig, UpstreamService, app, serve};
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, Routes};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_SIGNATURE};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::v2;
use tokio::net::TcpListener;
use tower::Service;

const CONCURRENCY: usize = 32;

async fn spawn(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router, std::future::pending()));
    url
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
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

struct Run {
    per_second: f64,
    cpu_us: f64,
}

async fn load(url: String, headers: Arc<Vec<Option<String>>>, expect: StatusCode) -> Run {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let n = headers.len();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, next, headers, url) =
            (client.clone(), next.clone(), headers.clone(), url.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(header) = headers.get(i) else { break };
                let mut request = client.get(&url);
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

fn offer(upstream: &str) -> Arc<Offer> {
    let requirements: v2::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}
    }))
    .unwrap();
    Arc::new(Offer {
        namespace: "bench".into(),
        description: "bench".into(),
        ..Offer::at_services(
            "echo",
            OfferKind::Http,
            upstream.parse().unwrap(),
            vec![PaymentOption {
                requirements,
                price: Price {
                    unit: PriceUnit::PerRequest,
                    amount: "0.001".parse().unwrap(),
                },
                asset_symbol: "USDC".into(),
                eip2612_gas_sponsoring: false,
                metering: None,
            }],
        )
    })
}

/// A gateway over `routes` with the facilitator stubbed (approves everything, no chain) and
/// the double-serve guard at `guard` (in memory with `BENCH_GUARD_MEMORY`).
async fn paygate(routes: Vec<Route>, guard: &std::path::Path) -> String {
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

#[tokio::main]
async fn main() {
    let unpaid_n = 20_000;
    let paid_n = 5_000;

    // A bare server answering a fixed 402, and a tiny upstream.
    let fixed = spawn(Router::new().route(
        "/{*path}",
        get(|| async {
            (
                StatusCode::PAYMENT_REQUIRED,
                [("content-type", "application/json")],
                "{\"x402Version\":2}",
            )
        }),
    ))
    .await;
    let upstream = spawn(Router::new().route(
        "/{*path}",
        any(|| async { axum::Json(serde_json::json!({"ok": true})) }),
    ))
    .await;

    let offer = offer(&upstream);
    let dir = std::env::temp_dir().join(format!("obol-gateway-bench-{}", std::process::id()));
    let gateway = paygate(
        vec![Route::paid("services/echo/*", offer.clone())],
        &dir.join("guard.sqlite"),
    )
    .await;
    // The same offer behind a table of 128 routes: 127 other offers' routes first (equally
    // specific, so every lookup passes them all), then the one requested.
    let mut many: Vec<Route> = (0..127)
        .map(|i| Route::paid(format!("services/other{i}/*"), offer.clone()))
        .collect();
    many.push(Route::paid("services/echo/*", offer.clone()));
    let gateway_128 = paygate(many, &dir.join("guard-128.sqlite")).await;

    // The plain proxy: the same upstream service without the paygate.
    let plain_offer = offer.clone();
    let proxy =
        UpstreamService::new(UpstreamClient::new(Duration::from_secs(30), 4 << 20).unwrap());
    let plain = spawn(Router::new().fallback_service(tower::service_fn(
        move |mut request: Request<Body>| {
            let mut proxy = proxy.clone();
            request.extensions_mut().insert(plain_offer.clone());
            async move { Ok::<Response<Body>, Infallible>(proxy.call(request).await.unwrap()) }
        },
    )))
    .await;

    let none = Arc::new(vec![None; unpaid_n]);
    // Warm up connection pools.
    load(
        format!("{fixed}/x"),
        Arc::new(vec![None; 500]),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    load(
        format!("{gateway}/services/echo/x"),
        Arc::new(vec![None; 500]),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let bare = load(
        format!("{fixed}/x"),
        none.clone(),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let challenge = load(
        format!("{gateway}/services/echo/x"),
        none.clone(),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let challenge_128 = load(
        format!("{gateway_128}/services/echo/x"),
        none,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;

    // Distinct signed payments (signing is the buyer's cost, done before timing).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let buyer = LocalSigner::random();
    let requirement = offer.options[0].requirements.clone();
    let mut payments: Vec<Option<String>> = (0..2 * paid_n)
        .map(|_| {
            let unsigned = prepare_payment(
                &requirement,
                None,
                buyer.address(),
                ValidityWindow::for_request(now, 300),
                random_nonce(),
            )
            .unwrap();
            let payload = unsigned.sign_with(&buyer).unwrap();
            Some(header::encode(&payload).unwrap())
        })
        .collect();
    load(
        format!("{plain}/services/echo/x"),
        Arc::new(vec![None; 500]),
        StatusCode::OK,
    )
    .await;
    let proxied = load(
        format!("{plain}/services/echo/x"),
        Arc::new(vec![None; paid_n]),
        StatusCode::OK,
    )
    .await;
    let payments_128 = payments.split_off(paid_n);
    let paid = load(
        format!("{gateway}/services/echo/x"),
        Arc::new(payments),
        StatusCode::OK,
    )
    .await;
    let paid_128 = load(
        format!("{gateway_128}/services/echo/x"),
        Arc::new(payments_128),
        StatusCode::OK,
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);

    println!(
        "gateway bench, {CONCURRENCY} in flight, load generator and servers in one process, 2 cores"
    );
    println!(
        "{:52} {:>9} {:>13} {:>8}",
        "measure", "req/s", "CPU µs/req", "ratio"
    );
    println!(
        "{:52} {:>9.0} {:>13.0} {:>8}",
        "bare server, fixed 402 (baseline)", bare.per_second, bare.cpu_us, "1"
    );
    println!(
        "{:52} {:>9.0} {:>13.0} {:>8.3}",
        "gateway 402 challenge",
        challenge.per_second,
        challenge.cpu_us,
        challenge.per_second / bare.per_second
    );
    println!(
        "{:52} {:>9.0} {:>13.0} {:>8}",
        "plain proxy to the upstream (baseline)", proxied.per_second, proxied.cpu_us, "1"
    );
    println!(
        "{:52} {:>9.0} {:>13.0} {:>8.3}",
        "paid request through the paygate (stub facilitator)",
        paid.per_second,
        paid.cpu_us,
        paid.cpu_us / proxied.cpu_us
    );
    println!(
        "paygate CPU per paid request beyond the plain proxy: {:.0} µs",
        paid.cpu_us - proxied.cpu_us
    );
    println!(
        "with 128 routes: 402 challenge {:.0}/s ({:.3} of 1 route), paid {:.0} µs CPU/req ({:.3} of 1 route)",
        challenge_128.per_second,
        challenge_128.per_second / challenge.per_second,
        paid_128.cpu_us,
        paid_128.cpu_us / paid.cpu_us
    );
}
