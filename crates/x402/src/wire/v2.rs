//! x402 version 2 messages (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, CAIP-2 networks, `amount`).

use alloy::primitives::{Address, U256};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::scalar::{DecimalU256, X402Version, parse_address};
use super::{FieldError, evm::EvmPayload};
use crate::network;
use crate::token::TransferMethod;

/// What a resource is: `url`, plus optional presentation fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Absolute URL of the resource.
    pub url: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Service name (printable ASCII, at most 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Up to five tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

impl ResourceInfo {
    /// A resource with only a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// The body of a v2 402: what the resource costs and how it may be paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: X402Version<2>,
    /// Human reason, e.g. `"PAYMENT-SIGNATURE header is required"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource being paid for.
    pub resource: ResourceInfo,
    /// Acceptable payments; a client picks one.
    pub accepts: Vec<PaymentRequirements>,
    /// Protocol extensions, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
    /// The facilitator the seller settles through (obol-stack addition; public hosts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<String>,
}

/// One way to pay: scheme, network, amount, asset, recipient.
///
/// Reads `amount`, or the v1 `maxAmountRequired` when `amount` is absent; writes `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawRequirements")]
pub struct PaymentRequirements {
    /// Payment scheme, e.g. `exact`.
    pub scheme: String,
    /// Network, CAIP-2 (`eip155:8453`); legacy names are tolerated on input.
    pub network: String,
    /// Atomic amount.
    pub amount: DecimalU256,
    /// Token contract address.
    pub asset: String,
    /// Recipient address.
    pub pay_to: String,
    /// How long the payment stays valid.
    pub max_timeout_seconds: u64,
    /// Scheme data (`name`, `version`, `assetTransferMethod`, …), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

/// Lenient input form of [`PaymentRequirements`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawRequirements {
    pub(super) scheme: String,
    pub(super) network: String,
    #[serde(default)]
    pub(super) amount: Option<DecimalU256>,
    #[serde(default)]
    pub(super) max_amount_required: Option<DecimalU256>,
    pub(super) asset: String,
    pub(super) pay_to: String,
    pub(super) max_timeout_seconds: u64,
    #[serde(default)]
    pub(super) extra: Option<Map<String, Value>>,
    #[serde(default)]
    pub(super) resource: Option<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) mime_type: Option<String>,
    #[serde(default)]
    pub(super) output_schema: Option<Value>,
}

impl TryFrom<RawRequirements> for PaymentRequirements {
    type Error = String;

    fn try_from(raw: RawRequirements) -> Result<Self, Self::Error> {
        let amount = raw
            .amount
            .or(raw.max_amount_required)
            .ok_or("missing field `amount` (or legacy `maxAmountRequired`)")?;
        Ok(Self {
            scheme: raw.scheme,
            network: raw.network,
            amount,
            asset: raw.asset,
            pay_to: raw.pay_to,
            max_timeout_seconds: raw.max_timeout_seconds,
            extra: raw.extra,
        })
    }
}

impl PaymentRequirements {
    /// The EVM chain id of [`Self::network`] (legacy names and CAIP-2 both work).
    pub fn chain_id(&self) -> Result<u64, FieldError> {
        network::evm_chain_id(&self.network).map_err(FieldError::Network)
    }

    /// The token contract address.
    pub fn asset_address(&self) -> Result<Address, FieldError> {
        parse_address(&self.asset).map_err(|reason| FieldError::Address {
            field: "asset",
            reason,
        })
    }

    /// The recipient address.
    pub fn pay_to_address(&self) -> Result<Address, FieldError> {
        parse_address(&self.pay_to).map_err(|reason| FieldError::Address {
            field: "payTo",
            reason,
        })
    }

    /// The atomic amount.
    pub fn amount(&self) -> U256 {
        self.amount.get()
    }

    fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra.as_ref()?.get(key)?.as_str()
    }

    /// `extra.assetTransferMethod`: absent means EIP-3009.
    pub fn transfer_method(&self) -> Result<TransferMethod, FieldError> {
        match self.extra_str("assetTransferMethod") {
            None | Some("eip3009") => Ok(TransferMethod::Eip3009),
            Some("permit2") => Ok(TransferMethod::Permit2),
            Some(other) => Err(FieldError::TransferMethod(other.chars().take(40).collect())),
        }
    }

    /// `extra.facilitatorAddress` (`upto`): the only address the upto proxy lets settle.
    pub fn facilitator_address(&self) -> Result<Address, FieldError> {
        let text = self
            .extra_str("facilitatorAddress")
            .ok_or_else(|| FieldError::Address {
                field: "extra.facilitatorAddress",
                reason: "missing (an upto requirement names the facilitator that settles it)"
                    .into(),
            })?;
        parse_address(text).map_err(|reason| FieldError::Address {
            field: "extra.facilitatorAddress",
            reason,
        })
    }

    /// `(extra.name, extra.version)`: the token's EIP-712 domain, needed to sign EIP-3009.
    pub fn eip712_domain(&self) -> Result<(&str, &str), FieldError> {
        match (self.extra_str("name"), self.extra_str("version")) {
            (Some(name), Some(version)) => Ok((name, version)),
            _ => Err(FieldError::MissingEip712Domain),
        }
    }

    /// Same payment terms as `other`: scheme, network (any naming), amount, asset and payTo
    /// (case-insensitive), maxTimeoutSeconds and extra. This is how a server matches a payment's
    /// `accepted` against what it offered.
    pub fn same_terms(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && network::same_network(&self.network, &other.network)
            && self.amount == other.amount
            && self.asset.eq_ignore_ascii_case(&other.asset)
            && self.pay_to.eq_ignore_ascii_case(&other.pay_to)
            && self.max_timeout_seconds == other.max_timeout_seconds
            && self.extra == other.extra
    }
}

/// A v2 payment: the chosen requirement echoed in `accepted`, and the signed scheme payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2.
    pub x402_version: X402Version<2>,
    /// The resource, copied from the 402. Older obol buyers send a bare URL string; it is read
    /// as `{url}`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "resource_object_or_url"
    )]
    pub resource: Option<ResourceInfo>,
    /// The requirement the client chose, as received.
    pub accepted: PaymentRequirements,
    /// Scheme-specific signed payload, kept verbatim; see [`Self::evm_payload`].
    pub payload: Map<String, Value>,
    /// Extensions, echoed and extended by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Map<String, Value>>,
}

impl PaymentPayload {
    /// The payload as an `exact` EVM payment (EIP-3009 or Permit2).
    pub fn evm_payload(&self) -> Result<EvmPayload, FieldError> {
        EvmPayload::from_map(&self.payload)
    }
}

fn resource_object_or_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ResourceInfo>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Compat {
        Info(ResourceInfo),
        Url(String),
    }
    Ok(match Option::<Compat>::deserialize(deserializer)? {
        Some(Compat::Info(info)) => Some(info),
        Some(Compat::Url(url)) => Some(ResourceInfo::new(url)),
        None => None,
    })
}
