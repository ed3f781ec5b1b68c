//! Price models and the per-request amount a 402 asks for.
//!
//! A seller prices an offer in one of three ways, in token units. x402 `exact` charges a fixed
//! amount per request, so every model is turned into one per-request atomic amount:
//!
//! | model | meaning | per-request amount |
//! | --- | --- | --- |
//! | `perRequest` | price of one request | the price |
//! | `perMTok` | price of one million tokens | `perMTok × 1000 / 1 000 000` (one request ≈ [`APPROX_TOKENS_PER_REQUEST`] tokens) |
//! | `perHour` | price of one hour of use | `perHour × 5 / 60` (one request ≈ [`APPROX_MINUTES_PER_REQUEST`] minutes) |
//!
//! The original disagreed with itself on `perHour` (its gateway charged the whole hourly price
//! per request, its CLI and catalog described five minutes). We charge five minutes: see
//! `docs/pricing.md`. Each amount is computed exactly and rounded half up once; a price that
//! rounds to zero atomic units is refused, because an `exact` payment of zero cannot settle.

use std::fmt;

use alloy::primitives::U256;
use serde::{Deserialize, Serialize};

use crate::money::{Decimal, MoneyError};

/// Tokens one request is assumed to use when a price is given per million tokens.
pub const APPROX_TOKENS_PER_REQUEST: u64 = 1000;
/// Minutes one request is assumed to last when a price is given per hour.
pub const APPROX_MINUTES_PER_REQUEST: u64 = 5;

/// Why a price could not be turned into a per-request amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// No price model was given.
    #[error("no price given: set exactly one of perRequest, perMTok or perHour")]
    Missing,
    /// More than one price model was given.
    #[error("several prices given ({0}): set exactly one of perRequest, perMTok or perHour")]
    Ambiguous(String),
    /// The price is not a valid amount.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The price is positive but smaller than one atomic unit per request.
    #[error(
        "{model} price {price} is less than one atomic unit per request for a token with {decimals} decimals"
    )]
    RoundsToZero {
        /// The model's wire name.
        model: PriceUnit,
        /// The price as given.
        price: Decimal,
        /// The token's decimals.
        decimals: u8,
    },
    /// The price is zero.
    #[error("{model} price is zero: x402 `exact` payments must be positive")]
    Zero {
        /// The model's wire name.
        model: PriceUnit,
    },
}

/// The unit a price is given in; serialised with the wire names of the ServiceOffer spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PriceUnit {
    /// Per request.
    #[serde(rename = "perRequest")]
    PerRequest,
    /// Per million tokens.
    #[serde(rename = "perMTok")]
    PerMTok,
    /// Per hour.
    #[serde(rename = "perHour")]
    PerHour,
}

impl PriceUnit {
    /// The wire name (`perRequest`, `perMTok`, `perHour`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerRequest => "perRequest",
            Self::PerMTok => "perMTok",
            Self::PerHour => "perHour",
        }
    }

    /// The suffix used in human price labels (`/request`, `/MTok`, `/hour`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::PerRequest => "/request",
            Self::PerMTok => "/MTok",
            Self::PerHour => "/hour",
        }
    }

    /// `(numerator, denominator)` turning a price in this unit into a per-request price.
    fn per_request_ratio(self) -> (u64, u64) {
        match self {
            Self::PerRequest => (1, 1),
            Self::PerMTok => (APPROX_TOKENS_PER_REQUEST, 1_000_000),
            Self::PerHour => (APPROX_MINUTES_PER_REQUEST, 60),
        }
    }
}

impl fmt::Display for PriceUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price in token units together with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Price {
    /// The unit the amount is given in.
    pub unit: PriceUnit,
    /// The amount in token units.
    pub amount: Decimal,
}

impl Price {
    /// A price per request.
    pub fn per_request(amount: Decimal) -> Self {
        Self {
            unit: PriceUnit::PerRequest,
            amount,
        }
    }

    /// Picks the single price set among the three optional fields of a ServiceOffer's
    /// `payment.price`. Zero or several set is an error.
    pub fn from_fields(
        per_request: Option<&str>,
        per_mtok: Option<&str>,
        per_hour: Option<&str>,
    ) -> Result<Self, PricingError> {
        let set: Vec<(PriceUnit, &str)> = [
            (PriceUnit::PerRequest, per_request),
            (PriceUnit::PerMTok, per_mtok),
            (PriceUnit::PerHour, per_hour),
        ]
        .into_iter()
        .filter_map(|(unit, value)| value.map(|v| (unit, v)))
        .collect();
        match set.as_slice() {
            [] => Err(PricingError::Missing),
            [(unit, value)] => Ok(Self {
                unit: *unit,
                amount: value.parse()?,
            }),
            many => Err(PricingError::Ambiguous(
                many.iter()
                    .map(|(unit, _)| unit.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// The amount one request costs, in atomic units of a token with `decimals` decimals.
    pub fn per_request_atomic(&self, decimals: u8) -> Result<U256, PricingError> {
        if self.amount.is_zero() {
            return Err(PricingError::Zero { model: self.unit });
        }
        let (num, den) = self.unit.per_request_ratio();
        let atomic = self.amount.to_atomic_scaled(decimals, num, den)?;
        if atomic.is_zero() {
            return Err(PricingError::RoundsToZero {
                model: self.unit,
                price: self.amount,
                decimals,
            });
        }
        Ok(atomic)
    }

    /// A human label such as `"0.001 USDC/request"`.
    pub fn label(&self, symbol: &str) -> String {
        format!("{} {symbol}{}", self.amount, self.unit.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(unit: PriceUnit, amount: &str) -> Price {
        Price {
            unit,
            amount: amount.parse().unwrap(),
        }
    }

    #[test]
    fn per_request_amounts() {
        let table = [
            (PriceUnit::PerRequest, "0.001", 6, 1000u64),
            (PriceUnit::PerRequest, "0.001", 18, 1_000_000_000_000_000),
            (PriceUnit::PerRequest, "1", 6, 1_000_000),
            (PriceUnit::PerMTok, "1", 6, 1000),
            (PriceUnit::PerMTok, "0.5", 6, 500),
            (PriceUnit::PerMTok, "0.0015", 6, 2), // 1.5 atomic → 2 (half up)
            (PriceUnit::PerHour, "0.12", 6, 10_000),
            (PriceUnit::PerHour, "1", 6, 83_333),
            (PriceUnit::PerHour, "0.01", 6, 833),
        ];
        for (unit, amount, decimals, want) in table {
            assert_eq!(
                price(unit, amount).per_request_atomic(decimals).unwrap(),
                U256::from(want),
                "{amount} {unit} at {decimals} decimals"
            );
        }
    }

    #[test]
    fn zero_and_dust_prices_are_refused() {
        assert!(matches!(
            price(PriceUnit::PerRequest, "0").per_request_atomic(6),
            Err(PricingError::Zero { .. })
        ));
        let err = price(PriceUnit::PerMTok, "0.0000001")
            .per_request_atomic(6)
            .unwrap_err();
        assert!(matches!(err, PricingError::RoundsToZero { .. }));
        assert!(
            err.to_string().contains("less than one atomic unit"),
            "{err}"
        );
    }

    #[test]
    fn exactly_one_field_must_be_set() {
        assert_eq!(
            Price::from_fields(None, Some("2"), None).unwrap(),
            price(PriceUnit::PerMTok, "2")
        );
        assert_eq!(
            Price::from_fields(None, None, None),
            Err(PricingError::Missing)
        );
        let err = Price::from_fields(Some("1"), None, Some("2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "several prices given (perRequest, perHour): set exactly one of perRequest, perMTok or perHour"
        );
        assert!(matches!(
            Price::from_fields(Some("1e3"), None, None),
            Err(PricingError::Money(_))
        ));
    }

    #[test]
    fn labels() {
        assert_eq!(
            price(PriceUnit::PerRequest, "0.001").label("USDC"),
            "0.001 USDC/request"
        );
        assert_eq!(
            price(PriceUnit::PerMTok, "2.50").label("OBOL"),
            "2.5 OBOL/MTok"
        );
        assert_eq!(price(PriceUnit::PerHour, "1").label("USDC"), "1 USDC/hour");
    }
}
