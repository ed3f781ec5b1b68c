//! obol-stack's test kit: what the tests of several crates need. Dev-only; nothing here ships.
//!
//! - [`now`]: the clock, in Unix seconds; [`until`]: polls a condition with a deadline;
//!   [`join_all`]: runs futures concurrently on the calling task.
//! - [`accounts`]: the devnet's dev accounts by address ([`accounts::PAY_TO`], the payee).
//! - [`http`]: servers on free loopback ports ([`http::spawn`]) and requests read in one line
//!   ([`http::get_json`], [`http::Fetch`]).
//! - [`x402`]: requirements in the built-in tokens, a 402's challenge, a signed payment.
//! - [`fs`]: file modes (what a private store must have); [`json`]: fields across an array.
//! - [`postgres::PgServer`]: a real PostgreSQL server on a free loopback port, its data in a
//!   temporary directory, stopped and removed when dropped.
//! - [`tls::TestCa`]: a certificate authority made in the test, and certificates it signs for
//!   the loopback host.
//!
//! Layering: among the workspace's crates the kit depends on `obol-x402` alone, the bottom of
//! the graph, so every other crate's tests (integration and unit) may use it without a
//! dependency cycle. Fixtures built from higher crates' types (a gateway `Offer`, an embedded
//! facilitator on a devnet) stay with those crates' tests.

// A test kit: what cannot be set up fails the test that asked for it.
#![allow(clippy::expect_used, reason = "a failed set-up is a failed test")]

pub mod accounts;
#[cfg(unix)]
pub mod fs;
pub mod http;
pub mod json;
pub mod postgres;
pub mod tls;
pub mod x402;

use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether the tests run under CI (`CI=true`): there a missing tool fails the test, elsewhere
/// the test says why it skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Unix seconds now.
///
/// # Panics
///
/// When the system clock is before 1970.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// Polls `check` every `every` until it holds; fails the test, naming `what`, when it still
/// does not after `within`.
///
/// # Panics
///
/// When `check` does not hold within `within`.
pub async fn until(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(every).await;
    }
}

/// Polls every future concurrently on the calling task (no spawning: they may borrow) and
/// returns their outputs in order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}
