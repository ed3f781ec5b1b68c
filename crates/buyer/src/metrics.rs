//! The buyer proxy's Prometheus metrics, with the original buyer's names and labels
//! (obol-stack.md §5.6): `{upstream, remote_model, chain}` on every family.

use crate::proxy::Purchase;

/// Counter families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every call for a bought model.
    Requests,
    /// Payments the proxy tried to make: after a 402, or up front with the seller's known terms.
    PaymentAttempts,
    /// Paid calls the seller answered below 400.
    PaymentSuccess,
    /// Payments that could not be made or that the seller refused.
    PaymentFailure,
    /// Paid calls whose authorization could not be marked spent.
    ConfirmSpendFailure,
    /// Paid calls answered below 400 without a successful receipt.
    PaymentUnsettledConfirmations,
}

impl Counter {
    /// The metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Requests => "obol_x402_buyer_requests_total",
            Self::PaymentAttempts => "obol_x402_buyer_payment_attempts_total",
            Self::PaymentSuccess => "obol_x402_buyer_payment_success_total",
            Self::PaymentFailure => "obol_x402_buyer_payment_failure_total",
            Self::ConfirmSpendFailure => "obol_x402_buyer_confirm_spend_failure_total",
            Self::PaymentUnsettledConfirmations => {
                "obol_x402_buyer_payment_unsettled_confirmations_total"
            }
        }
    }
}

fn labels(purchase: &Purchase) -> [(&'static str, String); 3] {
    [
        ("upstream", purchase.pool.clone()),
        ("remote_model", purchase.model.clone()),
        ("chain", purchase.chain.clone()),
    ]
}

/// Counts one event for `purchase`.
pub fn count(purchase: &Purchase, counter: Counter) {
    metrics::counter!(counter.name(), &labels(purchase)).increment(1);
}

/// Sets the pool gauges of `purchase` (and marks its mapping active).
pub fn pool_gauges(purchase: &Purchase, remaining: u64, spent: u64) {
    let labels = labels(purchase);
    #[allow(clippy::cast_precision_loss, reason = "pool sizes are far below 2^52")]
    {
        metrics::gauge!("obol_x402_buyer_auth_remaining", &labels).set(remaining as f64);
        metrics::gauge!("obol_x402_buyer_auth_spent", &labels).set(spent as f64);
    }
    metrics::gauge!("obol_x402_buyer_active_model_mappings", &labels).set(1.0);
}

/// Marks `purchase` no longer served: nothing remaining, mapping inactive.
pub fn retire(purchase: &Purchase) {
    let labels = labels(purchase);
    metrics::gauge!("obol_x402_buyer_auth_remaining", &labels).set(0.0);
    metrics::gauge!("obol_x402_buyer_active_model_mappings", &labels).set(0.0);
}
