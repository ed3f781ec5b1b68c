//! Why a payment is invalid or did not settle: a closed set of machine codes.
//!
//! The wire strings follow the TS/Go reference SDKs (x402.md §4.3), so a seller that knows
//! their codes understands ours. Clients must still treat reasons as opaque strings.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// A reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, for docs and tests.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $wire,)*
                }
            }
        }
    };
}

reasons! {
    /// The body is not a well-formed verify/settle request.
    InvalidPayload => "invalid_payload",
    /// An `x402Version` other than 1 or 2.
    InvalidX402Version => "invalid_x402_version",
    /// A scheme this facilitator does not implement.
    UnsupportedScheme => "unsupported_scheme",
    /// A network this facilitator has no chain for.
    InvalidNetwork => "invalid_network",
    /// The payment's or the requirement's scheme is not `exact` or `upto`, or they differ.
    Scheme => "invalid_exact_evm_scheme",
    /// The payment's network differs from the requirement's.
    NetworkMismatch => "invalid_exact_evm_network_mismatch",
    /// The payment's asset differs from the requirement's.
    AssetMismatch => "invalid_exact_evm_asset_mismatch",
    /// `extra.name` / `extra.version` missing for EIP-3009.
    MissingEip712Domain => "invalid_exact_evm_missing_eip712_domain",
    /// `authorization.to` is not `payTo`.
    RecipientMismatch => "invalid_exact_evm_recipient_mismatch",
    /// The signature does not recover to `from` (or is malformed / high-s).
    Signature => "invalid_exact_evm_signature",
    /// `validBefore` is less than 6 s away.
    ValidBefore => "invalid_exact_evm_payload_authorization_valid_before",
    /// `validAfter` is in the future.
    ValidAfter => "invalid_exact_evm_payload_authorization_valid_after",
    /// `value` differs from the required amount.
    Value => "invalid_exact_evm_authorization_value",
    /// A contract-wallet signature for an address without code and no ERC-6492 wrapper.
    UndeployedSmartWallet => "invalid_exact_evm_payload_undeployed_smart_wallet",
    /// The settlement transaction reverted.
    TransactionFailed => "invalid_exact_evm_transaction_failed",
    /// The token's on-chain EIP-712 name differs from `extra.name`.
    TokenNameMismatch => "invalid_exact_evm_token_name_mismatch",
    /// The token's on-chain EIP-712 version differs from `extra.version`.
    TokenVersionMismatch => "invalid_exact_evm_token_version_mismatch",
    /// The asset does not implement EIP-3009.
    Eip3009NotSupported => "invalid_exact_evm_eip3009_not_supported",
    /// The authorization nonce was already used or canceled.
    NonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
    /// The payer's balance is below the amount.
    InsufficientBalance => "invalid_exact_evm_insufficient_balance",
    /// Simulation failed for another reason.
    SimulationFailed => "invalid_exact_evm_transaction_simulation_failed",
    /// Permit2 `spender` is not the scheme's x402 proxy.
    Permit2Spender => "invalid_permit2_spender",
    /// Permit2 `witness.to` is not `payTo`.
    Permit2RecipientMismatch => "invalid_permit2_recipient_mismatch",
    /// Permit2 `deadline` is less than 6 s away.
    Permit2DeadlineExpired => "permit2_deadline_expired",
    /// Permit2 `witness.validAfter` is in the future.
    Permit2NotYetValid => "permit2_not_yet_valid",
    /// Permit2 `permitted.amount` differs from the required amount.
    Permit2AmountMismatch => "permit2_amount_mismatch",
    /// Permit2 `permitted.token` differs from the asset.
    Permit2TokenMismatch => "permit2_token_mismatch",
    /// The Permit2 signature does not recover to the owner.
    Permit2Signature => "invalid_permit2_signature",
    /// The payer has not approved Permit2 for the amount (HTTP 412 at the seller).
    Permit2AllowanceRequired => "permit2_allowance_required",
    /// The payer's balance is below the amount (Permit2).
    Permit2InsufficientBalance => "permit2_insufficient_balance",
    /// No code at the scheme's x402 proxy address.
    Permit2ProxyNotDeployed => "permit2_proxy_not_deployed",
    /// Permit2 nonce already used.
    Permit2InvalidNonce => "permit2_invalid_nonce",
    /// Permit2 simulation failed for another reason.
    Permit2SimulationFailed => "permit2_simulation_failed",
    /// `upto`: the settle amount is above the ceiling the payer permitted.
    UptoSettlementExceedsAmount => "invalid_upto_evm_payload_settlement_exceeds_amount",
    /// `upto`: the witness names a facilitator address this facilitator does not hold.
    UptoFacilitatorMismatch => "upto_facilitator_mismatch",
    /// `upto`: the proxy refused the caller (`msg.sender != witness.facilitator`).
    UptoUnauthorizedFacilitator => "upto_unauthorized_facilitator",
    /// The EIP-2612 sponsoring permit is for another amount than the payment.
    Permit2612AmountMismatch => "permit2_2612_amount_mismatch",
    /// The EIP-2612 extension's `from` is not the payer.
    Eip2612FromMismatch => "eip2612_from_mismatch",
    /// The EIP-2612 extension's `asset` is not the token.
    Eip2612AssetMismatch => "eip2612_asset_mismatch",
    /// The EIP-2612 extension's `spender` is not Permit2.
    Eip2612SpenderNotPermit2 => "eip2612_spender_not_permit2",
    /// The EIP-2612 extension's deadline has passed.
    Eip2612DeadlineExpired => "eip2612_deadline_expired",
    /// The EIP-2612 extension is malformed.
    InvalidEip2612Extension => "invalid_eip2612_extension_format",
    /// Broadcast, but no receipt seen in time: not final, do not re-sign.
    SettlementPending => "settlement_pending",
    /// The facilitator failed unexpectedly while settling.
    UnexpectedSettleError => "unexpected_settle_error",
}

impl Reason {
    /// True for Permit2 allowance problems, which sellers answer with HTTP 412.
    pub fn is_precondition(self) -> bool {
        self == Self::Permit2AllowanceRequired
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A payment that failed a check: the code and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The code.
    pub reason: Reason,
    /// What exactly was wrong (never contains secrets; payloads are summarised, not echoed).
    pub message: String,
}

impl Invalid {
    /// A failure with an explanation.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let wire = reason.as_str();
            assert!(seen.insert(wire), "duplicate {wire}");
            assert!(
                wire.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{wire}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Reason::Value).unwrap(),
            "\"invalid_exact_evm_authorization_value\""
        );
    }
}
