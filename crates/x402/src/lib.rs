//! # obol-x402 — the x402 protocol core of obol-stack
//!
//! Everything a seller gateway, a buyer and a facilitator need to speak x402 on EVM chains, with
//! **no network I/O**: parsing and building messages, decoding headers, resolving networks and
//! tokens, exact money math, and signing or recovering payment authorizations.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`wire`] | v1 and v2 messages (`PaymentRequired`, `PaymentRequirements`, `PaymentPayload`), facilitator requests and responses, and the EVM payloads (`exact`: EIP-3009 and Permit2; `upto`: Permit2) |
//! | [`header`] | the five x402 header names and their standard-base64 JSON codec, size-capped, with precise errors |
//! | [`network`] | legacy network names and aliases ↔ CAIP-2 ids |
//! | [`token`] | USDC per chain with its EIP-712 domain, OBOL, and the canonical Permit2 / x402 proxy addresses |
//! | [`money`] | exact decimals, token-unit ↔ atomic-unit conversion with half-up rounding |
//! | [`pricing`] | perRequest / perMTok / perHour price models → the per-request atomic amount |
//! | [`metering`] | metered (`upto`) inference: per-token rates, the ceiling, the exact charge for a call's usage, rounded up |
//! | [`eip712`] | the typed-data structs and domains of EIP-3009, Permit2 (exact and upto witnesses) and EIP-2612 |
//! | [`signature`] | 65-byte ECDSA signatures: `v` normalisation, high-`s` rejection, recovery |
//! | [`signer`] | the [`PaymentSigner`] trait, a local-key implementation, and builders that sign an `exact` or `upto` payment for a requirement |
//!
//! ## Quick start
//!
//! ```
//! use obol_x402::{header, wire::PaymentRequired};
//!
//! let value = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9leGFtcGxlLmNvbSJ9LCJhY2NlcHRzIjpbXX0=";
//! let required: PaymentRequired = header::decode(value).unwrap();
//! assert_eq!(required.version(), 2);
//! assert_eq!(header::encode(&required).unwrap(), value);
//! ```

pub mod eip712;
pub mod header;
pub mod metering;
pub mod money;
pub mod network;
pub mod pricing;
pub mod signature;
pub mod signer;
pub mod token;
pub mod wire;

pub use money::Decimal;
pub use network::Network;
pub use signer::{LocalSigner, PaymentSigner};
pub use token::{Token, TokenRegistry, TransferMethod};

/// Re-exports of the alloy primitives that appear in this crate's public API.
pub mod primitives {
    pub use alloy::primitives::{
        Address, B256, Bytes, Signature, U256, address, b256, eip191_hash_message,
    };
}
