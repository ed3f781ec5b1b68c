//! obol-stack's test kit: what the tests of several crates need. Dev-only; nothing here ships.
//!
//! - [`postgres::PgServer`]: a real PostgreSQL server on a free loopback port, its data in a
//!   temporary directory, stopped and removed when dropped.
//! - [`tls::TestCa`]: a certificate authority made in the test, and certificates it signs for
//!   the loopback host.

// A test kit: what cannot be set up fails the test that asked for it.
#![allow(clippy::expect_used, reason = "a failed set-up is a failed test")]

pub mod postgres;
pub mod tls;

/// Whether the tests run under CI (`CI=true`): there a missing tool fails the test, elsewhere
/// the test says why it skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
