//! EIP-712 typed data of x402 `exact` (and `upto`) payments, declared once with `sol!` and shared
//! by signers and verifiers.
//!
//! | struct | signed under |
//! | --- | --- |
//! | [`TransferWithAuthorization`] (EIP-3009) | the token's domain `{name, version, chainId, verifyingContract = token}` |
//! | [`PermitWitnessTransferFrom`] with the exact [`Witness`] | Permit2's domain `{name: "Permit2", chainId, verifyingContract = Permit2}` (no version) |
//! | [`upto::PermitWitnessTransferFrom`] with the upto witness | Permit2's domain |
//! | [`Permit`] (EIP-2612, gas sponsoring) | the token's domain |

use std::borrow::Cow;

use alloy::primitives::{Address, B256, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};

use crate::token::PERMIT2;

sol! {
    /// EIP-3009 `TransferWithAuthorization`.
    #[derive(Debug, PartialEq, Eq)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// Permit2's token and amount.
    #[derive(Debug, PartialEq, Eq)]
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    /// The x402 exact proxy's witness: who is paid, and not before when.
    #[derive(Debug, PartialEq, Eq)]
    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// Permit2 `PermitWitnessTransferFrom` with the exact witness.
    #[derive(Debug, PartialEq, Eq)]
    struct PermitWitnessTransferFrom {
        TokenPermissions permitted;
        address spender;
        uint256 nonce;
        uint256 deadline;
        Witness witness;
    }

    /// EIP-2612 `Permit`, used by the `eip2612GasSponsoring` extension.
    #[derive(Debug, PartialEq, Eq)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// The `upto` scheme's Permit2 types: the same primary type with a witness that also names the
/// facilitator allowed to settle.
pub mod upto {
    use alloy::sol;

    sol! {
        /// Permit2's token and amount (the ceiling, for `upto`).
        #[derive(Debug, PartialEq, Eq)]
        struct TokenPermissions {
            address token;
            uint256 amount;
        }

        /// The x402 upto proxy's witness.
        #[derive(Debug, PartialEq, Eq)]
        struct Witness {
            address to;
            address facilitator;
            uint256 validAfter;
        }

        /// Permit2 `PermitWitnessTransferFrom` with the upto witness.
        #[derive(Debug, PartialEq, Eq)]
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted;
            address spender;
            uint256 nonce;
            uint256 deadline;
            Witness witness;
        }
    }
}

/// EIP-3009 `ReceiveWithAuthorization` type string (not used by x402: it requires
/// `msg.sender == to`; kept so its hash can be told apart in diagnostics).
pub const RECEIVE_WITH_AUTHORIZATION_TYPE: &str = "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

/// The domain a token signs EIP-3009 and EIP-2612 messages under.
pub fn token_domain(
    name: &str,
    version: &str,
    chain_id: u64,
    verifying_contract: Address,
) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Owned(name.to_owned())),
        Some(Cow::Owned(version.to_owned())),
        Some(U256::from(chain_id)),
        Some(verifying_contract),
        None,
    )
}

/// Permit2's domain on `chain_id`: name `Permit2`, no version.
pub fn permit2_domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Borrowed("Permit2")),
        None,
        Some(U256::from(chain_id)),
        Some(PERMIT2),
        None,
    )
}

/// The EIP-712 digest (`keccak256(0x1901 ‖ domainSeparator ‖ structHash)`) of `message`.
pub fn signing_hash<T: SolStruct>(message: &T, domain: &Eip712Domain) -> B256 {
    message.eip712_signing_hash(domain)
}
