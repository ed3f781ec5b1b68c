//! Integration tests of the x402 protocol core: the spec's conformance vectors, wire round
//! trips and property tests.

// Tests fail loudly by design; helpers outside #[test] functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_pass_by_value
)]

mod properties;
mod props;
mod vectors;
mod wire;

/// Reads a header vector shipped under `tests/vectors/` (see `tests/vectors/SOURCES.md`).
pub fn vector(name: &str) -> String {
    let path = format!("{}/tests/vectors/{name}.b64", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_owned()
}
