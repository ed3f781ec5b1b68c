//! `PurchaseRequest`: a buyer's pool of pre-signed authorizations for one seller
//! (obol-stack.md §3.3). Reconciled by the buyer work: Probed → AuthsSigned → Configured → Ready.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::resource::{Condition, Object, Spec};
use crate::strict::strict_spec;

/// The most authorizations one purchase may request.
pub const MAX_PURCHASE_COUNT: u32 = 2500;

/// One pre-signed authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreSignedAuth {
    /// Identifier (the consume key falls back to the nonce when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The full x402 v2 `PaymentPayload`, when the signer built one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Map<String, Value>>,
    /// 65-byte signature, `0x` hex.
    pub signature: String,
    /// Payer.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Atomic amount.
    pub value: String,
    /// Not valid before.
    pub valid_after: String,
    /// Not valid at or after.
    pub valid_before: String,
    /// Nonce (`0x` 32 bytes for EIP-3009, decimal for Permit2).
    pub nonce: String,
}

/// Refill policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoRefill {
    /// Whether refills happen.
    #[serde(default)]
    pub enabled: bool,
    /// Refill when fewer remain.
    #[serde(default)]
    pub threshold: u32,
    /// How many to sign per refill.
    #[serde(default)]
    pub count: u32,
    /// Cap on authorizations ever signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total: Option<u32>,
    /// Cap on spend per day, in micro-units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spend_per_day: Option<String>,
}

/// What the seller asks, as probed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchasePayment {
    /// CAIP-2 network.
    pub network: String,
    /// Recipient.
    pub pay_to: String,
    /// Atomic price per request.
    pub price: String,
    /// Token address.
    pub asset: String,
    /// Token symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_symbol: Option<String>,
    /// Token decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_decimals: Option<u8>,
    /// `eip3009` or `permit2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_transfer_method: Option<String>,
    /// EIP-712 domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_name: Option<String>,
    /// EIP-712 domain version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_version: Option<String>,
    /// `upto` for a metered purchase (the price is a ceiling per call); absent: `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// The `PurchaseRequest` spec. Deserializing refuses every field it does not know, naming it
/// (see `crate::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct PurchaseRequestSpec {
    /// The seller's offer URL.
    pub endpoint: String,
    /// The seller's model.
    pub model: String,
    /// Authorizations requested (1–[`MAX_PURCHASE_COUNT`]).
    #[schemars(range(min = 1, max = MAX_PURCHASE_COUNT))]
    pub count: u32,
    /// The pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_signed_auths: Vec<PreSignedAuth>,
    /// Refill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_refill: Option<AutoRefill>,
    /// What the seller asks.
    pub payment: PurchasePayment,
}

strict_spec!(PurchaseRequestSpec, &[]);

/// What the buyer controller observed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseRequestStatus {
    /// The generation these conditions describe.
    #[serde(default)]
    pub observed_generation: i64,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `paid/<model>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_model: Option<String>,
    /// The seller URL the proxy serves this purchase at: set when `Configured`, kept while a
    /// new generation is being checked (so an edit takes effect only once it is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_endpoint: Option<String>,
    /// Authorizations left.
    #[serde(default)]
    pub remaining: u32,
    /// Authorizations spent.
    #[serde(default)]
    pub spent: u32,
    /// Authorizations ever signed.
    #[serde(default)]
    pub total_signed: u32,
    /// When the seller was last probed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<String>,
    /// The probed price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probed_price: Option<String>,
    /// The signer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_address: Option<String>,
    /// What the spent authorizations paid, in token units (`0.005 USDC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_spent: Option<String>,
    /// The signer's balance of the token at the last reconcile (`1.25 USDC`), when the chain is
    /// readable from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<String>,
}

impl PurchasePayment {
    /// Paying `requirement`: its network, payee, amount (the price per call) and asset; what
    /// is known of the token besides is left out (set it with struct update syntax).
    pub fn of(requirement: &obol_x402::wire::v2::PaymentRequirements) -> Self {
        Self {
            network: requirement.network.clone(),
            pay_to: requirement.pay_to.clone(),
            price: requirement.amount().to_string(),
            asset: requirement.asset.clone(),
            ..Self::default()
        }
    }

    /// The x402 scheme the authorizations pay: `exact` or `upto`.
    pub fn scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or("exact")
    }

    /// What was spent: `charged` atomic units the sellers' receipts stated (metered calls) plus
    /// `unstated` calls at this price; `None` for an unreadable price.
    pub fn spent_total(
        &self,
        charged: obol_x402::primitives::U256,
        unstated: u64,
    ) -> Option<String> {
        let price: obol_x402::primitives::U256 = self.price.parse().ok()?;
        Some(
            self.amount_text(
                price
                    .saturating_mul(obol_x402::primitives::U256::from(unstated))
                    .saturating_add(charged),
            ),
        )
    }

    /// `atomic` units of this token as text (`1.25 USDC`; the asset address when the symbol is
    /// unknown).
    pub fn amount_text(&self, atomic: obol_x402::primitives::U256) -> String {
        let symbol = self.asset_symbol.as_deref().unwrap_or(&self.asset);
        let decimals = self.asset_decimals.unwrap_or(6);
        format!(
            "{} {symbol}",
            obol_x402::money::format_units(atomic, decimals)
        )
    }
}

impl Spec for PurchaseRequestSpec {
    const KIND: &'static str = "PurchaseRequest";
    type Status = PurchaseRequestStatus;
}

/// A `PurchaseRequest`.
pub type PurchaseRequest = Object<PurchaseRequestSpec>;
