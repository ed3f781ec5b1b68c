//! Facilitator API bodies: `POST /verify`, `POST /settle`, `GET /supported`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::scalar::DecimalU256;
use super::{PaymentPayload, v1, v2};

/// The body of `POST /verify` and `POST /settle`: the client's payment and the server's **own**
/// copy of the requirement it matched. The top-level `x402Version` must equal the payload's.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived message values, never stored in bulk"
)]
pub enum VerifyRequest {
    /// A v1 payment against a v1 requirement.
    V1 {
        /// The client's payment.
        payment_payload: v1::PaymentPayload,
        /// The server's requirement.
        payment_requirements: v1::PaymentRequirements,
    },
    /// A v2 payment against a v2 requirement.
    V2 {
        /// The client's payment.
        payment_payload: v2::PaymentPayload,
        /// The server's requirement.
        payment_requirements: v2::PaymentRequirements,
    },
}

/// `POST /settle` has the same body as `/verify`.
pub type SettleRequest = VerifyRequest;

impl VerifyRequest {
    /// The protocol version.
    pub fn version(&self) -> u8 {
        match self {
            Self::V1 { .. } => 1,
            Self::V2 { .. } => 2,
        }
    }

    /// The payment as an `exact` EVM payload, read in place (no copy of the payment).
    pub fn evm_payload(&self) -> Result<super::evm::EvmPayload, super::FieldError> {
        match self {
            Self::V1 {
                payment_payload, ..
            } => payment_payload.evm_payload(),
            Self::V2 {
                payment_payload, ..
            } => payment_payload.evm_payload(),
        }
    }

    /// The payment as a version-tagged [`PaymentPayload`].
    pub fn payload(&self) -> PaymentPayload {
        match self {
            Self::V1 {
                payment_payload, ..
            } => PaymentPayload::V1(payment_payload.clone()),
            Self::V2 {
                payment_payload, ..
            } => PaymentPayload::V2(payment_payload.clone()),
        }
    }

    /// The requirement in the v2 shape (v1 keeps its legacy network name).
    pub fn requirements_v2(&self) -> v2::PaymentRequirements {
        match self {
            Self::V1 {
                payment_requirements,
                ..
            } => payment_requirements.to_v2(),
            Self::V2 {
                payment_requirements,
                ..
            } => payment_requirements.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVerifyRequest<P, R> {
    x402_version: u64,
    payment_payload: P,
    payment_requirements: R,
}

impl Serialize for VerifyRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::V1 {
                payment_payload,
                payment_requirements,
            } => RawVerifyRequest {
                x402_version: 1,
                payment_payload,
                payment_requirements,
            }
            .serialize(serializer),
            Self::V2 {
                payment_payload,
                payment_requirements,
            } => RawVerifyRequest {
                x402_version: 2,
                payment_payload,
                payment_requirements,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for VerifyRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawVerifyRequest::<Value, Value>::deserialize(deserializer)?;
        let payload_version = raw
            .payment_payload
            .get("x402Version")
            .and_then(Value::as_u64);
        if payload_version != Some(raw.x402_version) {
            return Err(D::Error::custom(format!(
                "x402Version {} does not match paymentPayload.x402Version {}",
                raw.x402_version,
                payload_version.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
            )));
        }
        let field = |name: &'static str| {
            move |e: serde_json::Error| D::Error::custom(format!("{name}: {e}"))
        };
        match raw.x402_version {
            1 => Ok(Self::V1 {
                payment_payload: serde_json::from_value(raw.payment_payload)
                    .map_err(field("paymentPayload"))?,
                payment_requirements: serde_json::from_value(raw.payment_requirements)
                    .map_err(field("paymentRequirements"))?,
            }),
            2 => Ok(Self::V2 {
                payment_payload: serde_json::from_value(raw.payment_payload)
                    .map_err(field("paymentPayload"))?,
                payment_requirements: serde_json::from_value(raw.payment_requirements)
                    .map_err(field("paymentRequirements"))?,
            }),
            other => Err(D::Error::custom(format!("unsupported x402Version {other}"))),
        }
    }
}

/// The answer of `POST /verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would settle.
    pub is_valid: bool,
    /// Machine reason when invalid (an opaque string: implementations disagree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Free-text explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    /// Extra detail (x402-rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason_details: Option<String>,
    /// The payer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
    /// Scheme data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The answer of `POST /settle`, and the JSON inside `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the transfer landed.
    pub success: bool,
    /// Machine reason on failure (`settlement_pending` carries a tx hash and is not final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Free-text explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Transaction hash, or `""` when nothing was sent.
    #[serde(default)]
    pub transaction: String,
    /// Network (CAIP-2 in v2, legacy name in v1).
    #[serde(default)]
    pub network: String,
    /// The payer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// The amount actually settled (for `upto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<DecimalU256>,
    /// Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

/// One (version, scheme, network) a facilitator supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Protocol version.
    pub x402_version: u64,
    /// Scheme.
    pub scheme: String,
    /// Network (CAIP-2 for v2, legacy name for v1).
    pub network: String,
    /// Scheme data (e.g. `facilitatorAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// The answer of `GET /supported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// Supported kinds.
    pub kinds: Vec<SupportedKind>,
    /// Supported extension keys.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Signer addresses per network family (`eip155:*`).
    #[serde(default)]
    pub signers: Map<String, Value>,
}
