//! x402 version 1 messages (402 JSON body, `X-PAYMENT`, legacy network names,
//! `maxAmountRequired`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::scalar::{DecimalU256, X402Version};
use super::v2::{self, RawRequirements};
use super::{FieldError, evm::EvmPayload};

/// The JSON body of a v1 402 (`PaymentRequirementsResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 1.
    pub x402_version: X402Version<1>,
    /// Human reason, e.g. `"X-PAYMENT header is required"`.
    #[serde(default)]
    pub error: String,
    /// Acceptable payments.
    pub accepts: Vec<PaymentRequirements>,
}

/// One v1 payment option. Reads `maxAmountRequired`, or `amount` when it is absent; writes
/// `maxAmountRequired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawRequirements")]
pub struct PaymentRequirements {
    /// Payment scheme, e.g. `exact`.
    pub scheme: String,
    /// Legacy network name, e.g. `base-sepolia`.
    pub network: String,
    /// Atomic amount.
    pub max_amount_required: DecimalU256,
    /// Token contract address.
    pub asset: String,
    /// Recipient address.
    pub pay_to: String,
    /// Absolute URL of the resource.
    pub resource: String,
    /// Human description.
    pub description: String,
    /// MIME type of the response (the legacy schema requires a string).
    pub mime_type: String,
    /// JSON schema of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// How long the payment stays valid.
    pub max_timeout_seconds: u64,
    /// Scheme data (`name`, `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

impl TryFrom<RawRequirements> for PaymentRequirements {
    type Error = String;

    fn try_from(raw: RawRequirements) -> Result<Self, Self::Error> {
        let max_amount_required = raw
            .max_amount_required
            .or(raw.amount)
            .ok_or("missing field `maxAmountRequired` (or v2 `amount`)")?;
        Ok(Self {
            scheme: raw.scheme,
            network: raw.network,
            max_amount_required,
            asset: raw.asset,
            pay_to: raw.pay_to,
            resource: raw.resource.unwrap_or_default(),
            description: raw.description.unwrap_or_default(),
            mime_type: raw.mime_type.unwrap_or_default(),
            output_schema: raw.output_schema.filter(|v| !v.is_null()),
            max_timeout_seconds: raw.max_timeout_seconds,
            extra: raw.extra,
        })
    }
}

impl PaymentRequirements {
    /// The same terms in the v2 shape (the network keeps its legacy name; every v2 accessor
    /// resolves either form).
    pub fn to_v2(&self) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            scheme: self.scheme.clone(),
            network: self.network.clone(),
            amount: self.max_amount_required,
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        }
    }
}

/// A v1 payment (`X-PAYMENT`): scheme and network repeated, plus the signed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 1.
    pub x402_version: X402Version<1>,
    /// Payment scheme.
    pub scheme: String,
    /// Legacy network name.
    pub network: String,
    /// Scheme-specific signed payload, kept verbatim.
    pub payload: Map<String, Value>,
}

impl PaymentPayload {
    /// The payload as an `exact` EVM payment.
    pub fn evm_payload(&self) -> Result<EvmPayload, FieldError> {
        EvmPayload::from_map(&self.payload)
    }
}
