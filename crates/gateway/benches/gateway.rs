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

mod common;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use common::{CONCURRENCY, exact_option, load, paygate, plain_proxy, presign, spawn};
use obol_gateway::{Offer, OfferKind, Route};

fn offer(upstream: &str) -> Arc<Offer> {
    Arc::new(Offer {
        namespace: "bench".into(),
        description: "bench".into(),
        ..Offer::at_services(
            "echo",
            OfferKind::Http,
            upstream.parse().unwrap(),
            vec![exact_option()],
        )
    })
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
    let plain = plain_proxy(offer.clone()).await;

    let none = Arc::new(vec![None; unpaid_n]);
    // Warm up connection pools.
    load(
        format!("{fixed}/x"),
        Arc::new(vec![None; 500]),
        None,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    load(
        format!("{gateway}/services/echo/x"),
        Arc::new(vec![None; 500]),
        None,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let bare = load(
        format!("{fixed}/x"),
        none.clone(),
        None,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let challenge = load(
        format!("{gateway}/services/echo/x"),
        none.clone(),
        None,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    let challenge_128 = load(
        format!("{gateway_128}/services/echo/x"),
        none,
        None,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;

    // Distinct signed payments (signing is the buyer's cost, done before timing).
    let mut payments = presign(&offer.options[0].requirements, 2 * paid_n);
    load(
        format!("{plain}/services/echo/x"),
        Arc::new(vec![None; 500]),
        None,
        StatusCode::OK,
    )
    .await;
    let proxied = load(
        format!("{plain}/services/echo/x"),
        Arc::new(vec![None; paid_n]),
        None,
        StatusCode::OK,
    )
    .await;
    let payments_128 = payments.split_off(paid_n);
    let paid = load(
        format!("{gateway}/services/echo/x"),
        Arc::new(payments),
        None,
        StatusCode::OK,
    )
    .await;
    let paid_128 = load(
        format!("{gateway_128}/services/echo/x"),
        Arc::new(payments_128),
        None,
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
