//! The `PurchaseRequest` reconciler (obol-stack.md §3.3): Probed → AuthsSigned → Configured →
//! Ready, then the buyer proxy serves `paid/<model>` from the request's pool.
//!
//! The pool of a request is named `<namespace>/<name>`. Its authorizations are copied from the
//! spec into the durable pool (a nonce already there is skipped, so a refill only adds the new
//! ones); spent and burned rows stay spent and burned. Deleting a request stops the proxy from
//! using its pool first, then drops the unspent rows.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use obol_control::controller::Reconcile;
use obol_control::purchase::{
    PurchasePayment, PurchaseRequest, PurchaseRequestSpec, PurchaseRequestStatus,
};
use obol_control::reconcile::{Action, parse_rfc3339};
use obol_control::resource::{ConditionStatus, Spec, condition, is_true, set_condition};
use obol_control::{Store, StoreError, StoreExt};
use obol_x402::network;
use obol_x402::primitives::{Address, U256};
use obol_x402::wire::v2;
use serde_json::json;

use crate::auths;
use crate::pool::{AuthPool, PoolCounts, PoolError};
use crate::probe::{ProbeError, Prober};
use crate::proxy::{BuyerProxy, Purchase};

/// The finalizer that routes deletion through the reconciler.
pub const FINALIZER: &str = "obol.org/purchase-finalizer";
/// Budget of the seller probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Requeue after a failed step (seller down, conflict).
pub const RETRY_REQUEUE: Duration = Duration::from_secs(30);
/// Requeue of a ready request (its counts are refreshed).
pub const READY_REQUEUE: Duration = Duration::from_secs(30);
/// How often a deleted purchase with calls under way is looked at again.
pub const DRAIN_REQUEUE: Duration = Duration::from_millis(250);
/// The longest a deletion waits for calls under way (a paid call's longest: the upstream's
/// answer, then its settlement retries); after it, what is still held is dropped as it ends.
pub const DRAIN_PATIENCE: Duration = Duration::from_secs(300);
/// The condition types, in pipeline order.
pub const CONDITIONS: [&str; 4] = ["Probed", "AuthsSigned", "Configured", "Ready"];

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pool failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A blocking pool task died.
    #[error("pool task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The pool a request's authorizations live in.
pub fn pool_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// `http://s/services/x/v1/chat/completions` → `http://s/services/x`.
pub fn service_base(endpoint: &str) -> &str {
    let trimmed = endpoint.trim_end_matches('/');
    ["/v1/chat/completions", "/chat/completions", "/v1/responses"]
        .iter()
        .find_map(|suffix| trimmed.strip_suffix(suffix))
        .unwrap_or(trimmed)
}

/// Reconciles purchases into the pool and the proxy's purchase table.
pub struct PurchaseReconciler {
    pub(crate) store: Arc<dyn Store>,
    pool: Arc<AuthPool>,
    proxy: Arc<BuyerProxy>,
    pub(crate) prober: Prober,
    balances: Option<Arc<dyn Balances>>,
    pub(crate) refill: Option<crate::refill::Refill>,
}

/// Reads a wallet's token balance (for `status.walletBalance`).
#[async_trait::async_trait]
pub trait Balances: Send + Sync {
    /// `owner`'s balance of `asset` on EVM chain `chain_id`; `None` when it cannot be read.
    async fn balance(&self, chain_id: u64, asset: Address, owner: Address) -> Option<U256>;
}

impl std::fmt::Debug for PurchaseReconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurchaseReconciler").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Reconcile for PurchaseReconciler {
    type Error = ReconcileError;

    fn kind(&self) -> &'static str {
        <PurchaseRequestSpec as Spec>::KIND
    }

    async fn start(&self) -> Result<(), ReconcileError> {
        self.rebuild().await.map(drop)
    }

    async fn reconcile(&self, namespace: &str, name: &str) -> Result<Action, ReconcileError> {
        let Some(purchase) = self
            .store
            .get::<PurchaseRequestSpec>(namespace, name)
            .await?
        else {
            self.rebuild().await?;
            return Ok(Action::Done);
        };
        if purchase.metadata.is_deleting() {
            return self.finalize(&purchase).await;
        }
        self.store.add_finalizer(&purchase, FINALIZER).await?;
        // A new spec (refill, edit) runs every step again; until it succeeds the pool loaded
        // for the previous one keeps being served (its `Configured` stays as it was).
        let fresh = purchase.status.observed_generation != purchase.metadata.generation;
        let mut status = purchase.status.clone();
        status.observed_generation = purchase.metadata.generation;
        let loaded = !fresh
            && ["Probed", "AuthsSigned", "Configured"]
                .iter()
                .all(|t| is_true(&status.conditions, t));
        let failed = if loaded {
            None
        } else {
            self.load(&purchase, &mut status, fresh).await?
        };
        let action = match failed {
            Some(action) => action,
            None => self.ready(&purchase, &mut status).await?,
        };
        self.store
            .patch_status::<PurchaseRequestSpec>(namespace, name, &status)
            .await?;
        // A loaded, served purchase changed nothing the proxy's table depends on: the periodic
        // requeue (counts) need not list every purchase again.
        if !loaded || !self.proxy.serves(&pool_name(namespace, name)) {
            self.rebuild().await?;
        }
        Ok(action)
    }
}

impl PurchaseReconciler {
    /// A reconciler over `store`, filling `pool` and configuring `proxy`; probes name
    /// themselves `user_agent` (default `obol-buyer/<v>`).
    pub fn new(
        store: Arc<dyn Store>,
        pool: Arc<AuthPool>,
        proxy: Arc<BuyerProxy>,
        user_agent: Option<&str>,
    ) -> Result<Self, ProbeError> {
        Ok(Self {
            store,
            pool,
            proxy,
            prober: Prober::new(user_agent, PROBE_TIMEOUT)?,
            balances: None,
            refill: None,
        })
    }

    /// Refills purchases with `autoRefill` through `refill` ([`crate::refill`]).
    #[must_use]
    pub fn with_refill(mut self, refill: crate::refill::Refill) -> Self {
        self.refill = Some(refill);
        self
    }

    /// Reads the signer's balance into `status.walletBalance` through `balances`.
    #[must_use]
    pub fn with_balances(mut self, balances: Arc<dyn Balances>) -> Self {
        self.balances = Some(balances);
        self
    }

    /// `status.totalSpent` and `status.walletBalance`, in the purchase's token.
    async fn money(
        &self,
        purchase: &PurchaseRequest,
        counts: &crate::pool::PoolCounts,
        status: &mut PurchaseRequestStatus,
    ) {
        let payment = &purchase.spec.payment;
        status.total_spent = payment.spent_total(counts.charged, counts.spent_unstated);
        let (Some(balances), Ok(chain_id), Ok(asset), Some(Ok(owner))) = (
            &self.balances,
            network::evm_chain_id(&payment.network),
            payment.asset.parse::<Address>(),
            status.signer_address.as_deref().map(str::parse::<Address>),
        ) else {
            return;
        };
        if let Some(balance) = balances.balance(chain_id, asset, owner).await {
            status.wallet_balance = Some(payment.amount_text(balance));
        }
    }

    /// Rebuilds the proxy's purchases from the requests whose `Configured` is True; for a
    /// model bought twice the older request wins. Returns how many it serves.
    pub async fn rebuild(&self) -> Result<usize, ReconcileError> {
        let mut configured: Vec<PurchaseRequest> = self
            .store
            .list::<PurchaseRequestSpec>(None)
            .await?
            .into_iter()
            .filter(|p| !p.metadata.is_deleting() && is_true(&p.status.conditions, "Configured"))
            .collect();
        configured.sort_by(|a, b| a.metadata.age_key().cmp(&b.metadata.age_key()));
        let mut purchases: Vec<Purchase> = Vec::with_capacity(configured.len());
        for p in configured {
            if purchases
                .iter()
                .any(|q| q.model.eq_ignore_ascii_case(served(&p).0))
            {
                continue;
            }
            purchases.push(Purchase {
                model: served(&p).0.to_owned(),
                pool: pool_name(&p.metadata.namespace, &p.metadata.name),
                base: service_base(served(&p).1).to_owned(),
                chain: network::legacy_name(&p.spec.payment.network),
            });
        }
        let count = purchases.len();
        self.proxy.set_purchases(purchases);
        Ok(count)
    }

    async fn finalize(&self, purchase: &PurchaseRequest) -> Result<Action, ReconcileError> {
        let (namespace, name) = (&purchase.metadata.namespace, &purchase.metadata.name);
        // Stop spending first, let the calls under way finish, then drop what is left.
        self.rebuild().await?;
        let pool_name = pool_name(namespace, name);
        let in_flight = self.counts(&pool_name).await?.held;
        let deleted_at = purchase
            .metadata
            .deletion_timestamp
            .as_deref()
            .and_then(parse_rfc3339);
        let patient = deleted_at.is_none_or(|at| {
            obol_config::time::unix_now() < at.saturating_add(DRAIN_PATIENCE.as_secs())
        });
        if in_flight > 0 && patient {
            tracing::info!(%namespace, %name, in_flight, "purchase deleted; waiting for its calls under way");
            return Ok(Action::Requeue(DRAIN_REQUEUE));
        }
        let pool = self.pool.clone();
        let removed = tokio::task::spawn_blocking(move || pool.remove(&pool_name)).await??;
        tracing::info!(%namespace, %name, removed, "purchase deleted; unspent authorizations dropped");
        self.store.remove_finalizer(purchase, FINALIZER).await?;
        Ok(Action::Done)
    }

    /// Probed → AuthsSigned → Configured: probes the seller (always for a `fresh` generation),
    /// checks the authorizations and adds them to the pool. `Some(action)` when a step failed.
    async fn load(
        &self,
        purchase: &PurchaseRequest,
        status: &mut PurchaseRequestStatus,
        fresh: bool,
    ) -> Result<Option<Action>, ReconcileError> {
        let conditions = &mut status.conditions;
        let not_ready = |conditions: &mut Vec<_>, reason: &str, message: &str| {
            set_condition(conditions, "Ready", ConditionStatus::False, reason, message);
        };

        // 1. Probed.
        if fresh || !is_true(conditions, "Probed") {
            match self.probe(&purchase.spec).await {
                Ok(price) => {
                    set_condition(
                        conditions,
                        "Probed",
                        ConditionStatus::True,
                        "Validated",
                        &format!("402: {price} on {}", purchase.spec.payment.network),
                    );
                    status.probed_at = Some(obol_config::time::now_rfc3339());
                    status.probed_price = Some(price);
                }
                Err((reason, message)) => {
                    set_condition(
                        conditions,
                        "Probed",
                        ConditionStatus::False,
                        reason,
                        &message,
                    );
                    not_ready(conditions, "NotProbed", &message);
                    return Ok(Some(Action::Requeue(RETRY_REQUEUE)));
                }
            }
        }

        // 2. AuthsSigned.
        let spec = &purchase.spec;
        if spec.pre_signed_auths.is_empty() {
            let message = "spec.preSignedAuths is empty: sign some with `obol buy refill`";
            set_condition(
                conditions,
                "AuthsSigned",
                ConditionStatus::False,
                "NoAuths",
                message,
            );
            not_ready(conditions, "NoAuths", message);
            return Ok(Some(Action::Done));
        }
        let signed = match auths::from_resource(&spec.pre_signed_auths).and_then(|signed| {
            check_terms(&signed, &spec.payment)?;
            Ok(signed)
        }) {
            Ok(signed) => signed,
            Err(error) => {
                let message = error.to_string();
                set_condition(
                    conditions,
                    "AuthsSigned",
                    ConditionStatus::False,
                    "InvalidAuths",
                    &message,
                );
                not_ready(conditions, "InvalidAuths", &message);
                return Ok(Some(Action::Done));
            }
        };
        status.signer_address = Some(spec.pre_signed_auths[0].from.clone());
        set_condition(
            conditions,
            "AuthsSigned",
            ConditionStatus::True,
            "Loaded",
            &format!("Loaded {} pre-signed auths from spec", signed.len()),
        );

        // 3. Configured.
        let (namespace, name) = (&purchase.metadata.namespace, &purchase.metadata.name);
        if let Some(owner) = self.alias_owner(purchase).await? {
            let message = format!(
                "paid/{} is already bought by PurchaseRequest {owner}; delete it or use another model name",
                spec.model
            );
            set_condition(
                conditions,
                "Configured",
                ConditionStatus::False,
                "ModelConflict",
                &message,
            );
            not_ready(conditions, "ModelConflict", &message);
            return Ok(Some(Action::Requeue(RETRY_REQUEUE)));
        }
        let pool = self.pool.clone();
        let pool_name = pool_name(namespace, name);
        let total = signed.len();
        let added = {
            let pool_name = pool_name.clone();
            tokio::task::spawn_blocking(move || pool.add(&pool_name, &signed)).await??
        };
        tracing::info!(%namespace, %name, total, added, "purchase loaded into its pool");
        status.public_model = Some(format!("paid/{}", spec.model));
        status.served_endpoint = Some(spec.endpoint.clone());
        set_condition(
            conditions,
            "Configured",
            ConditionStatus::True,
            "Written",
            &format!("Wrote {total} auths to pool {pool_name} ({added} new)"),
        );
        // The proxy reads `Configured` from the store. The generation is marked observed only
        // with the counts of the new pool (the caller's patch): a reader waiting for it must
        // not see the previous counts under the new generation.
        let mut configured = status.clone();
        configured.observed_generation = purchase.status.observed_generation;
        self.store
            .patch_status::<PurchaseRequestSpec>(namespace, name, &configured)
            .await?;
        self.rebuild().await?;
        Ok(None)
    }

    /// Ready: the counts, and whether the proxy serves the pool.
    async fn ready(
        &self,
        purchase: &PurchaseRequest,
        status: &mut PurchaseRequestStatus,
    ) -> Result<Action, ReconcileError> {
        let pool_name = pool_name(&purchase.metadata.namespace, &purchase.metadata.name);
        let counts = self.counts(&pool_name).await?;
        status.remaining = clamp(counts.available);
        status.spent = clamp(counts.spent);
        let total_signed = counts.available + counts.held + counts.spent + counts.burned;
        status.total_signed = clamp(total_signed);
        self.money(purchase, &counts, status).await;
        self.auto_refill(purchase, counts.available, total_signed, status)
            .await;
        let conditions = &mut status.conditions;
        if self.proxy.serves(&pool_name) {
            set_condition(
                conditions,
                "Ready",
                ConditionStatus::True,
                "Reconciled",
                // The counts live in `remaining`/`spent`; a message carrying them would go
                // stale between requeues and churn the status on every call.
                &format!(
                    "served by the buyer proxy as {}",
                    status.public_model.as_deref().unwrap_or("its paid/ model")
                ),
            );
        } else {
            set_condition(
                conditions,
                "Ready",
                ConditionStatus::False,
                "NotServing",
                "the buyer proxy does not serve this pool",
            );
        }
        let refilling = purchase
            .spec
            .auto_refill
            .as_ref()
            .is_some_and(|p| p.enabled);
        Ok(Action::Requeue(match &self.refill {
            Some(refill) if refilling => refill.interval.min(READY_REQUEUE),
            _ => READY_REQUEUE,
        }))
    }

    /// Probes the seller; the price it asks, or the failed condition's reason and message.
    async fn probe(&self, spec: &PurchaseRequestSpec) -> Result<String, (&'static str, String)> {
        let offered = self.prober.chat(&spec.endpoint).await.map_err(|e| {
            let reason = match e {
                ProbeError::NotPaymentGated(_) => "NotPaymentGated",
                ProbeError::NoAccepts | ProbeError::Malformed(_) => "InvalidPricing",
                _ => "ProbeError",
            };
            (reason, e.to_string())
        })?;
        let wanted = &spec.payment;
        let asked = offered
            .accepts
            .iter()
            .find(|a| same_terms(a, wanted))
            .or_else(|| offered.accepts.first())
            .ok_or(("InvalidPricing", "402 body missing accepts".to_owned()))?;
        let price = asked.amount.to_string();
        if price != wanted.price || !same_terms(asked, wanted) {
            return Err((
                "PricingMismatch",
                format!(
                    "spec.price={} {} to {} on {} but endpoint wants {price} {} to {} on {}",
                    wanted.price,
                    wanted.asset,
                    wanted.pay_to,
                    wanted.network,
                    asked.asset,
                    asked.pay_to,
                    asked.network
                ),
            ));
        }
        Ok(price)
    }

    /// The older request already serving `paid/<model>`, if another one does.
    async fn alias_owner(&self, purchase: &PurchaseRequest) -> Result<Option<String>, StoreError> {
        let others = self.store.list::<PurchaseRequestSpec>(None).await?;
        Ok(others
            .iter()
            .filter(|o| !o.metadata.is_deleting())
            .filter(|o| o.spec.model.eq_ignore_ascii_case(&purchase.spec.model))
            .filter(|o| o.metadata.age_key() < purchase.metadata.age_key())
            .find(|o| {
                condition(&o.status.conditions, "Configured")
                    .is_none_or(|c| c.reason != "ModelConflict")
            })
            .map(|o| pool_name(&o.metadata.namespace, &o.metadata.name)))
    }

    async fn counts(&self, pool_name: &str) -> Result<PoolCounts, ReconcileError> {
        let pool = self.pool.clone();
        let pool_name = pool_name.to_owned();
        Ok(tokio::task::spawn_blocking(move || pool.counts(&pool_name)).await??)
    }

    /// `POST /admin/reload` (re-read the purchases) and `POST /admin/remove` (`?name=` or
    /// `{"name": "<namespace>/<name>"}`: stop serving one until its next reconcile). Unauthenticated:
    /// the host mounts it behind its own authentication.
    pub fn admin_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/admin/reload", post(reload))
            .route("/admin/remove", post(remove))
            .with_state(self.clone())
    }
}

fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn reload(State(reconciler): State<Arc<PurchaseReconciler>>) -> Response {
    match reconciler.rebuild().await {
        Ok(purchases) => Json(json!({"purchases": purchases})).into_response(),
        Err(e) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn remove(
    State(reconciler): State<Arc<PurchaseReconciler>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    // `?name=` as the original takes it, or a JSON body `{"name": …}`.
    let Some(name) = query.get("name").cloned().or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
    }) else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "name the purchase: ?name=<namespace>/<name> or {\"name\": \"<namespace>/<name>\"}",
        );
    };
    if reconciler.proxy.remove(&name) {
        Json(json!({"status": "removed", "name": name})).into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, "no such purchase is served")
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The model and seller URL the proxy serves `p` at: what was loaded last (a newer generation
/// takes over once it is loaded), else the spec's.
fn served(p: &PurchaseRequest) -> (&str, &str) {
    let model = p
        .status
        .public_model
        .as_deref()
        .and_then(|m| m.strip_prefix("paid/"))
        .unwrap_or(&p.spec.model);
    let endpoint = p
        .status
        .served_endpoint
        .as_deref()
        .unwrap_or(&p.spec.endpoint);
    (model, endpoint)
}

/// The seller's option pays the same scheme, network, asset and recipient as the request.
pub(crate) fn same_terms(asked: &v2::PaymentRequirements, wanted: &PurchasePayment) -> bool {
    asked.scheme == wanted.scheme()
        && network::same_network(&asked.network, &wanted.network)
        && asked.asset.eq_ignore_ascii_case(&wanted.asset)
        && asked.pay_to.eq_ignore_ascii_case(&wanted.pay_to)
}

/// Every authorization pays what the request says it buys.
fn check_terms(
    signed: &[crate::presign::PreSigned],
    wanted: &PurchasePayment,
) -> Result<(), auths::AuthError> {
    for (index, auth) in signed.iter().enumerate() {
        let accepted = &auth.payload.accepted;
        if !same_terms(accepted, wanted) || accepted.amount.to_string() != wanted.price {
            return Err(auths::AuthError {
                index,
                reason: format!(
                    "pays {} {} to {} on {}, but spec.payment is {} {} to {} on {}",
                    accepted.amount,
                    accepted.asset,
                    accepted.pay_to,
                    accepted.network,
                    wanted.price,
                    wanted.asset,
                    wanted.pay_to,
                    wanted.network
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_base_strips_api_suffixes() {
        assert_eq!(
            service_base("http://s/services/x/v1/chat/completions"),
            "http://s/services/x"
        );
        assert_eq!(
            service_base("http://s/services/x/chat/completions/"),
            "http://s/services/x"
        );
        assert_eq!(service_base("http://s/services/x/"), "http://s/services/x");
    }
}
