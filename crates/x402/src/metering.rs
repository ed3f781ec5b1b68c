//! Metered inference billing for the `upto` scheme: per-token rates, the ceiling a buyer signs,
//! and the exact charge for the tokens a call used.
//!
//! A metered offer prices prompt (input) and completion (output) tokens per million, in token
//! units. The buyer signs a ceiling (`maxTokens` tokens at the dearer rate); after the answer the
//! seller charges `prompt × input + completion × output`, computed exactly and rounded **up**
//! once to the token's atomic unit, never above the ceiling (docs/pricing.md).

use alloy::primitives::U256;
use serde::{Deserialize, Serialize};

use crate::money::{Decimal, MoneyError};
use crate::pricing::APPROX_TOKENS_PER_REQUEST;

/// Metered prices are per this many tokens.
pub const TOKENS_PER_PRICE: u64 = 1_000_000;

/// The tokens a metered call may use when the offer does not say (the ceiling's basis).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Per-token prices, in token units per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenRates {
    /// Prompt (input) tokens.
    pub input: Decimal,
    /// Completion (output) tokens.
    pub output: Decimal,
}

/// The tokens a call used, as the upstream reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
}

/// How a metered charge was measured (said in the receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Measured {
    /// From the usage the upstream reported.
    Usage,
    /// No usage reported: the documented estimate ([`APPROX_TOKENS_PER_REQUEST`] completion
    /// tokens), at most the ceiling.
    Estimate,
    /// No usage reported and the offer charges the ceiling then; or the authorization neared
    /// expiry before the answer ended.
    Ceiling,
}

/// What a metered call whose answer reports no usage is charged (`payment.upto.noUsage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoUsage {
    /// The documented estimate ([`TokenRates::estimate`]).
    #[default]
    Estimate,
    /// The whole ceiling.
    Ceiling,
}

impl NoUsage {
    /// True for the default, [`NoUsage::Estimate`].
    pub fn is_default(&self) -> bool {
        *self == Self::Estimate
    }
}

impl Measured {
    /// The wire name: `usage`, `estimate` or `ceiling`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Estimate => "estimate",
            Self::Ceiling => "ceiling",
        }
    }
}

impl TokenRates {
    /// The same rate for prompt and completion tokens.
    pub fn flat(per_mtok: Decimal) -> Self {
        Self {
            input: per_mtok,
            output: per_mtok,
        }
    }

    /// The exact charge for `usage`, in atomic units of a token with `decimals` decimals,
    /// rounded up once.
    pub fn charge(&self, usage: Usage, decimals: u8) -> Result<U256, MoneyError> {
        Decimal::sum_products_atomic_up(
            &[
                (usage.prompt_tokens, self.input),
                (usage.completion_tokens, self.output),
            ],
            decimals,
            TOKENS_PER_PRICE,
        )
    }

    /// The ceiling of a call that may use `max_tokens` tokens: all of them at the dearer rate.
    pub fn ceiling(&self, max_tokens: u64, decimals: u8) -> Result<U256, MoneyError> {
        let dearer = if self.input.mantissa() * pow10(self.output.scale())
            > self.output.mantissa() * pow10(self.input.scale())
        {
            self.input
        } else {
            self.output
        };
        Decimal::sum_products_atomic_up(&[(max_tokens, dearer)], decimals, TOKENS_PER_PRICE)
    }

    /// What a call that reported no usage is charged under the documented estimate: the old
    /// flat rule ([`APPROX_TOKENS_PER_REQUEST`] completion tokens), at most `ceiling`.
    pub fn estimate(&self, ceiling: U256, decimals: u8) -> Result<U256, MoneyError> {
        let usage = Usage {
            prompt_tokens: 0,
            completion_tokens: APPROX_TOKENS_PER_REQUEST,
        };
        Ok(self.charge(usage, decimals)?.min(ceiling))
    }

    /// The most completion tokens a call with at most `prompt_tokens` prompt tokens can use
    /// without costing more than `ceiling`; `0` when even the prompt does not fit.
    pub fn completion_allowance(&self, ceiling: U256, prompt_tokens: u64, decimals: u8) -> u64 {
        let fits = |completion_tokens: u64| {
            let usage = Usage {
                prompt_tokens,
                completion_tokens,
            };
            self.charge(usage, decimals)
                .is_ok_and(|charge| charge <= ceiling)
        };
        if !fits(0) {
            return 0;
        }
        // The charge grows with the completion: the largest that fits, by bisection.
        let (mut fitting, mut over) = (0u64, u64::from(u32::MAX));
        if fits(over) {
            return over;
        }
        while over - fitting > 1 {
            let mid = fitting + (over - fitting) / 2;
            if fits(mid) {
                fitting = mid;
            } else {
                over = mid;
            }
        }
        fitting
    }
}

fn pow10(exp: u8) -> U256 {
    U256::from(10u8).pow(U256::from(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(input: &str, output: &str) -> TokenRates {
        TokenRates {
            input: input.parse().unwrap(),
            output: output.parse().unwrap(),
        }
    }

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
        }
    }

    #[test]
    fn charges_are_exact_and_round_up_once() {
        // 0.15 / 0.60 USDC per MTok: 12 prompt + 34 completion tokens = 1.8 + 20.4 = 22.2
        // atomic → 23.
        let r = rates("0.15", "0.6");
        assert_eq!(r.charge(usage(12, 34), 6).unwrap(), U256::from(23));
        // Exactly whole: no rounding.
        assert_eq!(
            rates("1", "2").charge(usage(1000, 1000), 6).unwrap(),
            U256::from(3000)
        );
        // One token of a dust price still costs one atomic unit; none costs nothing.
        assert_eq!(
            rates("0.0000001", "0.0000001")
                .charge(usage(1, 0), 6)
                .unwrap(),
            U256::from(1)
        );
        assert_eq!(r.charge(usage(0, 0), 6).unwrap(), U256::ZERO);
        // 18 decimals.
        assert_eq!(
            rates("2.5", "2.5").charge(usage(3, 0), 18).unwrap(),
            U256::from(7_500_000_000_000u64)
        );
    }

    #[test]
    fn ceiling_estimate_and_allowance() {
        let r = rates("0.15", "0.6");
        // 4096 tokens at the dearer 0.6/MTok = 2457.6 → 2458.
        let ceiling = r.ceiling(4096, 6).unwrap();
        assert_eq!(ceiling, U256::from(2458));
        assert_eq!(r.ceiling(4096, 6), rates("0.6", "0.15").ceiling(4096, 6));
        // The estimate: 1000 completion tokens = 600, under the ceiling.
        assert_eq!(r.estimate(ceiling, 6).unwrap(), U256::from(600));
        assert_eq!(r.estimate(U256::from(100), 6).unwrap(), U256::from(100));
        // 1000 prompt tokens cost 150; the remaining 2308 atomic buy 3846 completion tokens
        // (3846 × 0.6 = 2307.6 → 2308 total 2458), 3847 would cost 2459.
        let allowance = r.completion_allowance(ceiling, 1000, 6);
        assert_eq!(allowance, 3846);
        assert!(r.charge(usage(1000, allowance), 6).unwrap() <= ceiling);
        assert!(r.charge(usage(1000, allowance + 1), 6).unwrap() > ceiling);
        assert_eq!(r.completion_allowance(U256::from(10), 1_000_000, 6), 0);
    }
}
