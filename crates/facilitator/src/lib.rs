//! # obol-facilitator — verify and settle x402 `exact` payments on EVM chains
//!
//! | module | what |
//! | --- | --- |
//! | [`reason`] | the closed set of invalid/settle reason codes and their wire strings |
//! | [`checks`] | the pure half of verification: scheme, network, terms, window, amount, token, spender, signature recovery |
//! | [`evm`] | [`EvmFacilitator`]: chain reads, simulation, settlement with one transfer per payment and pipelined sends, a bounded settle cache keyed by the authorization's digest |
//! | [`stub`] | [`stub::Approving`]: accepts everything, no chain (benchmarks only) |
//! | [`http`] | the HTTP service (`/verify`, `/settle`, `/supported`, `/healthz`, `/metrics`) and [`http::RemoteFacilitator`], a client of any facilitator |
//!
//! The [`Facilitator`] trait is what a seller gateway talks to, whether the facilitator runs in
//! process ([`EvmFacilitator`]) or behind HTTP.

pub mod checks;
pub mod evm;
pub mod http;
pub mod reason;
pub mod stub;

use alloy::primitives::{Address, U256};
use async_trait::async_trait;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse,
};

pub use checks::{Payment, PaymentIdentity};
pub use evm::{EvmFacilitator, FacilitatorConfig};
pub use reason::{Invalid, Reason};

/// Verifies and settles payments.
///
/// An invalid payment is not an error: it is `Ok` with `isValid: false` / `success: false` and a
/// reason. Errors are reserved for the facilitator failing to do its job (chain unreachable,
/// timeouts), and say whether retrying can help.
#[async_trait]
pub trait Facilitator: Send + Sync {
    /// Checks that a payment would settle, without moving funds.
    async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError>;

    /// Re-verifies and executes a payment on-chain.
    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError>;

    /// The (version, scheme, network) kinds and signer addresses this facilitator supports.
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError>;

    /// Whether [`Facilitator::balance`] can answer (the embedded facilitator reads its chains;
    /// a remote one cannot). Without it, the gateway settles every stream before its first
    /// byte: a concurrent payment of the same payer could otherwise drain the balance a
    /// running stream was verified against.
    fn reads_balances(&self) -> bool {
        false
    }

    /// The payer's token balance on `chain_id`, when this facilitator can read the chain;
    /// `None` when it cannot (a remote facilitator) or does not have the chain. The gateway
    /// uses it to bound a payer's verified-but-unsettled payments.
    async fn balance(
        &self,
        chain_id: u64,
        asset: Address,
        owner: Address,
    ) -> Result<Option<U256>, FacilitatorError> {
        let _ = (chain_id, asset, owner);
        Ok(None)
    }
}

/// The facilitator could not do its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FacilitatorError {
    /// A chain read or write failed for infrastructure reasons.
    #[error("chain {chain_id}: {message}")]
    Rpc {
        /// The chain.
        chain_id: u64,
        /// What failed (redacted).
        message: String,
    },
    /// Every settlement the facilitator remembers is still in flight or pending, and it
    /// remembers no more: a new payment must wait.
    #[error("facilitator busy: {0}")]
    Busy(String),
    /// The facilitator is misconfigured.
    #[error("facilitator configuration: {0}")]
    Config(String),
    /// A remote facilitator did not answer usefully.
    #[error("facilitator {url}: {message}")]
    Remote {
        /// The facilitator's base URL.
        url: String,
        /// The HTTP status, when one came back.
        status: Option<u16>,
        /// What happened (sanitised).
        message: String,
        /// Whether the same request may succeed later.
        retriable: bool,
    },
}

impl FacilitatorError {
    /// Whether the same request may succeed later.
    pub fn retriable(&self) -> bool {
        match self {
            Self::Rpc { .. } | Self::Busy(_) => true,
            Self::Remote { retriable, .. } => *retriable,
            Self::Config(_) => false,
        }
    }
}
