//! # obol-erc8004 — ERC-8004 agent identities
//!
//! A seller publishes itself as an ERC-8004 agent: an ERC-721 token in the Identity Registry
//! whose agentURI points at a registration document listing its x402 services. Buyers find
//! sellers by reading the registry's logs and the documents they point at.
//!
//! | module | what |
//! | --- | --- |
//! | [`contract`] | `sol!` bindings of the Identity Registry and the EIP-712 `AgentWalletSet` proof |
//! | [`registry`] | [`AgentRegistry`] (`eip155:<chainId>:<address>`) and [`Registries`]: the deployed addresses per chain, overridable |
//! | [`document`] | [`RegistrationDocument`] (registration-v1) and its tombstone; pure |
//! | [`client`] | [`IdentityClient`]: idempotent registration, URI drift, metadata, control checks, discovery from logs |
//! | [`fetch`] | [`DocumentFetcher`]: agentURI → document (timeout, size cap, address policy), the x402 filter for discovery, bounded concurrent fetches under a deadline |
//! | [`net`] | [`AddressPolicy`]: discovery contacts public addresses only (a resolver and redirect check that refuse loopback, private, link-local…) |
//!
//! Registration never mints twice: before sending, and before every retry, the client looks for
//! a mined registration by owner and URI, and a retry resends the same signed transaction (same
//! nonce). The look-back has a start block; when the signer holds more agents than the searched
//! range shows it registering, registration refuses ([`Erc8004Error::UnsearchedAgents`]) instead
//! of risking a second NFT. See `docs/design/erc8004.md`.
//!
//! Strings read from the chain or from documents are untrusted: errors carry them escaped and
//! truncated ([`printable`]), and they are never logged raw.

pub mod client;
pub mod contract;
pub mod document;
pub mod fetch;
pub mod net;
pub mod registry;

pub use client::{
    ClientOptions, Control, Ensured, IdentityClient, RegisteredAgent, Registration,
    X402_METADATA_KEY, X402_METADATA_VALUE,
};
pub use contract::{MetadataEntry, sign_agent_wallet};
pub use document::{RegistrationDocument, RegistrationRef, Service, WELL_KNOWN_PATH};
pub use fetch::{DiscoveredAgent, Discovery, DocumentFetcher, fetch_all, fetch_urls, x402_agents};
pub use net::AddressPolicy;
pub use registry::{AgentRegistry, Registries};

/// Re-exported so callers need no direct alloy dependency for ids and addresses.
pub use alloy::primitives::{Address, B256, U256};

use std::time::Duration;

/// Why an ERC-8004 operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Erc8004Error {
    /// No Identity Registry is known on the chain.
    #[error(
        "no ERC-8004 Identity Registry known on chain id {chain_id}; give its address explicitly"
    )]
    NoRegistry {
        /// The chain id.
        chain_id: u64,
    },
    /// The chain client and the registry disagree on the chain.
    #[error("the registry {registry} is not on chain {chain} (chain id {chain_id})")]
    WrongChain {
        /// The registry (`eip155:…`).
        registry: String,
        /// The chain client's name.
        chain: String,
        /// The chain client's id.
        chain_id: u64,
    },
    /// An `agentRegistry` string is malformed.
    #[error("invalid agentRegistry {input}: expected eip155:<chainId>:<address>")]
    InvalidRegistry {
        /// The input, escaped.
        input: String,
    },
    /// A transaction was requested from a read-only client.
    #[error("{op} sends a transaction: a signer is needed")]
    NoSigner {
        /// The operation.
        op: &'static str,
    },
    /// No endpoint of the chain accepts transactions.
    #[error("{op}: {message}")]
    NoWriteEndpoint {
        /// The operation.
        op: &'static str,
        /// The endpoint set's explanation (with the fix).
        message: String,
    },
    /// The RPC call failed.
    #[error("{op}: {message}")]
    Rpc {
        /// The operation.
        op: &'static str,
        /// What the transport or node said (escaped; URLs are redacted by the chain client).
        message: String,
        /// Whether trying again may help.
        transient: bool,
    },
    /// The registry would revert the call (seen while estimating gas or calling).
    #[error("the registry refused {op}: {reason}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// The revert reason, escaped.
        reason: String,
    },
    /// The transaction was mined and reverted.
    #[error("{op} transaction {tx_hash} reverted")]
    Reverted {
        /// The operation.
        op: &'static str,
        /// The transaction.
        tx_hash: B256,
    },
    /// The transaction was not mined in time. It may still be: rerun to recover it.
    #[error("{op} transaction {tx_hash} was not mined within {waited:?}; rerun to pick it up")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The transaction.
        tx_hash: B256,
        /// How long we waited.
        waited: Duration,
    },
    /// The signer's nonce was used by another transaction before ours was mined.
    #[error("{op} transaction {tx_hash} was replaced: its nonce is used by another transaction")]
    NonceTaken {
        /// The operation.
        op: &'static str,
        /// Our transaction.
        tx_hash: B256,
    },
    /// The signer still has transactions in flight (one may be an earlier registration), so
    /// registering now could mint a second agent.
    #[error(
        "{address} has {count} pending transaction(s); {op} waits until they are mined — rerun once they are"
    )]
    PendingTransactions {
        /// The operation.
        op: &'static str,
        /// The signer.
        address: Address,
        /// How many are pending.
        count: u64,
    },
    /// The signer holds agents that were not registered by it within the searched blocks: one
    /// of them may be an earlier registration with this URI, so registering now could mint a
    /// second agent.
    #[error(
        "{owner} holds {held} agent(s) in the registry but registered only {seen} since block {from_block}; an earlier one may already be this agent, so {op} does not mint another: search from an earlier block, or record the agent id you have"
    )]
    UnsearchedAgents {
        /// The operation.
        op: &'static str,
        /// The signer.
        owner: Address,
        /// Its ERC-721 balance in the registry.
        held: U256,
        /// Its registrations found since `from_block`.
        seen: u64,
        /// Where the search started.
        from_block: u64,
    },
    /// A mined registration emitted no `Registered` event from the registry.
    #[error("registration transaction {tx_hash} emitted no Registered event")]
    MissingEvent {
        /// The transaction.
        tx_hash: B256,
    },
    /// The agent id does not exist.
    #[error("agent {agent_id} does not exist in the registry")]
    UnknownAgent {
        /// The id.
        agent_id: U256,
    },
    /// The signer may not manage the agent.
    #[error("{address} may not manage agent {agent_id} (owned by {owner})")]
    NotAuthorized {
        /// The agent.
        agent_id: U256,
        /// Who tried.
        address: Address,
        /// Who owns it.
        owner: Address,
    },
    /// A registration document is unusable.
    #[error("invalid registration document: {reason}")]
    InvalidDocument {
        /// What is wrong (escaped).
        reason: String,
    },
    /// A registration document could not be fetched.
    #[error("cannot fetch {uri}: {reason}")]
    Fetch {
        /// The URI, escaped and truncated.
        uri: String,
        /// What happened.
        reason: String,
    },
    /// A fetch was refused: the host is not a public address (loopback, private, link-local…)
    /// and the fetcher contacts public addresses only.
    #[error("{uri} was not fetched: not a public address")]
    NonPublicAddress {
        /// The URI, escaped and truncated.
        uri: String,
    },
    /// A fetch did not finish in time (its own timeout, or the caller's deadline).
    #[error("{uri} did not answer in time")]
    FetchTimedOut {
        /// The URI, escaped and truncated.
        uri: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] obol_x402::signer::SignerError),
}

impl Erc8004Error {
    /// True when the same call may succeed later (network trouble, rate limits, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Rpc {
                transient: true,
                ..
            } | Self::Timeout { .. }
                | Self::PendingTransactions { .. }
        )
    }
}

/// Untrusted text made safe to print: see [`obol_config::text::printable`].
pub use obol_config::text::printable;
