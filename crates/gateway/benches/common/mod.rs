//! Helpers shared by the in-process gateway benches (`gateway`, `metered`, `replicas`): servers
//! on loopback, a closed-loop load generator that measures rate, process CPU and latency and can
//! spread its requests over several servers, the paygate with its facilitator stubbed, the plain
//! proxy baseline, and pre-signed payments.

// Each bench uses a part of these helpers.
#![allow(dead_code)]

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

/// One process's CPU from `/proc/<pid>/stat`, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct ProcCpu {
    parent: u32,
    /// User + system time of the process itself.
    own: f64,
    /// User + system time of its children that exited and were waited for.
    reaped: f64,
}

/// `pid`'s CPU (`"self"` for this process); zero when it cannot be read.
fn proc_cpu(pid: &str) -> ProcCpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14
    // (clock ticks of 1/100 s).
    ProcCpu {
        parent: field(1) as u32,
        own: (field(11) + field(12)) / 100.0,
        reaped: (field(13) + field(14)) / 100.0,
    }
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
pub(crate) fn cpu_seconds() -> f64 {
    proc_cpu("self").own
}

/// CPU time of process `root` and its children, living or reaped, in seconds (a PostgreSQL
/// server: the postmaster and the backends it forked).
pub(crate) fn tree_cpu_seconds(root: u32) -> f64 {
    let top = proc_cpu(&root.to_string());
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| proc_cpu(&pid.to_string()))
        .filter(|child| child.parent == root)
        .map(|child| child.own)
        .sum();
    top.own + top.reaped + children
}

/// One measure: requests per second and the process's CPU per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) per_second: f64,
    pub(crate) cpu_us: f64,
}

/// A measure with every request's latency, sorted.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    pub(crate) run: Run,
    pub(crate) latencies: Vec<Duration>,
}

/// Equal-sized runs as one: the rate over their total time, the mean CPU per request.
pub(crate) fn combined(runs: &[Run]) -> Run {
    let n = runs.len() as f64;
    Run {
        per_second: n / runs.iter().map(|r| 1.0 / r.per_second).sum::<f64>(),
        cpu_us: runs.iter().map(|r| r.cpu_us).sum::<f64>() / n,
    }
}

/// The `p` quantile (0–1) of `sorted` latencies, nearest rank.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    sorted[((last as f64 * p).round() as usize).min(last)]
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
    load_over(&[url], headers, body, expect, CONCURRENCY)
        .await
        .run
}

/// [`load`] spread over `urls` (request `i` goes to `urls[i % urls.len()]`: round robin), with
/// `in_flight` requests at a time, timing each request.
pub(crate) async fn load_over(
    urls: &[String],
    headers: Arc<Vec<Option<String>>>,
    body: Option<Bytes>,
    expect: StatusCode,
    in_flight: usize,
) -> Timed {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Arc<[String]> = urls.into();
    let n = headers.len();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, next, headers, urls, body) = (
            client.clone(),
            next.clone(),
            headers.clone(),
            urls.clone(),
            body.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(header) = headers.get(i) else { break };
                let url = &urls[i % urls.len()];
                let sent = Instant::now();
                let mut request = match &body {
                    Some(body) => client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.clone()),
                    None => client.get(url),
                };
                if let Some(value) = header {
                    request = request.header(PAYMENT_SIGNATURE, value);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let answer = response.bytes().await.unwrap();
                assert_eq!(status, expect, "{}", String::from_utf8_lossy(&answer));
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Timed {
        run: Run {
            per_second: n as f64 / elapsed.as_secs_f64(),
            cpu_us: (cpu_seconds() - cpu) * 1e6 / n as f64,
        },
        latencies,
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
    let guard = if std::env::var_os("BENCH_GUARD_MEMORY").is_some() {
        ReplayGuard::in_memory().unwrap()
    } else {
        ReplayGuard::open(guard).unwrap()
    };
    paygate_with(routes, Arc::new(guard)).await
}

/// A gateway over `routes` with the facilitator stubbed and `guard` as its double-serve guard
/// (any store: replicas share a PostgreSQL one).
pub(crate) async fn paygate_with(routes: Vec<Route>, guard: Arc<ReplayGuard>) -> String {
    let table = Arc::new(Routes::new());
    table.store(RouteTable::new(routes));
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
    presign_by(requirement, n, &[LocalSigner::random()])
}

/// [`presign`] by `buyers` in turn (payment `i` is buyer `i % buyers.len()`'s). The gateway
/// admits a payment only within 30 s of its signing (`ADMISSION_SLACK_SECS`): sign shortly
/// before sending.
pub(crate) fn presign_by(
    requirement: &v2::PaymentRequirements,
    n: usize,
    buyers: &[LocalSigner],
) -> Vec<Option<String>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (0..n)
        .map(|i| {
            let buyer = &buyers[i % buyers.len()];
            let unsigned = prepare_payment(
                requirement,
                None,
                buyer.address(),
                ValidityWindow::for_request(now, 300),
                random_nonce(),
            )
            .unwrap();
            let payload = unsigned.sign_with(buyer).unwrap();
            Some(header::encode(&payload).unwrap())
        })
        .collect()
}
