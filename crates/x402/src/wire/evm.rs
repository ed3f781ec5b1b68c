//! The EVM payloads: `exact` (an EIP-3009 authorization or a Permit2 witness transfer through the
//! exact proxy) and `upto` (a Permit2 witness transfer through the upto proxy, whose permitted
//! amount is a ceiling), each with the EIP-712 digest it was signed over.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldError;
use super::scalar::{DecimalU256, checksummed};
use super::v2::PaymentRequirements;
use crate::eip712::{self, token_domain};
use crate::signature::{self, SignatureError};
use crate::token::TransferMethod;

/// An EIP-3009 `TransferWithAuthorization` as carried in `payload.authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    /// Payer.
    #[serde(with = "checksummed")]
    pub from: Address,
    /// Recipient (must equal `payTo`).
    #[serde(with = "checksummed")]
    pub to: Address,
    /// Atomic amount (must equal the requirement's amount).
    pub value: DecimalU256,
    /// Not valid at or before this unix time.
    pub valid_after: DecimalU256,
    /// Not valid at or after this unix time.
    pub valid_before: DecimalU256,
    /// 32 random bytes.
    pub nonce: B256,
}

impl Eip3009Authorization {
    /// The typed-data struct.
    pub fn to_typed(&self) -> eip712::TransferWithAuthorization {
        eip712::TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value.get(),
            validAfter: self.valid_after.get(),
            validBefore: self.valid_before.get(),
            nonce: self.nonce,
        }
    }

    /// The EIP-712 digest under `domain`.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        eip712::signing_hash(&self.to_typed(), domain)
    }
}

/// Permit2's `{token, amount}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2TokenPermissions {
    /// Token contract.
    #[serde(with = "checksummed")]
    pub token: Address,
    /// Atomic amount.
    pub amount: DecimalU256,
}

/// The exact proxy's witness `{to, validAfter}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Witness {
    /// Recipient (must equal `payTo`).
    #[serde(with = "checksummed")]
    pub to: Address,
    /// Not valid before this unix time.
    pub valid_after: DecimalU256,
}

/// A Permit2 witness transfer as carried in `payload.permit2Authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permit2Authorization {
    /// Payer.
    #[serde(with = "checksummed")]
    pub from: Address,
    /// Token and amount.
    pub permitted: Permit2TokenPermissions,
    /// Must be the x402 exact Permit2 proxy.
    #[serde(with = "checksummed")]
    pub spender: Address,
    /// Unordered Permit2 nonce (decimal uint256).
    pub nonce: DecimalU256,
    /// Unix deadline.
    pub deadline: DecimalU256,
    /// The proxy's witness.
    pub witness: Permit2Witness,
}

impl Permit2Authorization {
    /// The typed-data struct.
    pub fn to_typed(&self) -> eip712::PermitWitnessTransferFrom {
        eip712::PermitWitnessTransferFrom {
            permitted: eip712::TokenPermissions {
                token: self.permitted.token,
                amount: self.permitted.amount.get(),
            },
            spender: self.spender,
            nonce: self.nonce.get(),
            deadline: self.deadline.get(),
            witness: eip712::Witness {
                to: self.witness.to,
                validAfter: self.witness.valid_after.get(),
            },
        }
    }

    /// The EIP-712 digest under Permit2's domain on `chain_id`.
    pub fn signing_hash(&self, chain_id: u64) -> B256 {
        eip712::signing_hash(&self.to_typed(), &eip712::permit2_domain(chain_id))
    }
}

/// The upto proxy's witness `{to, facilitator, validAfter}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoWitness {
    /// Recipient (must equal `payTo`).
    #[serde(with = "checksummed")]
    pub to: Address,
    /// The only address the proxy lets settle it (`extra.facilitatorAddress`).
    #[serde(with = "checksummed")]
    pub facilitator: Address,
    /// Not valid before this unix time.
    pub valid_after: DecimalU256,
}

/// An `upto` Permit2 witness transfer as carried in `payload.permit2Authorization`: the
/// permitted amount is the most the payment may settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UptoAuthorization {
    /// Payer.
    #[serde(with = "checksummed")]
    pub from: Address,
    /// Token and ceiling.
    pub permitted: Permit2TokenPermissions,
    /// Must be the x402 upto Permit2 proxy.
    #[serde(with = "checksummed")]
    pub spender: Address,
    /// Unordered Permit2 nonce (decimal uint256).
    pub nonce: DecimalU256,
    /// Unix deadline.
    pub deadline: DecimalU256,
    /// The proxy's witness.
    pub witness: UptoWitness,
}

impl UptoAuthorization {
    /// The typed-data struct.
    pub fn to_typed(&self) -> eip712::upto::PermitWitnessTransferFrom {
        eip712::upto::PermitWitnessTransferFrom {
            permitted: eip712::upto::TokenPermissions {
                token: self.permitted.token,
                amount: self.permitted.amount.get(),
            },
            spender: self.spender,
            nonce: self.nonce.get(),
            deadline: self.deadline.get(),
            witness: eip712::upto::Witness {
                to: self.witness.to,
                facilitator: self.witness.facilitator,
                validAfter: self.witness.valid_after.get(),
            },
        }
    }

    /// The EIP-712 digest under Permit2's domain on `chain_id`.
    pub fn signing_hash(&self, chain_id: u64) -> B256 {
        eip712::signing_hash(&self.to_typed(), &eip712::permit2_domain(chain_id))
    }
}

/// The signed part of an EVM payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EvmPayload {
    /// EIP-3009 (`payload.authorization`).
    Eip3009 {
        /// 65-byte ECDSA, or a longer ERC-1271 / ERC-6492 signature.
        signature: Bytes,
        /// The signed authorization.
        authorization: Eip3009Authorization,
    },
    /// `upto` through Permit2 (`payload.permit2Authorization` whose witness names the
    /// facilitator). Before [`Self::Permit2`]: an untagged read tries it first, and an exact
    /// witness (no `facilitator`) falls through.
    Upto {
        /// 65-byte ECDSA, or a longer contract-wallet signature.
        signature: Bytes,
        /// The signed witness transfer.
        #[serde(rename = "permit2Authorization")]
        authorization: UptoAuthorization,
    },
    /// `exact` through Permit2 (`payload.permit2Authorization`).
    Permit2 {
        /// 65-byte ECDSA, or a longer contract-wallet signature.
        signature: Bytes,
        /// The signed witness transfer.
        #[serde(rename = "permit2Authorization")]
        authorization: Permit2Authorization,
    },
}

impl EvmPayload {
    /// Reads a `payload` object. The presence of `permit2Authorization` (with a witness naming
    /// a `facilitator`: upto) or `authorization` decides the variant, so errors name the right
    /// fields.
    pub fn from_map(payload: &Map<String, Value>) -> Result<Self, FieldError> {
        let value = Value::Object(payload.clone());
        let upto = payload
            .get("permit2Authorization")
            .and_then(|a| a.get("witness"))
            .is_some_and(|w| w.get("facilitator").is_some());
        let parsed = if upto {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Upto {
                signature: Bytes,
                permit2_authorization: UptoAuthorization,
            }
            serde_json::from_value::<Upto>(value).map(|p| Self::Upto {
                signature: p.signature,
                authorization: p.permit2_authorization,
            })
        } else if payload.contains_key("permit2Authorization") {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct P2 {
                signature: Bytes,
                permit2_authorization: Permit2Authorization,
            }
            serde_json::from_value::<P2>(value).map(|p| Self::Permit2 {
                signature: p.signature,
                authorization: p.permit2_authorization,
            })
        } else if payload.contains_key("authorization") {
            #[derive(Deserialize)]
            struct E3009 {
                signature: Bytes,
                authorization: Eip3009Authorization,
            }
            serde_json::from_value::<E3009>(value).map(|p| Self::Eip3009 {
                signature: p.signature,
                authorization: p.authorization,
            })
        } else {
            return Err(FieldError::Payload(
                "neither `authorization` (EIP-3009) nor `permit2Authorization` (Permit2) present"
                    .into(),
            ));
        };
        parsed.map_err(|e| FieldError::Payload(e.to_string()))
    }

    /// The payload as a JSON object (for `PaymentPayload.payload`).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // An enum of plain structs always serialises to an object.
            _ => Map::new(),
        }
    }

    /// The payer.
    pub fn payer(&self) -> Address {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.from,
            Self::Upto { authorization, .. } => authorization.from,
            Self::Permit2 { authorization, .. } => authorization.from,
        }
    }

    /// The signature bytes.
    pub fn signature(&self) -> &Bytes {
        match self {
            Self::Eip3009 { signature, .. }
            | Self::Upto { signature, .. }
            | Self::Permit2 { signature, .. } => signature,
        }
    }

    /// Which transfer method this payload uses (`upto` is always Permit2).
    pub fn transfer_method(&self) -> TransferMethod {
        match self {
            Self::Eip3009 { .. } => TransferMethod::Eip3009,
            Self::Upto { .. } | Self::Permit2 { .. } => TransferMethod::Permit2,
        }
    }

    /// The scheme the payload belongs to: `exact` or `upto`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Upto { .. } => "upto",
            Self::Eip3009 { .. } | Self::Permit2 { .. } => "exact",
        }
    }

    /// Who is paid (`to`, or `witness.to`).
    pub fn recipient(&self) -> Address {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.to,
            Self::Upto { authorization, .. } => authorization.witness.to,
            Self::Permit2 { authorization, .. } => authorization.witness.to,
        }
    }

    /// The time before which the authorization cannot settle (`validAfter`).
    pub fn valid_after(&self) -> U256 {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.valid_after.get(),
            Self::Upto { authorization, .. } => authorization.witness.valid_after.get(),
            Self::Permit2 { authorization, .. } => authorization.witness.valid_after.get(),
        }
    }

    /// The most this payment can move: the amount (`exact`) or the permitted ceiling (`upto`).
    pub fn ceiling(&self) -> U256 {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.value.get(),
            Self::Upto { authorization, .. } => authorization.permitted.amount.get(),
            Self::Permit2 { authorization, .. } => authorization.permitted.amount.get(),
        }
    }

    /// The payment identity `(payer, nonce)` that must never be served or settled twice; the
    /// Permit2 nonce is written as 32 big-endian bytes so both kinds share one key space.
    pub fn nonce(&self) -> B256 {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.nonce,
            Self::Upto { authorization, .. } => {
                B256::from(authorization.nonce.get().to_be_bytes::<32>())
            }
            Self::Permit2 { authorization, .. } => {
                B256::from(authorization.nonce.get().to_be_bytes::<32>())
            }
        }
    }

    /// The time after which the authorization can no longer settle (`validBefore` or
    /// `deadline`).
    pub fn expires_at(&self) -> U256 {
        match self {
            Self::Eip3009 { authorization, .. } => authorization.valid_before.get(),
            Self::Upto { authorization, .. } => authorization.deadline.get(),
            Self::Permit2 { authorization, .. } => authorization.deadline.get(),
        }
    }

    /// The EIP-712 digest this payload's signature must cover, with the domain taken from
    /// `requirements` (EIP-3009: `extra.name`/`version`, chain id from the network,
    /// `verifyingContract = asset`; Permit2: Permit2's domain on that chain).
    pub fn signing_hash(&self, requirements: &PaymentRequirements) -> Result<B256, FieldError> {
        let chain_id = requirements.chain_id()?;
        Ok(match self {
            Self::Eip3009 { authorization, .. } => {
                let (name, version) = requirements.eip712_domain()?;
                let domain = token_domain(name, version, chain_id, requirements.asset_address()?);
                authorization.signing_hash(&domain)
            }
            Self::Upto { authorization, .. } => authorization.signing_hash(chain_id),
            Self::Permit2 { authorization, .. } => authorization.signing_hash(chain_id),
        })
    }

    /// Recovers the EOA that signed this payload under `requirements`' domain. Contract-wallet
    /// signatures (not 65 bytes) and high-`s` signatures are errors here; a facilitator checks
    /// contract wallets on-chain.
    pub fn recover_signer(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<Address, RecoverError> {
        let digest = self.signing_hash(requirements)?;
        Ok(signature::recover(&digest, self.signature())?)
    }
}

/// Why the signer of a payload could not be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// The requirement lacks what the domain needs.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The signature is malformed or non-canonical.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}
