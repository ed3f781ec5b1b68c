//! What the buyer proxy costs per paid call, against paying the gateway directly, in the same
//! run: `cargo bench -p obol-buyer --bench proxy`.
//!
//! Both paths reach the same gateway (facilitator stubbed, so no chain) in front of the same
//! upstream, with pre-signed authorizations for the same requirement:
//! - direct (baseline): the client POSTs each call once with the next payment header;
//! - proxy: the agent POSTs to the buyer proxy, which holds an authorization from the SQLite
//!   pool and, once the seller's terms are known (after the first call), sends it with the first
//!   request (else: unpaid, read the 402, hold, retry paid), and marks it spent (fsync'd,
//!   group-committed with the marks of other calls) before answering.
//!
//! Load generator, proxy, gateway and upstream share the process and the machine's cores. Set
//! `BENCH_POOL_MEMORY=1` to keep the pool in memory (no fsync) and see the durable mark's share.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::any;
use obol_buyer::{AuthPool, BuyerProxy, PresignOptions, Prober, Purchase, payment_header, presign};
use obol_control::offer::{OfferType, ServiceOffer, ServiceOfferSpec};
use obol_control::routes::route_table;
use obol_gateway::Routes;
use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, app, serve};
use obol_x402::LocalSigner;
use obol_x402::token::TokenRegistry;
use tokio::net::TcpListener;

const CALLS: usize = 2000;
const BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hi"}]}"#;

async fn spawn(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router, std::future::pending()));
    url
}

/// `CALLS` POSTs to `url` with `concurrency` in flight, the i-th carrying `headers[i]` when
/// given; returns calls per second and the median latency.
async fn load(
    url: &str,
    headers: Option<Arc<Vec<(&'static str, String)>>>,
    concurrency: usize,
) -> (f64, Duration) {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, headers, url) = (
            client.clone(),
            next.clone(),
            headers.clone(),
            url.to_owned(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= CALLS {
                    break;
                }
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(BODY);
                if let Some(headers) = &headers {
                    let (name, value) = &headers[i];
                    request = request.header(*name, value);
                }
                let sent = Instant::now();
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(CALLS);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let rate = CALLS as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies[latencies.len() / 2])
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = spawn(Router::new().route(
        "/{*path}",
        any(|| async { axum::Json(serde_json::json!({"ok": true})) }),
    ))
    .await;
    let offer = ServiceOffer::new(
        "bench",
        "echo",
        ServiceOfferSpec::per_request(
            OfferType::Http,
            &upstream,
            "base-sepolia",
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "0.001",
        ),
    );
    let routes = Arc::new(Routes::new());
    routes.store(route_table(
        &TokenRegistry::builtin(),
        &obol_control::secrets::NoSecrets,
        &Default::default(),
        &[offer],
    ));
    let guard = Arc::new(ReplayGuard::open(&dir.path().join("guard.sqlite")).unwrap());
    let gateway = spawn(
        app(
            routes,
            Arc::new(obol_facilitator::stub::Approving),
            guard,
            GatewayConfig::default(),
        )
        .unwrap(),
    )
    .await;
    let base = format!("{gateway}/services/echo");
    let url = format!("{base}/v1/chat/completions");

    // Pre-signed payments: 2 × CALLS sent directly, 2 × CALLS in the proxy's pool.
    let offered = Prober::new(None, Duration::from_secs(5))
        .unwrap()
        .chat(&url)
        .await
        .unwrap();
    let buyer = LocalSigner::random();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |count| {
        presign(
            &buyer,
            &offered.accepts[0],
            Some(&offered.resource),
            PresignOptions {
                count,
                ttl_secs: 3600,
                now,
            },
            &|_| {},
        )
        .unwrap()
    };
    let direct: Vec<(&'static str, String)> = sign(2 * CALLS)
        .iter()
        .map(|p| payment_header(offered.version, &p.payload).unwrap())
        .collect();
    let in_memory = std::env::var_os("BENCH_POOL_MEMORY").is_some();
    let pool = if in_memory {
        AuthPool::in_memory().unwrap()
    } else {
        AuthPool::open(&dir.path().join("auths.sqlite")).unwrap()
    };
    pool.add("bench", &sign(2 * CALLS)).unwrap();
    let proxy = BuyerProxy::new(pool, None, obol_facilitator::http::metrics_handle()).unwrap();
    proxy.set_purchases(vec![Purchase {
        model: "bench".into(),
        pool: "bench".into(),
        base,
        chain: "base-sepolia".into(),
    }]);
    let proxy_url = format!("{}/v1/chat/completions", spawn(proxy.router()).await);

    println!(
        "{CALLS} paid calls per row, facilitator stubbed, release build, pool {}",
        if in_memory {
            "in memory"
        } else {
            "in an SQLite file (synchronous=FULL)"
        }
    );
    println!("| in flight | direct (baseline) | through the buyer proxy | proxy / direct |");
    println!("| --- | --- | --- | --- |");
    let (first, second) = direct.split_at(CALLS);
    for (concurrency, headers) in [(1, first), (16, second)] {
        let (direct_rate, direct_p50) =
            load(&url, Some(Arc::new(headers.to_vec())), concurrency).await;
        let (proxy_rate, proxy_p50) = load(&proxy_url, None, concurrency).await;
        println!(
            "| {concurrency} | {direct_rate:.0}/s, p50 {:.2} ms | {proxy_rate:.0}/s, p50 {:.2} ms | {:.2}× the rate |",
            direct_p50.as_secs_f64() * 1e3,
            proxy_p50.as_secs_f64() * 1e3,
            proxy_rate / direct_rate
        );
    }
}
