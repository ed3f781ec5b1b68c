//! autoRefill (`spec.autoRefill {enabled, threshold, count, maxTotal, maxSpendPerDay}`): when a
//! served purchase has fewer than `threshold` authorizations left, the daemon signs `count`
//! more with the refill key its operator gave it ([`Refill`]; off without one), for the price
//! the seller asks now if it is still the purchase's, and adds them to the purchase's spec.
//! Bounded by `maxTotal` (authorizations ever signed) and `maxSpendPerDay` (atomic units a UTC
//! day, counted in the spend ledger under `refill:<namespace>/<name>` when signed). Every
//! refill, and every refusal, is logged and shown as the `AutoRefill` condition.

use std::sync::Arc;
use std::time::Duration;

use obol_control::StoreExt as _;
use obol_control::purchase::{AutoRefill, PurchaseRequest, PurchaseRequestStatus};
use obol_control::resource::{ConditionStatus, set_condition};
use obol_control::validate::MAX_PRE_SIGNED_AUTHS;
use obol_x402::LocalSigner;
use obol_x402::network;
use obol_x402::primitives::{Address, U256};

use crate::auths;
use crate::presign::{PresignOptions, presign};
use crate::reconcile::{PurchaseReconciler, same_terms};
use crate::spend::{SpendError, SpendLedger, day_of};

/// The daemon's means to refill: the key (never the agent's to see), where the day's spend is
/// counted, how often a purchase is looked at, and how long new authorizations live.
pub struct Refill {
    /// Signs the new authorizations; must be the purchase's signer.
    pub signer: LocalSigner,
    /// The spend ledger.
    pub ledger: Arc<SpendLedger>,
    /// How often a purchase with autoRefill is checked.
    pub interval: Duration,
    /// Lifetime of a new authorization.
    pub ttl_secs: u64,
}

impl std::fmt::Debug for Refill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refill")
            .field("signer", &self.signer.address())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Why no refill was made: the condition's reason and message.
type Refused = (&'static str, String);

impl PurchaseReconciler {
    /// Refills `purchase` when its policy asks for it (`available` left, `total_signed` ever);
    /// the outcome goes to the `AutoRefill` condition of `status`.
    pub(crate) async fn auto_refill(
        &self,
        purchase: &PurchaseRequest,
        available: u64,
        total_signed: u64,
        status: &mut PurchaseRequestStatus,
    ) {
        let Some(policy) = purchase.spec.auto_refill.as_ref().filter(|p| p.enabled) else {
            return;
        };
        if available >= u64::from(policy.threshold) {
            return;
        }
        let at = format!("{}/{}", purchase.metadata.namespace, purchase.metadata.name);
        let (state, reason, message) = match self.refill_once(purchase, policy, total_signed).await
        {
            Ok((count, total)) => {
                tracing::info!(purchase = %at, count, total = %total, "autoRefill signed more authorizations");
                (
                    ConditionStatus::True,
                    "Refilled",
                    format!(
                        "signed {count} more at {}",
                        obol_config::time::now_rfc3339()
                    ),
                )
            }
            Err((reason, message)) => {
                tracing::warn!(purchase = %at, reason, "autoRefill refused: {message}");
                (ConditionStatus::False, reason, message)
            }
        };
        set_condition(
            &mut status.conditions,
            "AutoRefill",
            state,
            reason,
            &message,
        );
    }

    /// Signs and adds one batch; how many and what they may cost.
    async fn refill_once(
        &self,
        purchase: &PurchaseRequest,
        policy: &AutoRefill,
        total_signed: u64,
    ) -> Result<(u32, U256), Refused> {
        let refill = self.refill.as_ref().ok_or((
            "NoRefillSigner",
            "the daemon has no refill key: start it with OBOL_REFILL_KEYSTORE and OBOL_REFILL_PASSWORD_FILE".to_owned(),
        ))?;
        let spec = &purchase.spec;
        let signer = refill.signer.address();
        let theirs = spec
            .pre_signed_auths
            .first()
            .and_then(|a| a.from.parse::<Address>().ok());
        if theirs != Some(signer) {
            return Err((
                "SignerMismatch",
                format!("the refill key is {signer}, not the purchase's signer"),
            ));
        }
        let mut count = policy.count;
        if let Some(max) = policy.max_total {
            let room = u64::from(max).saturating_sub(total_signed);
            if room == 0 {
                return Err((
                    "MaxTotalReached",
                    format!("{total_signed} signed of maxTotal {max}"),
                ));
            }
            count = count.min(u32::try_from(room).unwrap_or(u32::MAX));
        }
        if spec.pre_signed_auths.len() + count as usize > MAX_PRE_SIGNED_AUTHS {
            return Err((
                "Full",
                format!("the purchase holds at most {MAX_PRE_SIGNED_AUTHS} authorizations"),
            ));
        }
        let offered = self
            .prober
            .chat(&spec.endpoint)
            .await
            .map_err(|e| ("ProbeError", e.to_string()))?;
        let requirement = offered
            .accepts
            .iter()
            .find(|a| same_terms(a, &spec.payment) && a.amount.to_string() == spec.payment.price)
            .ok_or((
                "PriceChanged",
                "the seller no longer asks this purchase's price; buy again".to_owned(),
            ))?;
        let total = requirement.amount().saturating_mul(U256::from(count));
        let cap = policy
            .max_spend_per_day
            .as_deref()
            .and_then(|c| c.parse::<U256>().ok())
            .ok_or(("NoDailyCap", "autoRefill needs maxSpendPerDay".to_owned()))?;
        let chain_id = network::evm_chain_id(&spec.payment.network)
            .map_err(|e| ("InvalidTerms", e.to_string()))?;
        let asset = requirement
            .asset_address()
            .map_err(|e| ("InvalidTerms", e.to_string()))?;
        let scope = format!(
            "refill:{}/{}",
            purchase.metadata.namespace, purchase.metadata.name
        );
        let today = day_of(obol_config::time::unix_now());
        refill
            .ledger
            .spend(&scope, today, chain_id, asset, total, cap)
            .map_err(|e| match e {
                SpendError::OverCap { spent, cap, .. } => (
                    "DailyCapReached",
                    format!("{spent} of maxSpendPerDay {cap} refilled today (UTC); {total} more would pass it"),
                ),
                other => ("SpendLedger", other.to_string()),
            })?;
        let options = PresignOptions {
            count: count as usize,
            ttl_secs: refill.ttl_secs,
            now: obol_config::time::unix_now(),
        };
        let signed = presign(
            &refill.signer,
            requirement,
            Some(&offered.resource),
            options,
            &|_| {},
        )
        .map_err(|e| ("SignFailed", e.to_string()))?;
        let signed = auths::to_resource(&signed).map_err(|e| ("SignFailed", e.to_string()))?;
        let mut next = purchase.clone();
        next.spec.count = count;
        next.spec.pre_signed_auths.extend(signed);
        self.store
            .apply(&next)
            .await
            .map_err(|e| ("Conflict", format!("not added (signed, counted): {e}")))?;
        Ok((count, total))
    }
}
