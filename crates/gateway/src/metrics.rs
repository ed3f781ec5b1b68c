//! The gateway's Prometheus metrics, with the original verifier's names and labels
//! (obol-stack.md §4.9): `{offer_namespace, offer_name, chain, asset_symbol}`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::route::Offer;

/// The per-offer counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every request routed to an offer.
    Requests,
    /// 402 answers to requests without a payment.
    PaymentRequired,
    /// Paid requests the upstream answered below 400.
    PaymentVerified,
    /// 402 (or 412) answers to requests with a payment.
    PaymentFailed,
    /// Paid requests that emitted a settlement receipt.
    ChargedRequests,
    /// Verified payments whose upstream answered 400 or more (not charged).
    UpstreamFailedAfterVerify,
    /// Settle-first payments whose upstream then failed: charged, refund owed.
    RefundOwed,
    /// Calls served from a signed-in wallet's free quota (ours).
    FreeCall,
}

impl Counter {
    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Requests => "obol_x402_verifier_requests_total",
            Self::PaymentRequired => "obol_x402_verifier_payment_required_total",
            Self::PaymentVerified => "obol_x402_verifier_payment_verified_total",
            Self::PaymentFailed => "obol_x402_verifier_payment_failed_total",
            Self::ChargedRequests => "obol_x402_verifier_charged_requests_total",
            Self::UpstreamFailedAfterVerify => {
                "obol_x402_verifier_upstream_failed_after_verify_total"
            }
            Self::RefundOwed => "obol_x402_verifier_refund_owed_total",
            Self::FreeCall => "obol_x402_verifier_free_calls_total",
        }
    }
}

/// The label set of one offer and payment option.
#[derive(Debug, Clone)]
pub struct Labels {
    namespace: String,
    name: String,
    chain: String,
    asset: String,
}

impl Labels {
    /// Labels for `offer`, paid (or to be paid) with option `index` (the first when unknown).
    pub fn new(offer: &Offer, index: Option<usize>) -> Self {
        let option = offer.options.get(index.unwrap_or(0));
        Self {
            namespace: offer.namespace.clone(),
            name: offer.name.clone(),
            chain: option.map_or_else(|| "unknown".to_owned(), |o| o.requirements.network.clone()),
            asset: option
                .map(|o| o.asset_symbol.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// The offer's `(namespace, name)`.
    pub fn offer(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    fn pairs(&self) -> [(&'static str, String); 4] {
        [
            ("offer_namespace", self.namespace.clone()),
            ("offer_name", self.name.clone()),
            ("chain", self.chain.clone()),
            ("asset_symbol", self.asset.clone()),
        ]
    }

    /// Increments `counter`.
    pub fn count(&self, counter: Counter) {
        metrics::counter!(counter.name(), &self.pairs()).increment(1);
    }

    /// Counts a payment failure and its reason.
    pub fn failure(&self, reason: &'static str) {
        self.count(Counter::PaymentFailed);
        let mut labels = self.pairs().to_vec();
        labels.push(("reason", reason.to_owned()));
        metrics::counter!("obol_x402_verifier_payment_failure_reasons_total", &labels).increment(1);
    }

    /// Counts what a settled metered (`upto`) call used and was charged, in atomic units of
    /// its token: `obol_x402_metered_{prompt,completion}_tokens_total`,
    /// `obol_x402_metered_charged_atomic_total` and `obol_x402_metered_calls_total{measured}`.
    pub fn metered(&self, charge: &crate::metering::Charge) {
        let pairs = self.pairs();
        if let Some(usage) = charge.usage {
            metrics::counter!("obol_x402_metered_prompt_tokens_total", &pairs)
                .increment(usage.prompt_tokens);
            metrics::counter!("obol_x402_metered_completion_tokens_total", &pairs)
                .increment(usage.completion_tokens);
        }
        metrics::counter!("obol_x402_metered_charged_atomic_total", &pairs)
            .increment(u64::try_from(charge.amount).unwrap_or(u64::MAX));
        let mut labels = pairs.to_vec();
        labels.push(("measured", charge.measured.as_str().to_owned()));
        metrics::counter!("obol_x402_metered_calls_total", &labels).increment(1);
    }

    /// Counts a charged request and stamps the last-success gauge.
    pub fn charged(&self) {
        self.count(Counter::ChargedRequests);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!(
            "obol_x402_verifier_last_payment_success_seconds",
            &self.pairs()
        )
        .set(now);
    }
}
