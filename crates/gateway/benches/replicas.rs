//! Paid requests through gateway replicas that share one PostgreSQL payment guard, against one
//! gateway on the embedded SQLite guard measured in the same run ([kubernetes]).
//!
//! `cargo bench -p obol-gateway --bench replicas`. It starts its own PostgreSQL server
//! (`obol_testkit::postgres::PgServer`: Debian's package, which `scripts/install-tools` installs)
//! and exits 1, saying so, when PostgreSQL is not installed.
//!
//! One upstream, the facilitator stubbed (approves at once, no chain), payments pre-signed by
//! [`BUYERS`] buyers (`BENCH_BUYERS=1`: one payer, whose claims wait on each other on
//! PostgreSQL) just before each measure, outside its timing (a gateway admits a payment only
//! within 30 s of its signing), three setups:
//!
//! 1. one gateway with the SQLite guard (the embedded default): the baseline;
//! 2. one gateway with the PostgreSQL guard;
//! 3. two gateways (replicas) on the same PostgreSQL database, requests spread round robin.
//!
//! Each round measures every setup twice: throughput and latency with [`CONCURRENCY`] in
//! flight, then latency with one request in flight (the guard's own time per call, without
//! queueing behind other requests). Rounds interleave the setups, each round starting with the
//! next one, so drift (other builds, the tables growing) falls on all of them alike. After the
//! run, the database must hold exactly one settled row per payment sent to PostgreSQL and no
//! live claim.
//!
//! The machine has 2 cores, shared by the load generator, the gateways and the upstream (this
//! process) and PostgreSQL (its own processes). Two replicas in one process on those cores are
//! not a scale-out measure: they cannot add CPU, so their figure shows what a second writer on
//! the shared database costs or saves (connections, the per-payer lock, contention), not how
//! replicas on separate nodes scale.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use common::{
    CONCURRENCY, Run, Timed, combined, exact_option, load_over, paygate, paygate_with, percentile,
    presign_by, spawn, tree_cpu_seconds,
};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::{Offer, OfferKind, Route};
use obol_testkit::postgres::PgServer;
use obol_x402::LocalSigner;

/// Paid requests per setup and round with [`CONCURRENCY`] in flight.
const PER_ROUND: usize = 2_000;
/// Paid requests per setup and round with one in flight.
const ALONE_PER_ROUND: usize = 300;
const ROUNDS: usize = 5;
/// Paid requests per setup before timing (connections, pools, caches).
const WARM_UP: usize = 300;
/// Distinct payers (`BENCH_BUYERS` overrides): the PostgreSQL guard serialises one payer's
/// claims on a lock.
const BUYERS: usize = 64;
const PATH: &str = "/services/echo/x";
const DATABASE: &str = "guard";

/// One setup: its label and the gateways its requests are spread over.
struct Setup {
    label: &'static str,
    urls: Vec<String>,
    /// Whether its guard is the PostgreSQL one.
    postgres: bool,
}

/// What a setup's rounds measured.
#[derive(Default)]
struct Tally {
    runs: Vec<Run>,
    /// Latencies with [`CONCURRENCY`] in flight, sorted at the end.
    loaded: Vec<Duration>,
    /// Latencies with one in flight, sorted at the end.
    alone: Vec<Duration>,
    /// PostgreSQL's CPU during the loaded measures, in seconds.
    pg_cpu: f64,
}

impl Tally {
    fn run(&self) -> Run {
        combined(&self.runs)
    }

    fn pg_cpu_us(&self) -> f64 {
        self.pg_cpu * 1e6 / (self.runs.len() * PER_ROUND) as f64
    }

    fn mean_alone(&self) -> Duration {
        self.alone.iter().sum::<Duration>() / self.alone.len().max(1) as u32
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `payments` to `setup`'s gateways, `in_flight` at a time; each is served.
async fn paid(setup: &Setup, payments: Arc<Vec<Option<String>>>, in_flight: usize) -> Timed {
    load_over(&setup.urls, payments, None, StatusCode::OK, in_flight).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(server) = PgServer::start() else {
        eprintln!(
            "replicas bench: PostgreSQL is not installed. Run scripts/install-tools (as root it \
             installs Debian's postgresql package; it prints OBOL_PG_BIN), or set OBOL_PG_BIN to \
             the directory holding initdb and pg_ctl, then run this bench again."
        );
        return ExitCode::FAILURE;
    };
    let postmaster = server.pid().expect("the PostgreSQL server's pid");
    let database = server.database(DATABASE);

    let upstream = spawn(Router::new().route(
        "/{*path}",
        any(|| async { axum::Json(serde_json::json!({"ok": true})) }),
    ))
    .await;
    let offer = Arc::new(Offer::at_services(
        "echo",
        OfferKind::Http,
        upstream.parse().unwrap(),
        vec![exact_option()],
    ));
    let dir = std::env::temp_dir().join(format!("obol-replicas-bench-{}", std::process::id()));
    let routes = vec![Route::paid("services/echo/*", offer.clone())];
    let sqlite = paygate(routes.clone(), &dir.join("guard.sqlite")).await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let guard = Arc::new(ReplayGuard::postgres(&database).await.unwrap());
        replicas.push(format!(
            "{}{PATH}",
            paygate_with(routes.clone(), guard).await
        ));
    }
    let setups = [
        Setup {
            label: "1 gateway, SQLite guard (baseline)",
            urls: vec![format!("{sqlite}{PATH}")],
            postgres: false,
        },
        Setup {
            label: "1 gateway, PostgreSQL guard",
            urls: replicas[..1].to_vec(),
            postgres: true,
        },
        Setup {
            label: "2 replicas, one PostgreSQL, round robin",
            urls: replicas,
            postgres: true,
        },
    ];

    let buyers = std::env::var("BENCH_BUYERS")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(BUYERS);
    let per_setup = WARM_UP + ROUNDS * (PER_ROUND + ALONE_PER_ROUND);
    let buyers: Vec<LocalSigner> = (0..buyers.max(1)).map(|_| LocalSigner::random()).collect();
    let take = |n: usize| Arc::new(presign_by(&offer.options[0].requirements, n, &buyers));

    let load_before = load_average();
    for setup in &setups {
        paid(setup, take(WARM_UP), CONCURRENCY).await;
    }
    let mut tallies: Vec<Tally> = setups.iter().map(|_| Tally::default()).collect();
    let mut rounds = vec![Vec::new(); setups.len()];
    for round in 0..ROUNDS {
        for i in (0..setups.len()).map(|k| (round + k) % setups.len()) {
            let (setup, tally) = (&setups[i], &mut tallies[i]);
            let payments = take(PER_ROUND);
            let pg_before = tree_cpu_seconds(postmaster);
            let timed = paid(setup, payments, CONCURRENCY).await;
            tally.pg_cpu += tree_cpu_seconds(postmaster) - pg_before;
            rounds[i].push(timed.run.per_second);
            tally.runs.push(timed.run);
            tally.loaded.extend(timed.latencies);
            let alone = paid(setup, take(ALONE_PER_ROUND), 1).await;
            tally.alone.extend(alone.latencies);
        }
    }
    let load_after = load_average();
    for tally in &mut tallies {
        tally.loaded.sort_unstable();
        tally.alone.sort_unstable();
    }
    let _ = std::fs::remove_dir_all(dir);

    // Each payment sent to PostgreSQL was served once and recorded settled, no claim is left.
    let expected: usize = setups.iter().filter(|s| s.postgres).count() * per_setup;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = server.query(
        DATABASE,
        "SELECT count(*) FROM guard_payments WHERE state = 'settled'",
    );
    let live = server.query(
        DATABASE,
        "SELECT count(*) FROM guard_payments WHERE claim_token IS NOT NULL",
    );
    assert_eq!(settled, expected.to_string(), "settled rows");
    assert_eq!(live, "0", "claims left");

    report(&setups, &tallies, &rounds, buyers.len());
    println!(
        "machine: {} cores, shared by the load generator, gateways and upstream (this process) \
         and PostgreSQL (its own processes; a test server, fsync off); load average (1, 5, 15 \
         min) before {load_before}, after {load_after}",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "checked: {settled} payments settled in PostgreSQL, one row each, no claim left; \
         the SQLite gateway served {per_setup}"
    );
    println!(
        "what it shows: the cost of the shared guard per paid call (its CPU, its round trips to \
         PostgreSQL) against the embedded one, and whether a second replica writing the same \
         database on the same cores helps or hurts. Not scale-out: two replicas in one process \
         share these cores, so a second replica adds no CPU; on separate nodes each adds its own."
    );
    ExitCode::SUCCESS
}

/// Prints the table: each setup's rate, latencies and CPU, with ratios to the baseline (the
/// first setup) measured in the same run.
fn report(setups: &[Setup], tallies: &[Tally], rounds: &[Vec<f64>], buyers: usize) {
    println!(
        "replicas bench: paid requests through the paygate (facilitator stubbed); {ROUNDS} \
         interleaved rounds, per setup and round {PER_ROUND} with {CONCURRENCY} in flight and \
         {ALONE_PER_ROUND} with 1 in flight; payers: {buyers}"
    );
    println!(
        "{:42} {:>7} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "setup", "req/s", "ratio", "p50 ms", "p99 ms", "gw µs", "PG µs", "1: p50", "1: p99"
    );
    let base = tallies[0].run();
    for (setup, tally) in setups.iter().zip(tallies) {
        let run = tally.run();
        println!(
            "{:42} {:>7.0} {:>6.3} {:>7.2} {:>7.2} {:>8.0} {:>8.0} {:>8.3} {:>8.3}",
            setup.label,
            run.per_second,
            run.per_second / base.per_second,
            ms(percentile(&tally.loaded, 0.5)),
            ms(percentile(&tally.loaded, 0.99)),
            run.cpu_us,
            tally.pg_cpu_us(),
            ms(percentile(&tally.alone, 0.5)),
            ms(percentile(&tally.alone, 0.99)),
        );
    }
    println!(
        "columns: rate and latency with {CONCURRENCY} in flight; ratio = rate / the SQLite \
         baseline's; CPU per request of this process (gw) and of PostgreSQL (PG); latency with \
         1 in flight"
    );
    let per_round = |i: usize, of: usize| {
        let ratios: Vec<String> = (0..ROUNDS)
            .map(|r| format!("{:.3}", rounds[i][r] / rounds[of][r]))
            .collect();
        ratios.join(" / ")
    };
    println!(
        "rate per round: PostgreSQL / SQLite {}; 2 replicas / SQLite {}; 2 replicas / 1 on \
         PostgreSQL {}",
        per_round(1, 0),
        per_round(2, 0),
        per_round(2, 1)
    );
    let (sqlite, pg) = (&tallies[0], &tallies[1]);
    println!(
        "the PostgreSQL guard's added latency per paid call (1 in flight, vs SQLite): p50 {:+.3} \
         ms, mean {:+.3} ms, p99 {:+.3} ms; CPU per paid call (this process + PostgreSQL) {:.0} \
         µs vs {:.0} µs",
        ms(percentile(&pg.alone, 0.5)) - ms(percentile(&sqlite.alone, 0.5)),
        ms(pg.mean_alone()) - ms(sqlite.mean_alone()),
        ms(percentile(&pg.alone, 0.99)) - ms(percentile(&sqlite.alone, 0.99)),
        pg.run().cpu_us + pg.pg_cpu_us(),
        sqlite.run().cpu_us + sqlite.pg_cpu_us(),
    );
}
