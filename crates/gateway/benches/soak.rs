//! The concurrency soak of the money invariants ([hardening]): a real gateway and the embedded
//! facilitator settling on anvil, everything on loopback, bounded in count and time. A bench,
//! not a CI test: `cargo bench -p obol-gateway --bench soak` (anvil from `scripts/install-tools`).
//!
//! 1. One payment replayed 100× at once: served exactly once, settled once (the seller's
//!    on-chain USDC delta is one price).
//! 2. 16 fresh buyers (funded through the facilitator) × 200 paid requests, each a fresh
//!    authorization signed just before it is sent, 2 in flight per buyer (32 in all): the
//!    seller's delta is exactly successes × price, every used nonce belongs to a served request
//!    (no charge without an answer, no double charge), and each buyer paid exactly for what it
//!    got. Baselines at the same concurrency, in the same run: bare upstream round trips and the
//!    gateway's unpaid 402 once; the embedded facilitator's verify + settle called directly at
//!    the start of each of 4 rounds, because anvil slows down as its state grows (the RPC probe
//!    before and after shows it), so each round's paid rate is compared with its own baseline.
//!
//! Prints a table; exits 1 if an invariant broke. `SOAK_BUYERS`, `SOAK_REQUESTS` (per buyer),
//! `SOAK_IN_FLIGHT_PER_BUYER` and `SOAK_GAS_WALLETS` reshape scenario 2. The kill -9 scenario needs
//! the `obol` binary: `cargo bench -p obol --bench soak_restart`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use obol_chain::ChainClient;
use obol_devnet::bench::{
    Rpc, Signed, balance_of_data, counting_upstream, env_or, is_settlement_pending, join_all,
    reason_of, sign,
};
use obol_devnet::{Devnet, USDC};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::{EvmFacilitator, Facilitator, FacilitatorConfig};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, gateway, serve};
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, Routes};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::primitives::{Address, U256};
use obol_x402::token::TokenRegistry;
use obol_x402::wire::{VerifyRequest, v2};
use serde_json::json;
use tokio::net::TcpListener;

/// The seller (dev account 2).
const PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
/// 0.001 USDC.
const PRICE: u64 = 1000;
/// What each fresh buyer is funded with: 1 USDC.
const FUNDING: u64 = 1_000_000;
const REPLAYS: usize = 100;
/// How often a `503 settlement_pending` answer is retried with the same payment.
const PENDING_RETRIES: usize = 40;
/// Payments per worker for each round's direct facilitator baseline.
const DIRECT_PER_WORKER: usize = 5;
/// Scenario 2 runs in this many rounds, each after its own facilitator baseline.
const ROUNDS: usize = 4;
const PATH: &str = "/services/echo/item";

async fn spawn(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router, std::future::pending()));
    url
}

fn requirement(pay_to: &str, amount: u64) -> v2::PaymentRequirements {
    let token = TokenRegistry::builtin()
        .resolve("USDC", "base-sepolia")
        .unwrap()
        .clone();
    serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:84532", "amount": amount.to_string(),
        "asset": token.address.to_checksum(None), "payTo": pay_to, "maxTimeoutSeconds": 300,
        "extra": token.requirement_extra()
    }))
    .unwrap()
}

fn echo_route(upstream: &str) -> Route {
    Route::below_prefix(Offer {
        namespace: "soak".into(),
        description: "soak".into(),
        ..Offer::at_services(
            "echo",
            OfferKind::Http,
            upstream.parse().unwrap(),
            vec![PaymentOption {
                requirements: requirement(PAY_TO, PRICE),
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

/// Sends `payment` once: status (0 on a transport error) and reason.
async fn send(client: &reqwest::Client, url: &str, payment: Option<&str>) -> (u16, String) {
    let mut request = client.get(url);
    if let Some(payment) = payment {
        request = request.header(PAYMENT_SIGNATURE, payment);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, reason_of(status, &body))
        }
        Err(e) => (0, format!("transport error: {e}")),
    }
}

/// Sends a payment; a `503 settlement_pending` is retried with the same payment, as the answer
/// asks. Returns the final status and reason, and how many sends it took.
async fn pay(client: &reqwest::Client, url: &str, payment: &str) -> (u16, String, usize) {
    let mut sends = 0;
    loop {
        let (status, reason) = send(client, url, Some(payment)).await;
        sends += 1;
        if is_settlement_pending(status, &reason) && sends <= PENDING_RETRIES {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        return (status, reason, sends);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `n` requests from `workers` sequential workers; each `job(i)` is one round trip. Returns the
/// rate and the sorted latencies.
async fn load<F, Fut>(n: usize, workers: usize, job: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (job, next) = (job.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return latencies;
                }
                let t = Instant::now();
                job(i).await;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// `n` GETs of `target` without a payment from `workers` sequential workers, each answered
/// `expected`: rate and sorted latencies.
async fn unpaid_load(
    client: &reqwest::Client,
    target: String,
    n: usize,
    workers: usize,
    expected: u16,
) -> (f64, Vec<Duration>) {
    let client = client.clone();
    load(n, workers, move |_| {
        let (client, target) = (client.clone(), target.clone());
        async move {
            let (status, _) = send(&client, &target, None).await;
            assert_eq!(status, expected);
        }
    })
    .await
}

/// The embedded facilitator alone: `n` verify + settle pairs from `workers` sequential workers,
/// paid by the dev accounts to a throwaway address (signed before timing). Rate, sorted
/// latencies, failures.
async fn direct(
    facilitator: &Arc<dyn Facilitator>,
    devnet: &Devnet,
    n: usize,
    workers: usize,
) -> (f64, Vec<Duration>, usize) {
    let sink = LocalSigner::random().address().to_checksum(None);
    let requirement = requirement(&sink, PRICE);
    let payers: Vec<LocalSigner> = [0, 1, 3, 4, 5, 6, 7, 8]
        .iter()
        .map(|&k| LocalSigner::from_private_key_hex(devnet.key(k)).unwrap())
        .collect();
    let mut requests = Vec::with_capacity(n);
    for i in 0..n {
        requests.push(VerifyRequest::V2 {
            payment_payload: sign(&payers[i % payers.len()], &requirement, None)
                .await
                .payload,
            payment_requirements: requirement.clone(),
        });
    }
    let requests: Arc<Vec<VerifyRequest>> = Arc::new(requests);
    let failures = Arc::new(AtomicUsize::new(0));
    let (rate, latencies) = {
        let (facilitator, requests, failures) =
            (facilitator.clone(), requests.clone(), failures.clone());
        load(n, workers, move |i| {
            let (facilitator, requests, failures) =
                (facilitator.clone(), requests.clone(), failures.clone());
            async move {
                let verified = facilitator.verify(&requests[i]).await.unwrap().is_valid;
                if !verified || !facilitator.settle(&requests[i]).await.unwrap().success {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await
    };
    (rate, latencies, failures.load(Ordering::Relaxed))
}

/// Median round trip of a few read RPCs the settle path makes, against anvil at its current
/// height (the chain's own cost, to tell it from ours).
async fn rpc_probe(rpc: &str, payer: Address) -> String {
    let rpc = Rpc::new(rpc);
    let balance_of = balance_of_data(payer);
    let usdc = USDC.to_checksum(None);
    let calls = [
        ("eth_blockNumber", json!([])),
        (
            "eth_call balanceOf",
            json!([{"to": usdc, "data": balance_of}, "latest"]),
        ),
        (
            "eth_getTransactionCount pending",
            json!([payer.to_checksum(None), "pending"]),
        ),
        (
            "eth_estimateGas",
            json!([{"from": payer.to_checksum(None), "to": usdc, "data": balance_of}]),
        ),
        ("evm_mine (an empty block)", json!([])),
    ];
    let mut out = Vec::new();
    for (name, params) in calls {
        let method = name.split(' ').next().unwrap_or(name);
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let answer = rpc.answer(method, &params).await;
            assert!(answer.get("error").is_none(), "{name}: {answer}");
            times.push(t.elapsed());
        }
        times.sort();
        out.push(format!("{name} {}", ms(times[10])));
    }
    out.join(", ")
}

struct Checks {
    broken: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        println!("  [{}] {what}", if ok { "ok" } else { "BROKEN" });
        if !ok {
            self.broken.push(what);
        }
    }
}

fn tally(reasons: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason).or_insert(0) += 1;
    }
    counts
}

#[tokio::main]
async fn main() {
    let buyers_n: usize = env_or("SOAK_BUYERS", 16);
    let per_buyer: usize = env_or("SOAK_REQUESTS", 200);
    let in_flight_per_buyer: usize = env_or("SOAK_IN_FLIGHT_PER_BUYER", 2);
    let gas_wallets: u32 = env_or("SOAK_GAS_WALLETS", 1);
    let started = Instant::now();
    let mut checks = Checks { broken: Vec::new() };

    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start().await.unwrap();
    let rpc = devnet.endpoint();
    let chain = ChainClient::connect("base-sepolia", &devnet.endpoints()).unwrap();
    let facilitator = EvmFacilitator::new(
        FacilitatorConfig {
            gas_wallets,
            ..FacilitatorConfig::default()
        },
        vec![ChainSetup {
            client: chain.clone(),
            signer: LocalSigner::from_private_key_hex(devnet.key(9)).unwrap(),
        }],
    )
    .unwrap();
    facilitator.fund_gas_wallets().await.unwrap();
    let facilitator: Arc<dyn Facilitator> = Arc::new(facilitator);
    let (upstream_router, upstream_calls) = counting_upstream();
    let upstream = spawn(upstream_router).await;
    let routes = Arc::new(Routes::new());
    routes.store(RouteTable::new(vec![echo_route(&upstream)]));
    let guard = Arc::new(ReplayGuard::open(&dir.path().join("guard.sqlite")).unwrap());
    let served = gateway(routes, facilitator.clone(), guard, GatewayConfig::default()).unwrap();
    let gateway_url = spawn(served.public).await;
    let url = format!("{gateway_url}{PATH}");
    let seller: Address = PAY_TO.parse().unwrap();
    let usdc = |owner: Address| {
        let chain = chain.clone();
        async move { chain.token_balance(USDC, owner).await.unwrap() }
    };
    let client = reqwest::Client::new();
    let challenge = client.get(&url).send().await.unwrap();
    assert_eq!(challenge.status(), 402);
    let required: v2::PaymentRequired =
        header::decode(challenge.headers()[PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
    let offered = required.accepts[0].clone();
    let resource = Some(required.resource.clone());
    println!(
        "concurrency soak: gateway + embedded facilitator on anvil, loopback, release build, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    // ── 1. One payment replayed 100× at once ─────────────────────────────────────────────
    let funder = LocalSigner::from_private_key_hex(devnet.key(1)).unwrap();
    let one = sign(&funder, &offered, resource.clone()).await;
    let before = usdc(seller).await;
    let calls_before = upstream_calls.load(Ordering::SeqCst);
    let barrier = Arc::new(tokio::sync::Barrier::new(REPLAYS));
    let replays = join_all((0..REPLAYS).map(|_| {
        let (client, url, header, barrier) = (
            client.clone(),
            url.clone(),
            one.header.clone(),
            barrier.clone(),
        );
        async move {
            barrier.wait().await;
            send(&client, &url, Some(&header)).await
        }
    }))
    .await;
    let delta = usdc(seller).await - before;
    let ok = replays.iter().filter(|(s, _)| *s == 200).count();
    let upstream_once = upstream_calls.load(Ordering::SeqCst) - calls_before;
    let reasons = tally(replays.into_iter().map(|(_, r)| r));
    println!("\n1. one payment replayed {REPLAYS}× concurrently");
    println!("  answers: {reasons:?}");
    checks.check(ok == 1, format!("served exactly once: {ok} × 200"));
    checks.check(
        delta == U256::from(PRICE),
        format!("settled once: seller delta {delta} == price {PRICE}"),
    );
    checks.check(
        upstream_once == 1,
        format!("upstream called once: {upstream_once}"),
    );

    // ── 2. Many buyers, many fresh authorizations ────────────────────────────────────────
    println!(
        "\n2. {buyers_n} buyers × {per_buyer} paid requests, {in_flight_per_buyer} in flight per buyer ({} in flight)",
        buyers_n * in_flight_per_buyer
    );
    let workers = buyers_n * in_flight_per_buyer;
    let probe_before = rpc_probe(&rpc, funder.address()).await;
    let buyers: Vec<LocalSigner> = (0..buyers_n).map(|_| LocalSigner::random()).collect();
    // Funded through the facilitator: dev account 1 pays each fresh wallet 1 USDC.
    let mut settles = Vec::with_capacity(buyers.len());
    for buyer in &buyers {
        let facilitator = facilitator.clone();
        let to_buyer = requirement(&buyer.address().to_checksum(None), FUNDING);
        let request = VerifyRequest::V2 {
            payment_payload: sign(&funder, &to_buyer, None).await.payload,
            payment_requirements: to_buyer,
        };
        settles.push(async move { facilitator.settle(&request).await.unwrap() });
    }
    let fundings = join_all(settles.into_iter()).await;
    assert!(
        fundings.iter().all(|r| r.success),
        "funding failed: {fundings:?}"
    );
    for buyer in &buyers {
        assert_eq!(usdc(buyer.address()).await, U256::from(FUNDING));
    }

    // Baselines at the same concurrency.
    let n = buyers_n * per_buyer;
    let (bare_rate, bare_lat) =
        unpaid_load(&client, format!("{upstream}/item"), n, workers, 200).await;
    let (unpaid_rate, unpaid_lat) = unpaid_load(&client, url.clone(), n, workers, 402).await;
    // The soak, in ROUNDS rounds. Each round starts with the facilitator-alone baseline at the
    // chain's current size: anvil's per-block cost grows with its state (see the RPC probe), so
    // a baseline measured once would flatter or shame whatever runs later. Every request is a
    // fresh authorization, signed just before it is sent (one signed for 300 s must arrive with
    // 270 s left; a batch signed up front would age during the soak).
    let buyers = Arc::new(buyers);
    let before = usdc(seller).await;
    let calls_before = upstream_calls.load(Ordering::SeqCst);
    type Slot = Option<(Signed, (u16, String, usize))>;
    let outcomes: Arc<std::sync::Mutex<Vec<Slot>>> = Arc::new(std::sync::Mutex::new(vec![None; n]));
    let mut rounds = Vec::new();
    let mut direct_failures = 0;
    let (mut direct_count, mut direct_time) = (0, Duration::ZERO);
    let mut paid_time = Duration::ZERO;
    let mut paid_lat = Vec::with_capacity(n);
    for round in 0..ROUNDS {
        let direct_n = workers * DIRECT_PER_WORKER;
        let direct_started = Instant::now();
        let (d_rate, d_lat, d_failures) = direct(&facilitator, &devnet, direct_n, workers).await;
        direct_time += direct_started.elapsed();
        direct_count += direct_n;
        direct_failures += d_failures;
        let (k0, k1) = (round * per_buyer / ROUNDS, (round + 1) * per_buyer / ROUNDS);
        let round_started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        // Worker w pays for buyer w % buyers_n, requests k0 + lane, k0 + lane + in flight, …
        for w in 0..workers {
            let (client, url, buyers, offered, resource, outcomes) = (
                client.clone(),
                url.clone(),
                buyers.clone(),
                offered.clone(),
                resource.clone(),
                outcomes.clone(),
            );
            tasks.spawn(async move {
                let buyer = w % buyers_n;
                let mut latencies = Vec::new();
                let mut k = k0 + w / buyers_n;
                while k < k1 {
                    let t = Instant::now();
                    let payment = sign(&buyers[buyer], &offered, resource.clone()).await;
                    let outcome = pay(&client, &url, &payment.header).await;
                    latencies.push(t.elapsed());
                    outcomes.lock().unwrap()[k * buyers_n + buyer] = Some((payment, outcome));
                    k += in_flight_per_buyer;
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.unwrap());
        }
        let elapsed = round_started.elapsed();
        paid_time += elapsed;
        latencies.sort();
        paid_lat.extend_from_slice(&latencies);
        let rate = latencies.len() as f64 / elapsed.as_secs_f64();
        rounds.push((d_rate, d_lat, rate, latencies));
    }
    paid_lat.sort();
    let (payments, outcomes): (Vec<Signed>, Vec<(u16, String, usize)>) = outcomes
        .lock()
        .unwrap()
        .iter()
        .map(|o| o.clone().unwrap())
        .unzip();
    let delta = usdc(seller).await - before;
    let probe_after = rpc_probe(&rpc, funder.address()).await;
    let upstream_paid = upstream_calls.load(Ordering::SeqCst) - calls_before;
    let nonces: Vec<_> = payments.iter().map(|p| (p.payer, p.nonce)).collect();
    let used = Rpc::new(&rpc).used_nonces(&nonces).await;
    let successes = outcomes.iter().filter(|o| o.0 == 200).count();
    let retried = outcomes.iter().filter(|o| o.2 > 1).count();
    let failures = tally(outcomes.iter().filter(|o| o.0 != 200).map(|o| o.1.clone()));
    let paid_rate = successes as f64 / paid_time.as_secs_f64();
    let direct_rate = direct_count as f64 / direct_time.as_secs_f64();
    let charged_unserved = (0..n).filter(|&i| used[i] && outcomes[i].0 != 200).count();
    let served_uncharged = (0..n).filter(|&i| !used[i] && outcomes[i].0 == 200).count();
    let mut per_buyer_ok = true;
    for (b, buyer) in buyers.iter().enumerate() {
        let got = (0..n)
            .filter(|&i| i % buyers_n == b && outcomes[i].0 == 200)
            .count() as u64;
        let spent = U256::from(FUNDING) - usdc(buyer.address()).await;
        if spent != U256::from(got * PRICE) {
            per_buyer_ok = false;
            println!(
                "  buyer {b} ({}): spent {spent}, served {got}",
                buyer.address()
            );
        }
    }

    println!(
        "\n{:58} {:>10} {:>10} {:>10} {:>8}",
        "measure (same run, same concurrency)", "req/s", "p50", "p99", "ratio"
    );
    let row = |name: &str, rate: f64, lat: &[Duration], ratio: String| {
        let at = |p| {
            if lat.is_empty() {
                "-".to_owned()
            } else {
                ms(percentile(lat, p))
            }
        };
        println!(
            "{name:58} {rate:>10.0} {:>10} {:>10} {ratio:>8}",
            at(0.5),
            at(0.99)
        );
    };
    row(
        "bare upstream round trip (baseline)",
        bare_rate,
        &bare_lat,
        "1".into(),
    );
    row(
        "gateway 402, unpaid",
        unpaid_rate,
        &unpaid_lat,
        format!("{:.3}", unpaid_rate / bare_rate),
    );
    for (r, (d_rate, d_lat, p_rate, p_lat)) in rounds.iter().enumerate() {
        row(
            &format!(
                "round {}: facilitator verify + settle, direct (baseline)",
                r + 1
            ),
            *d_rate,
            d_lat,
            "1".into(),
        );
        row(
            &format!("round {}: paid through the gateway", r + 1),
            *p_rate,
            p_lat,
            format!("{:.3}", p_rate / d_rate),
        );
    }
    row(
        "whole soak: facilitator direct (baseline, all rounds)",
        direct_rate,
        &[],
        "1".into(),
    );
    row(
        "whole soak: paid through the gateway (200s / paid time)",
        paid_rate,
        &paid_lat,
        format!("{:.3}", paid_rate / direct_rate),
    );
    println!(
        "paid vs the gateway's unpaid 402: {:.4}×; vs a bare upstream round trip: {:.4}×",
        paid_rate / unpaid_rate,
        paid_rate / bare_rate
    );
    println!("anvil RPC p50 before the soak: {probe_before}");
    println!("anvil RPC p50 after the soak:  {probe_after}");
    println!(
        "\n  {n} authorizations: {successes} served (200), {retried} needed a settlement_pending retry, failures {failures:?}; {} direct-baseline failures",
        direct_failures
    );
    checks.check(
        delta == U256::from(successes as u64 * PRICE),
        format!(
            "seller delta {delta} == successes {successes} × {PRICE} = {}",
            successes as u64 * PRICE
        ),
    );
    checks.check(
        charged_unserved == 0,
        format!("no authorization charged without a 200: {charged_unserved}"),
    );
    checks.check(
        served_uncharged == 0,
        format!("no 200 without its transfer on chain: {served_uncharged}"),
    );
    checks.check(
        per_buyer_ok,
        "each buyer's spend == its 200s × price (no double charge)".into(),
    );
    checks.check(
        upstream_paid >= successes,
        format!("upstream calls {upstream_paid} ≥ successes {successes}"),
    );
    checks.check(successes > 0, format!("the soak served: {successes}"));

    println!("\nwhole bench: {:.1} s", started.elapsed().as_secs_f64());
    if !checks.broken.is_empty() {
        println!("\nINVARIANTS BROKEN:");
        for what in &checks.broken {
            println!("  - {what}");
        }
        std::process::exit(1);
    }
}
