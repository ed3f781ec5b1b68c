//! 65-byte ECDSA signatures as x402 carries them (`r ‖ s ‖ v`, `0x` hex).
//!
//! The rules mirror USDC's `ECRecover` so that what we accept off-chain also passes on-chain:
//! `v` must be 27 or 28 once 0/1 are normalised, and `s` must be in the lower half of the curve
//! order (a high-`s` twin recovers the same address with a raw `ecrecover`, yet the token
//! reverts on it — x402.md T-SIG-5).

use alloy::primitives::{Address, B256, Bytes, Signature, U256, uint};

/// Half the secp256k1 group order: the largest `s` a canonical signature may carry.
pub const SECP256K1_HALF_ORDER: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not 65 bytes (contract-wallet signatures are longer and need on-chain checks).
    #[error("expected a 65-byte ECDSA signature, got {len} bytes")]
    Length {
        /// The length seen.
        len: usize,
    },
    /// `v` is not 0, 1, 27 or 28.
    #[error("invalid signature v value {v}: must be 27 or 28 (0 and 1 are normalised)")]
    InvalidV {
        /// The `v` byte seen.
        v: u8,
    },
    /// `s` is in the upper half of the curve order.
    #[error("non-canonical signature: s is in the upper half of the curve order (high-s)")]
    HighS,
    /// No public key recovers from this signature and digest.
    #[error("signature recovery failed: {0}")]
    Recovery(String),
    /// The text is not `0x`-prefixed hex.
    #[error("signature is not 0x-prefixed hex: {0}")]
    Hex(String),
}

/// Rewrites a trailing `v` of 0/1 to 27/28 in a 65-byte signature; other lengths and values are
/// left untouched (the check is [`parse`]'s job).
pub fn normalize_v(signature: &mut [u8]) {
    if signature.len() == 65
        && let Some(v) = signature.last_mut()
        && *v < 2
    {
        *v += 27;
    }
}

/// Parses a 65-byte `r ‖ s ‖ v` signature, enforcing `v ∈ {0, 1, 27, 28}` and low `s`.
pub fn parse(bytes: &[u8]) -> Result<Signature, SignatureError> {
    let parsed = parse_allowing_high_s(bytes)?;
    if parsed.s() > SECP256K1_HALF_ORDER {
        return Err(SignatureError::HighS);
    }
    Ok(parsed)
}

/// Like [`parse`] but accepts a high `s` — what a raw `ecrecover` does. Only for diagnostics.
pub fn parse_allowing_high_s(bytes: &[u8]) -> Result<Signature, SignatureError> {
    let array: &[u8; 65] = bytes
        .try_into()
        .map_err(|_| SignatureError::Length { len: bytes.len() })?;
    let y_parity = match array[64] {
        0 | 27 => false,
        1 | 28 => true,
        v => return Err(SignatureError::InvalidV { v }),
    };
    let r = U256::from_be_slice(&array[..32]);
    let s = U256::from_be_slice(&array[32..64]);
    Ok(Signature::new(r, s, y_parity))
}

/// Parses `0x`-prefixed hex into bytes.
pub fn from_hex(text: &str) -> Result<Bytes, SignatureError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| SignatureError::Hex("missing 0x prefix".into()))?;
    alloy::primitives::hex::decode(digits)
        .map(Bytes::from)
        .map_err(|e| SignatureError::Hex(e.to_string()))
}

/// Recovers the signer of `digest` from a canonical 65-byte signature.
pub fn recover(digest: &B256, bytes: &[u8]) -> Result<Address, SignatureError> {
    parse(bytes)?
        .recover_address_from_prehash(digest)
        .map_err(|e| SignatureError::Recovery(e.to_string()))
}

/// The 65-byte `r ‖ s ‖ v` encoding with `v ∈ {27, 28}`.
pub fn to_bytes(signature: &Signature) -> Bytes {
    Bytes::copy_from_slice(&signature.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_v() {
        let mut sig = [0u8; 65];
        normalize_v(&mut sig);
        assert_eq!(sig[64], 27);
        sig[64] = 1;
        normalize_v(&mut sig);
        assert_eq!(sig[64], 28);
        sig[64] = 28;
        normalize_v(&mut sig);
        assert_eq!(sig[64], 28);
        let mut short = [1u8; 64];
        normalize_v(&mut short);
        assert_eq!(short[63], 1, "other lengths untouched");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(parse(&[0u8; 64]), Err(SignatureError::Length { len: 64 }));
        let mut sig = [1u8; 65];
        sig[64] = 29;
        assert_eq!(parse(&sig), Err(SignatureError::InvalidV { v: 29 }));
        let mut high = [0u8; 65];
        high[32..64].copy_from_slice(&(SECP256K1_HALF_ORDER + U256::from(1)).to_be_bytes::<32>());
        high[0] = 1;
        high[64] = 27;
        assert_eq!(parse(&high), Err(SignatureError::HighS));
        assert!(parse_allowing_high_s(&high).is_ok());
        assert!(from_hex("1234").is_err());
        assert!(from_hex("0xzz").is_err());
        assert_eq!(from_hex("0x0102").unwrap().as_ref(), &[1, 2]);
    }
}
