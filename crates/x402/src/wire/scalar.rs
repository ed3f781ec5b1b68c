//! Scalar wire encodings shared by every message: the version marker, integers carried as
//! decimal strings, and checksummed addresses.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use alloy::primitives::{Address, U256};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `x402Version` field of a message of protocol version `N`: serialised as the JSON number
/// `N`; any other value is refused with an error naming it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct X402Version<const N: u8>;

impl<const N: u8> fmt::Debug for X402Version<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "X402Version({N})")
    }
}

impl<const N: u8> Serialize for X402Version<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(N)
    }
}

impl<'de, const N: u8> Deserialize<'de> for X402Version<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = u64::deserialize(deserializer)?;
        if version == u64::from(N) {
            Ok(Self)
        } else {
            Err(D::Error::custom(format!(
                "unsupported x402Version {version}, expected {N}"
            )))
        }
    }
}

/// A `uint256` carried as a JSON **string** of base-10 digits (amounts, timestamps, Permit2
/// nonces). JSON numbers, hex, signs and empty strings are refused: two parsers must never
/// disagree on the value of a payment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DecimalU256(pub U256);

impl DecimalU256 {
    /// The value.
    pub fn get(self) -> U256 {
        self.0
    }

    /// The value as seconds, saturating at `u64::MAX` (for time comparisons).
    pub fn as_u64_saturating(self) -> u64 {
        u64::try_from(self.0).unwrap_or(u64::MAX)
    }
}

impl From<U256> for DecimalU256 {
    fn from(value: U256) -> Self {
        Self(value)
    }
}

impl From<u64> for DecimalU256 {
    fn from(value: u64) -> Self {
        Self(U256::from(value))
    }
}

impl fmt::Debug for DecimalU256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for DecimalU256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a decimal-string integer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid uint256 {input:?}: {reason}")]
pub struct DecimalU256Error {
    input: String,
    reason: &'static str,
}

impl FromStr for DecimalU256 {
    type Err = DecimalU256Error;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DecimalU256Error {
            input: input.chars().take(80).collect(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty string"));
        }
        if !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected base-10 digits only"));
        }
        U256::from_str_radix(input, 10)
            .map(Self)
            .map_err(|_| err("does not fit in 256 bits"))
    }
}

impl Serialize for DecimalU256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DecimalU256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DecimalU256;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of base-10 digits (x402 integers are JSON strings)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DecimalU256, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Serde helpers for [`Address`]: accept any hex case, write the EIP-55 checksummed form (as the
/// spec examples and every reference SDK do).
pub mod checksummed {
    use super::*;

    /// Writes the EIP-55 form.
    pub fn serialize<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&address.to_checksum(None))
    }

    /// Reads `0x` + 40 hex digits in any case.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        parse_address(&text).map_err(D::Error::custom)
    }
}

/// Parses `0x` + 40 hex digits (any case; the checksum is not enforced, as x402 compares
/// addresses case-insensitively).
pub fn parse_address(text: &str) -> Result<Address, String> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| format!("address {text:?} must start with 0x"))?;
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "address {text:?} must be 0x followed by 40 hex digits"
        ));
    }
    text.parse::<Address>().map_err(|e| e.to_string())
}
