//! # obol-chain — talking to EVM chains
//!
//! | module | what |
//! | --- | --- |
//! | [`redact`] | [`RpcUrl`]: an endpoint URL whose `Display` and `Debug` hide API keys |
//! | [`endpoints`] | [`EndpointSet`]: a JSON-RPC transport over several endpoints with ordered failover and a write guard |
//! | [`client`] | [`ChainClient`]: a provider for one configured chain, plus the reads the CLI needs (chain id, head, balances, allowances, per-endpoint probes) |
//! | [`sender`] | [`Sender`]: transactions from one key with locally assigned nonces, receipts by `eth_sendRawTransactionSync` or a fast poll (settlements, approvals) |
//!
//! Endpoint URLs may embed API keys. Only the HTTP transport ever sees the real URL; every
//! message, log line and error produced here carries the redacted form.

pub mod client;
pub mod endpoints;
pub mod poll;
pub mod redact;
pub mod sender;

pub use client::{ChainClient, EndpointProbe};
pub use endpoints::{EndpointSet, is_write_method};
pub use redact::{RpcUrl, redact};
pub use sender::{MAX_REPLACEMENTS, MIN_REPLACE_AFTER, ReceiptWait, SendError, Sender};

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain has no endpoints configured.
    #[error(
        "no RPC endpoint configured for {chain}; add one with `obol network add {chain} --endpoint URL`"
    )]
    NoEndpoint {
        /// The chain name.
        chain: String,
    },
    /// An endpoint URL is not usable.
    #[error("invalid RPC endpoint {url}: {reason}")]
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint answered with another chain id.
    #[error("{url} serves chain id {actual}, but {chain} is chain id {expected}")]
    WrongChain {
        /// The redacted URL.
        url: String,
        /// The chain name.
        chain: String,
        /// The configured id.
        expected: u64,
        /// What the endpoint said.
        actual: u64,
    },
    /// The RPC call failed (the message is already redacted).
    #[error("{0}")]
    Rpc(String),
}
