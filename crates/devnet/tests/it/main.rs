//! Our devnet contracts on a real anvil (no Foundry): what the x402 facilitators rely on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    missing_debug_implementations
)]

mod upto;
