//! Signing `exact` and `upto` payments.
//!
//! [`PaymentSigner`] is the one capability a buyer needs from a key: its address, and a
//! signature over a 32-byte EIP-712 digest. [`LocalSigner`] implements it with an in-memory
//! secp256k1 key (alloy's `PrivateKeySigner`); keystores and remote signers implement the same
//! trait elsewhere. Building the message is separate from signing it ([`prepare_payment`] →
//! [`UnsignedPayment::finish`]), so bulk pre-signing can sign many digests in parallel.

use std::fmt;

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;

use crate::signature;
use crate::token::{EXACT_PERMIT2_PROXY, TransferMethod, UPTO_PERMIT2_PROXY};
use crate::wire::evm::{
    Eip3009Authorization, EvmPayload, Permit2Authorization, Permit2TokenPermissions,
    Permit2Witness, UptoAuthorization, UptoWitness,
};
use crate::wire::v2::{PaymentPayload, PaymentRequirements, ResourceInfo};
use crate::wire::{FieldError, X402Version};

/// Seconds subtracted from "now" for `validAfter`, tolerating clock skew (reference clients use
/// the same ten minutes).
pub const CLOCK_SKEW_TOLERANCE_SECS: u64 = 600;

/// How much shorter than the advertised `maxTimeoutSeconds` an authorization's remaining
/// validity may be when it reaches an obol gateway (signing-to-arrival latency and clock
/// skew); below that the gateway refuses it, so that no paid answer outlives its payment's
/// settlability. Buyers hand out pre-signed authorizations only while they stay above it.
pub const ADMISSION_SLACK_SECS: u64 = 30;

/// The least remaining validity an obol gateway admits for a requirement advertising
/// `max_timeout_seconds` (never under `floor`, the facilitator's own minimum).
pub fn admissible_validity(max_timeout_seconds: u64, floor: u64) -> u64 {
    max_timeout_seconds
        .saturating_sub(ADMISSION_SLACK_SECS)
        .max(floor)
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key material is invalid. The message never contains the key.
    #[error("invalid private key: {0}")]
    InvalidKey(&'static str),
    /// The signing backend failed.
    #[error("signing failed: {0}")]
    Backend(String),
}

/// Something that can sign EIP-712 digests for one address.
#[async_trait]
pub trait PaymentSigner: Send + Sync + fmt::Debug {
    /// The address whose signatures this produces.
    fn address(&self) -> Address;

    /// Signs a 32-byte digest; the result has `v ∈ {27, 28}` and low `s`.
    async fn sign_digest(&self, digest: &B256) -> Result<Signature, SignerError>;
}

/// A secp256k1 key held in memory. Its `Debug` shows only the address.
#[derive(Clone)]
pub struct LocalSigner {
    inner: PrivateKeySigner,
}

impl LocalSigner {
    /// From a hex private key, with or without `0x`. Surrounding whitespace is ignored.
    pub fn from_private_key_hex(hex: &str) -> Result<Self, SignerError> {
        let hex = hex.trim();
        let digits = hex.strip_prefix("0x").unwrap_or(hex);
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignerError::InvalidKey(
                "expected 32 bytes as 64 hex digits",
            ));
        }
        digits
            .parse::<PrivateKeySigner>()
            .map(Self::from)
            .map_err(|_| SignerError::InvalidKey("not a valid secp256k1 scalar"))
    }

    /// A key derived from this one for `purpose` and `index`: `keccak256(purpose ‖ key ‖
    /// index)`. The same key, purpose and index always give the same key; knowing a derived
    /// key reveals nothing of this one.
    pub fn derive(&self, purpose: &str, index: u32) -> Result<Self, SignerError> {
        let secret = self.inner.to_bytes();
        let mut material = Vec::with_capacity(purpose.len() + 36);
        material.extend_from_slice(purpose.as_bytes());
        material.extend_from_slice(secret.as_slice());
        material.extend_from_slice(&index.to_be_bytes());
        PrivateKeySigner::from_bytes(&alloy::primitives::keccak256(&material))
            .map(Self::from)
            .map_err(|_| SignerError::InvalidKey("the derived bytes are not a secp256k1 scalar"))
    }

    /// A fresh random key.
    pub fn random() -> Self {
        Self::from(PrivateKeySigner::random())
    }

    /// The signer's address.
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// The underlying alloy signer (to build a transaction wallet from the same key).
    pub fn as_alloy(&self) -> &PrivateKeySigner {
        &self.inner
    }

    /// Signs a digest without going through async (for bulk pre-signing).
    pub fn sign_digest_sync(&self, digest: &B256) -> Result<Signature, SignerError> {
        self.inner
            .sign_hash_sync(digest)
            .map_err(|e| SignerError::Backend(e.to_string()))
    }
}

impl From<PrivateKeySigner> for LocalSigner {
    fn from(inner: PrivateKeySigner) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("address", &self.inner.address().to_checksum(None))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PaymentSigner for LocalSigner {
    fn address(&self) -> Address {
        self.inner.address()
    }

    async fn sign_digest(&self, digest: &B256) -> Result<Signature, SignerError> {
        self.sign_digest_sync(digest)
    }
}

/// The time window an authorization is valid in (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityWindow {
    /// `validAfter` (EIP-3009) / `witness.validAfter` (Permit2).
    pub valid_after: u64,
    /// `validBefore` (EIP-3009) / `deadline` (Permit2).
    pub valid_before: u64,
}

impl ValidityWindow {
    /// What reference clients sign for a live request: from `now − 600` to
    /// `now + maxTimeoutSeconds`.
    pub fn for_request(now: u64, max_timeout_seconds: u64) -> Self {
        Self {
            valid_after: now.saturating_sub(CLOCK_SKEW_TOLERANCE_SECS),
            valid_before: now.saturating_add(max_timeout_seconds),
        }
    }
}

/// Why an `exact` payment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Only the `exact` and `upto` schemes are supported.
    #[error("unsupported scheme {0:?}: only \"exact\" and \"upto\" can be signed")]
    Scheme(String),
    /// The requirement is unusable (bad address, unknown network, missing domain, …).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The window is empty.
    #[error("validity window is empty: validAfter {valid_after} ≥ validBefore {valid_before}")]
    Window {
        /// `validAfter`.
        valid_after: u64,
        /// `validBefore`.
        valid_before: u64,
    },
    /// The signer failed.
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// An `exact` payment with everything but the signature, and the digest to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedPayment {
    accepted: PaymentRequirements,
    resource: Option<ResourceInfo>,
    authorization: Unsigned,
    digest: B256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Unsigned {
    Eip3009(Eip3009Authorization),
    Permit2(Permit2Authorization),
    Upto(UptoAuthorization),
}

/// Builds the authorization paying `requirements` from `from`: `exact` by EIP-3009 or Permit2
/// per `extra.assetTransferMethod`, or `upto` (a Permit2 witness transfer through the upto
/// proxy, permitting `amount` as the ceiling, settleable only by `extra.facilitatorAddress`).
/// `nonce` must be 32 fresh random bytes; for Permit2 they are read as a big-endian uint256.
pub fn prepare_payment(
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    from: Address,
    window: ValidityWindow,
    nonce: B256,
) -> Result<UnsignedPayment, BuildError> {
    let upto = match requirements.scheme.as_str() {
        "exact" => false,
        "upto" => true,
        other => return Err(BuildError::Scheme(other.to_owned())),
    };
    if window.valid_after >= window.valid_before {
        return Err(BuildError::Window {
            valid_after: window.valid_after,
            valid_before: window.valid_before,
        });
    }
    let pay_to = requirements.pay_to_address()?;
    let asset = requirements.asset_address()?;
    let permitted = Permit2TokenPermissions {
        token: asset,
        amount: requirements.amount,
    };
    let authorization = match requirements.transfer_method()? {
        _ if upto => Unsigned::Upto(UptoAuthorization {
            from,
            permitted,
            spender: UPTO_PERMIT2_PROXY,
            nonce: U256::from_be_bytes(nonce.0).into(),
            deadline: window.valid_before.into(),
            witness: UptoWitness {
                to: pay_to,
                facilitator: requirements.facilitator_address()?,
                valid_after: window.valid_after.into(),
            },
        }),
        TransferMethod::Eip3009 => {
            // Refuse early: signing without the token's domain only yields a useless signature.
            requirements.eip712_domain()?;
            Unsigned::Eip3009(Eip3009Authorization {
                from,
                to: pay_to,
                value: requirements.amount,
                valid_after: window.valid_after.into(),
                valid_before: window.valid_before.into(),
                nonce,
            })
        }
        TransferMethod::Permit2 => Unsigned::Permit2(Permit2Authorization {
            from,
            permitted,
            spender: EXACT_PERMIT2_PROXY,
            nonce: U256::from_be_bytes(nonce.0).into(),
            deadline: window.valid_before.into(),
            witness: Permit2Witness {
                to: pay_to,
                valid_after: window.valid_after.into(),
            },
        }),
    };
    let mut unsigned = UnsignedPayment {
        accepted: requirements.clone(),
        resource,
        authorization,
        digest: B256::ZERO,
    };
    unsigned.digest = unsigned
        .payload_shape(Default::default())
        .signing_hash(requirements)?;
    Ok(unsigned)
}

impl UnsignedPayment {
    /// The EIP-712 digest to sign.
    pub fn digest(&self) -> B256 {
        self.digest
    }

    /// The payer.
    pub fn from(&self) -> Address {
        match &self.authorization {
            Unsigned::Eip3009(a) => a.from,
            Unsigned::Permit2(a) => a.from,
            Unsigned::Upto(a) => a.from,
        }
    }

    fn payload_shape(&self, signature: alloy::primitives::Bytes) -> EvmPayload {
        match &self.authorization {
            Unsigned::Eip3009(authorization) => EvmPayload::Eip3009 {
                signature,
                authorization: authorization.clone(),
            },
            Unsigned::Permit2(authorization) => EvmPayload::Permit2 {
                signature,
                authorization: authorization.clone(),
            },
            Unsigned::Upto(authorization) => EvmPayload::Upto {
                signature,
                authorization: authorization.clone(),
            },
        }
    }

    /// Signs the digest with `signer` and finishes the payment ([`UnsignedPayment::finish`]).
    ///
    /// # Errors
    ///
    /// The signer's failure.
    pub fn sign_with(self, signer: &LocalSigner) -> Result<PaymentPayload, SignerError> {
        let signature = signer.sign_digest_sync(&self.digest())?;
        Ok(self.finish(&signature))
    }

    /// The signed v2 payment.
    pub fn finish(self, signature: &Signature) -> PaymentPayload {
        let payload = self.payload_shape(signature::to_bytes(signature)).to_map();
        PaymentPayload {
            x402_version: X402Version,
            resource: self.resource,
            accepted: self.accepted,
            payload,
            extensions: None,
        }
    }
}

/// Builds and signs an `exact` payment for `requirements` with `signer`.
pub async fn sign_payment(
    signer: &dyn PaymentSigner,
    requirements: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    window: ValidityWindow,
    nonce: B256,
) -> Result<PaymentPayload, BuildError> {
    let unsigned = prepare_payment(requirements, resource, signer.address(), window, nonce)?;
    let signature = signer.sign_digest(&unsigned.digest()).await?;
    Ok(unsigned.finish(&signature))
}

/// 32 bytes from the operating system's CSPRNG, for authorization nonces.
pub fn random_nonce() -> B256 {
    B256::random()
}
