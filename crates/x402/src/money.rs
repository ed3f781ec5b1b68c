//! Exact money math: decimal strings in token units ↔ integer atomic units.
//!
//! Prices are written by people in token units (`"0.001"` USDC) and paid on-chain in atomic
//! units (`1000` for a 6-decimal token). Nothing here touches a float: a [`Decimal`] is an
//! integer mantissa and a power-of-ten scale, and every conversion that cannot be exact rounds
//! **half up** (away from zero at exactly one half), as the original does (`+0.5`, truncate).

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{U256, Uint};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most fractional digits a [`Decimal`] may carry, and the most decimals a token may have
/// for conversions. 10^77 is the largest power of ten below 2^256.
pub const MAX_SCALE: u8 = 77;

/// Why a money value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The input was empty.
    #[error("empty amount: expected a decimal number such as \"0.001\"")]
    Empty,
    /// The input is not a plain non-negative decimal.
    #[error("invalid amount {input:?}: {reason}")]
    Invalid {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More fractional digits than [`MAX_SCALE`].
    #[error("amount {input:?} has more than {MAX_SCALE} fractional digits")]
    TooPrecise {
        /// The offending input.
        input: String,
    },
    /// The value does not fit in 256 bits.
    #[error("amount {input:?} is too large (it must fit in 256 bits of atomic units)")]
    Overflow {
        /// The offending input, or a description of the computed value.
        input: String,
    },
    /// A token with more decimals than [`MAX_SCALE`].
    #[error("unsupported token decimals {decimals} (at most {MAX_SCALE})")]
    Decimals {
        /// The decimals that were asked for.
        decimals: u8,
    },
}

/// An exact non-negative decimal number: `mantissa / 10^scale`.
///
/// Parsing accepts only plain decimals (`"1"`, `"0.001"`, `"12.50"`): no sign, no exponent, no
/// thousands separators. Trailing fractional zeros are dropped, so equal numbers compare equal
/// (`"1.50" == "1.5"`) and [`Display`](fmt::Display) prints the canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Decimal {
    mantissa: U256,
    scale: u8,
}

impl Decimal {
    /// Zero.
    pub const ZERO: Self = Self {
        mantissa: U256::ZERO,
        scale: 0,
    };

    /// `mantissa / 10^scale`, normalised.
    pub fn new(mantissa: U256, scale: u8) -> Result<Self, MoneyError> {
        if scale > MAX_SCALE {
            return Err(MoneyError::TooPrecise {
                input: format!("{mantissa}e-{scale}"),
            });
        }
        Ok(Self { mantissa, scale }.normalized())
    }

    /// The token-unit value of `atomic` units of a token with `decimals` decimals.
    pub fn from_atomic(atomic: U256, decimals: u8) -> Result<Self, MoneyError> {
        if decimals > MAX_SCALE {
            return Err(MoneyError::Decimals { decimals });
        }
        Self::new(atomic, decimals)
    }

    /// The integer mantissa.
    pub fn mantissa(&self) -> U256 {
        self.mantissa
    }

    /// The number of fractional digits.
    pub fn scale(&self) -> u8 {
        self.scale
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa.is_zero()
    }

    /// This value in atomic units of a token with `decimals` decimals, rounded half up.
    ///
    /// `"0.001"` with 6 decimals is `1000`; `"0.0000005"` with 6 decimals is `1` (half up).
    pub fn to_atomic(&self, decimals: u8) -> Result<U256, MoneyError> {
        self.to_atomic_scaled(decimals, 1, 1)
    }

    /// `self × numerator / denominator` in atomic units of a token with `decimals` decimals,
    /// computed exactly and rounded half up once at the end.
    pub fn to_atomic_scaled(
        &self,
        decimals: u8,
        numerator: u64,
        denominator: u64,
    ) -> Result<U256, MoneyError> {
        if decimals > MAX_SCALE {
            return Err(MoneyError::Decimals { decimals });
        }
        if denominator == 0 {
            return Err(MoneyError::Invalid {
                input: self.to_string(),
                reason: "division by zero",
            });
        }
        let num = Wide::from(self.mantissa) * pow10(decimals) * Wide::from(numerator);
        let den = pow10(self.scale) * Wide::from(denominator);
        let (mut quotient, remainder) = num.div_rem(den);
        // Half up: round away from zero when the remainder is at least half the divisor.
        if remainder >= den - remainder {
            quotient += Wide::from(1u8);
        }
        U256::checked_from_limbs_slice(quotient.as_limbs()).ok_or_else(|| MoneyError::Overflow {
            input: format!("{self} × 10^{decimals} × {numerator} / {denominator}"),
        })
    }

    /// `Σ countᵢ × priceᵢ / denominator` in atomic units of a token with `decimals` decimals,
    /// computed exactly and rounded **up** once at the end (a metered charge never rounds in the
    /// payer's favour below what was used, nor twice). `denominator` is the unit the prices are
    /// given per (1 000 000 for a price per million tokens).
    pub fn sum_products_atomic_up(
        terms: &[(u64, Self)],
        decimals: u8,
        denominator: u64,
    ) -> Result<U256, MoneyError> {
        if decimals > MAX_SCALE {
            return Err(MoneyError::Decimals { decimals });
        }
        if denominator == 0 {
            return Err(MoneyError::Invalid {
                input: format!("{terms:?}"),
                reason: "division by zero",
            });
        }
        let overflow = || MoneyError::Overflow {
            input: format!("{terms:?} × 10^{decimals} / {denominator}"),
        };
        let scale = terms.iter().map(|(_, d)| d.scale).max().unwrap_or(0);
        let mut num = Wide::ZERO;
        for (count, price) in terms {
            let term = Wide::from(*count)
                .checked_mul(Wide::from(price.mantissa))
                .and_then(|t| t.checked_mul(pow10(scale - price.scale)))
                .and_then(|t| t.checked_mul(pow10(decimals)))
                .ok_or_else(overflow)?;
            num = num.checked_add(term).ok_or_else(overflow)?;
        }
        let den = pow10(scale) * Wide::from(denominator);
        let (mut quotient, remainder) = num.div_rem(den);
        if !remainder.is_zero() {
            quotient += Wide::from(1u8);
        }
        U256::checked_from_limbs_slice(quotient.as_limbs()).ok_or_else(overflow)
    }

    fn normalized(mut self) -> Self {
        let ten = U256::from(10u8);
        while self.scale > 0 && (self.mantissa % ten).is_zero() {
            self.mantissa /= ten;
            self.scale -= 1;
        }
        if self.mantissa.is_zero() {
            self.scale = 0;
        }
        self
    }
}

/// Wide enough for `mantissa × 10^decimals × numerator` at its largest: 256 + 256 + 64 bits
/// (a 512-bit intermediate wrapped for 77-decimal tokens; found by the property tests).
type Wide = Uint<640, 10>;

fn pow10(exp: u8) -> Wide {
    Wide::from(10u8).pow(Wide::from(exp))
}

impl FromStr for Decimal {
    type Err = MoneyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(MoneyError::Empty);
        }
        let invalid = |reason| MoneyError::Invalid {
            input: input.to_owned(),
            reason,
        };
        let (int_part, frac_part) = match input.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (input, None),
        };
        if int_part.is_empty() {
            return Err(invalid("a digit must come before the decimal point"));
        }
        if frac_part.is_some_and(str::is_empty) {
            return Err(invalid("a digit must follow the decimal point"));
        }
        let frac_part = frac_part.unwrap_or("");
        if let Some(c) = int_part
            .chars()
            .chain(frac_part.chars())
            .find(|c| !c.is_ascii_digit())
        {
            return Err(match c {
                '-' => invalid("amounts cannot be negative"),
                'e' | 'E' => invalid("exponent notation is not accepted"),
                ',' | '_' | ' ' => invalid("digit separators are not accepted"),
                '.' => invalid("more than one decimal point"),
                _ => invalid("only digits and one decimal point are accepted"),
            });
        }
        if frac_part.len() > usize::from(MAX_SCALE) {
            return Err(MoneyError::TooPrecise {
                input: input.to_owned(),
            });
        }
        let digits = format!("{int_part}{frac_part}");
        let mantissa = U256::from_str_radix(&digits, 10).map_err(|_| MoneyError::Overflow {
            input: input.to_owned(),
        })?;
        // `frac_part.len() <= MAX_SCALE` was checked above, so it fits in a u8.
        let scale = u8::try_from(frac_part.len()).map_err(|_| MoneyError::TooPrecise {
            input: input.to_owned(),
        })?;
        Ok(Self { mantissa, scale }.normalized())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Formats an atomic amount in token units, without trailing zeros: `1000` with 6 decimals is
/// `"0.001"`.
pub fn format_units(atomic: U256, decimals: u8) -> String {
    match Decimal::from_atomic(atomic, decimals) {
        Ok(d) => d.to_string(),
        // Only for tokens with absurd decimals; show the raw amount rather than lie.
        Err(_) => format!("{atomic} atomic units"),
    }
}

/// Parses a token-unit decimal string into atomic units, rounding half up.
pub fn parse_units(amount: &str, decimals: u8) -> Result<U256, MoneyError> {
    amount.parse::<Decimal>()?.to_atomic(decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("0", "0"),
            ("0.000", "0"),
            ("1", "1"),
            ("1.50", "1.5"),
            ("0.001", "0.001"),
            ("007.10", "7.1"),
            ("123456789.000000001", "123456789.000000001"),
        ] {
            assert_eq!(d(input).to_string(), canonical, "{input}");
        }
        assert_eq!(d("1.50"), d("1.5"));
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for bad in [
            "", "-1", "1e6", "1,000", "1_000", " 1", "1.", ".5", "1.2.3", "0x10", "abc", "1 ",
            "NaN", "+1",
        ] {
            assert!(
                bad.parse::<Decimal>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let err = "-1".parse::<Decimal>().unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn converts_to_atomic_units() {
        assert_eq!(d("0.001").to_atomic(6).unwrap(), U256::from(1000));
        assert_eq!(d("0.001").to_atomic(18).unwrap(), U256::from(10u64.pow(15)));
        assert_eq!(d("1").to_atomic(0).unwrap(), U256::from(1));
        assert_eq!(
            d("2.5").to_atomic(0).unwrap(),
            U256::from(3),
            "half rounds up"
        );
        assert_eq!(d("2.4999").to_atomic(0).unwrap(), U256::from(2));
        assert_eq!(d("0.0000005").to_atomic(6).unwrap(), U256::from(1));
        assert_eq!(d("0.00000049").to_atomic(6).unwrap(), U256::ZERO);
    }

    #[test]
    fn scaled_conversion_rounds_once() {
        // 1 USDC per million tokens at 1000 tokens per request = 0.001 USDC.
        assert_eq!(
            d("1").to_atomic_scaled(6, 1000, 1_000_000).unwrap(),
            U256::from(1000)
        );
        // 0.01 per hour at 5 minutes per request = 0.000833… → 833 atomic (6 decimals).
        assert_eq!(
            d("0.01").to_atomic_scaled(6, 5, 60).unwrap(),
            U256::from(833)
        );
        // 0.000006 × 5 / 60 = 0.0000005 → exactly half a unit → 1.
        assert_eq!(
            d("0.000006").to_atomic_scaled(6, 5, 60).unwrap(),
            U256::from(1)
        );
    }

    #[test]
    fn overflow_and_limits_are_errors() {
        let max = U256::MAX.to_string();
        assert_eq!(d(&max).to_atomic(0).unwrap(), U256::MAX);
        assert!(matches!(
            d(&max).to_atomic(1),
            Err(MoneyError::Overflow { .. })
        ));
        assert!(matches!(
            format!("{max}0").parse::<Decimal>(),
            Err(MoneyError::Overflow { .. })
        ));
        assert!(matches!(
            d("1").to_atomic(78),
            Err(MoneyError::Decimals { decimals: 78 })
        ));
    }

    #[test]
    fn formats_units() {
        assert_eq!(format_units(U256::from(1000), 6), "0.001");
        assert_eq!(format_units(U256::from(1_500_000), 6), "1.5");
        assert_eq!(format_units(U256::ZERO, 6), "0");
        assert_eq!(format_units(U256::from(10u64.pow(15)), 18), "0.001");
    }
}
