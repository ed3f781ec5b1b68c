//! x402 messages, v1 and v2, as they travel in headers, bodies and facilitator calls.
//!
//! The version-specific structs live in [`v1`] and [`v2`]. The enums here ([`PaymentRequired`],
//! [`PaymentPayload`]) read either version by looking at `x402Version` and refuse any other
//! version with an error naming it.
//!
//! Conventions (x402.md §2): amounts, timestamps and Permit2 nonces are JSON **strings** of
//! decimal digits ([`DecimalU256`]); `x402Version` and `maxTimeoutSeconds` are numbers; unknown
//! fields are ignored; `extra` and `extensions` are kept verbatim, in order, so re-encoding a
//! message gives back the same bytes.

pub mod evm;
pub mod facilitator;
mod scalar;
pub mod v1;
pub mod v2;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use evm::{EvmPayload, RecoverError};
pub use facilitator::{
    SettleRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyRequest, VerifyResponse,
};
pub use scalar::{DecimalU256, DecimalU256Error, X402Version, checksummed, parse_address};

use crate::network::NetworkError;

/// A field of a well-formed message that cannot be used as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// An address field is not `0x` + 40 hex digits.
    #[error("invalid {field}: {reason}")]
    Address {
        /// `asset` or `payTo`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The network does not resolve to an EVM chain.
    #[error(transparent)]
    Network(NetworkError),
    /// `extra.assetTransferMethod` is neither `eip3009` nor `permit2`.
    #[error("unsupported extra.assetTransferMethod {0:?} (expected eip3009 or permit2)")]
    TransferMethod(String),
    /// `extra.name` / `extra.version` are missing, so EIP-3009 cannot be signed or checked.
    #[error(
        "requirement lacks the token's EIP-712 domain: extra.name and extra.version are required"
    )]
    MissingEip712Domain,
    /// The scheme payload does not have the expected shape.
    #[error("invalid EVM payload: {0}")]
    Payload(String),
}

/// Reads the `x402Version` of a JSON object, for dispatch.
fn version_of<E: serde::de::Error>(value: &Value) -> Result<u64, E> {
    match value.get("x402Version") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| E::custom(format!("x402Version must be a number, got {v}"))),
        None => Err(E::missing_field("x402Version")),
    }
}

macro_rules! versioned {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant, reason = "short-lived message values, never stored in bulk")]
        pub enum $name {
            /// Version 1.
            V1(v1::$name),
            /// Version 2.
            V2(v2::$name),
        }

        impl $name {
            /// The protocol version.
            pub fn version(&self) -> u8 {
                match self {
                    Self::V1(_) => 1,
                    Self::V2(_) => 2,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    Self::V1(inner) => inner.serialize(serializer),
                    Self::V2(inner) => inner.serialize(serializer),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(deserializer)?;
                match version_of::<D::Error>(&value)? {
                    1 => serde_json::from_value(value).map(Self::V1).map_err(D::Error::custom),
                    2 => serde_json::from_value(value).map(Self::V2).map_err(D::Error::custom),
                    other => Err(D::Error::custom(format!(
                        "unsupported x402Version {other} (this implementation speaks 1 and 2)"
                    ))),
                }
            }
        }

        impl From<v1::$name> for $name {
            fn from(inner: v1::$name) -> Self {
                Self::V1(inner)
            }
        }

        impl From<v2::$name> for $name {
            fn from(inner: v2::$name) -> Self {
                Self::V2(inner)
            }
        }
    };
}

versioned!(
    /// A 402 answer of either version: the v2 `PAYMENT-REQUIRED` header or the v1 JSON body.
    PaymentRequired
);
versioned!(
    /// A payment of either version: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
    PaymentPayload
);

impl PaymentRequired {
    /// Every option in the v2 shape, whatever the version.
    pub fn accepts_v2(&self) -> Vec<v2::PaymentRequirements> {
        match self {
            Self::V1(inner) => inner
                .accepts
                .iter()
                .map(v1::PaymentRequirements::to_v2)
                .collect(),
            Self::V2(inner) => inner.accepts.clone(),
        }
    }
}

impl PaymentPayload {
    /// `(scheme, network)` the payment claims.
    pub fn scheme_and_network(&self) -> (&str, &str) {
        match self {
            Self::V1(p) => (&p.scheme, &p.network),
            Self::V2(p) => (&p.accepted.scheme, &p.accepted.network),
        }
    }

    /// The payload as an EVM payment (`exact` or `upto`).
    pub fn evm_payload(&self) -> Result<EvmPayload, FieldError> {
        match self {
            Self::V1(p) => p.evm_payload(),
            Self::V2(p) => p.evm_payload(),
        }
    }
}
