//! The buyer side — the durable pool of pre-signed authorizations, the buyer proxy spending
//! it and the `PurchaseRequest` reconciler filling it — assembled once for the embedded daemon
//! ([`crate::run`]) and for `obol buyer --kubernetes` ([`run_buyer`]), which serves a
//! cluster's purchases (docs/design/kubernetes.md, slice 5).
//!
//! A pool is spent by the one proxy beside it, so a cluster runs one buyer replica (its pool on
//! a volume; `Recreate`): two would spend one authorization twice.

use std::sync::Arc;

use obol_buyer::{AuthPool, BuyerProxy, PurchaseReconciler};
use obol_config::{Paths, env};
use obol_control::Store;

use crate::{DaemonError, NetworkBalances, bind, refill, stopping};

/// The pool, the proxy and the reconciler of one buyer.
pub(crate) struct Buyer {
    pub(crate) pool: Arc<AuthPool>,
    pub(crate) proxy: Arc<BuyerProxy>,
    pub(crate) purchases: Arc<PurchaseReconciler>,
}

/// Opens the pool under `paths` and builds the proxy (answering only loopback `Host`s when
/// `loopback`) and the reconciler of `store`'s purchases (with autoRefill when configured).
pub(crate) fn assemble(
    paths: &Paths,
    store: Arc<dyn Store>,
    loopback: bool,
) -> Result<Buyer, DaemonError> {
    let start_error = |e: &dyn std::fmt::Display| DaemonError::Start(e.to_string());
    let user_agent = std::env::var(env::BUYER_USER_AGENT).ok();
    let pool = AuthPool::open(&paths.buyer_pool_file()).map_err(|e| start_error(&e))?;
    let proxy = BuyerProxy::new(
        pool.clone(),
        user_agent.as_deref(),
        obol_facilitator::http::metrics_handle(),
    )
    .map_err(|e| start_error(&e))?;
    // Refuse foreign Host headers (DNS rebinding) unless the proxy was meant to be reachable.
    proxy.loopback_only(loopback);
    let mut purchases =
        PurchaseReconciler::new(store, pool.clone(), proxy.clone(), user_agent.as_deref())
            .map_err(|e| start_error(&e))?
            .with_balances(Arc::new(NetworkBalances {
                file: paths.networks_file(),
            }));
    if let Some(refill) = refill(paths)? {
        purchases = purchases.with_refill(refill);
    }
    Ok(Buyer {
        pool,
        proxy,
        purchases: Arc::new(purchases),
    })
}

/// Runs the buyer of a shared store (a cluster's): the purchase reconciler and the buyer proxy
/// on `listen`, until `shutdown` resolves.
///
/// # Errors
///
/// [`DaemonError`] when the listener cannot bind or the pool cannot be opened (another buyer
/// holds it).
pub async fn run_buyer(
    paths: Paths,
    store: Arc<dyn Store>,
    listen: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    obol_config::fs::create_private_dir(&paths.data_dir)?;
    let (listener, bound) = bind(listen).await?;
    let Buyer {
        proxy, purchases, ..
    } = assemble(&paths, store.clone(), bound.ip().is_loopback())?;
    let (stop_tx, _) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(obol_control::controller::run(
        store,
        purchases,
        stopping(&stop_tx),
    ));
    let served = tokio::spawn(obol_gateway::server::serve(
        listener,
        proxy.router(),
        stopping(&stop_tx),
    ));
    eprintln!("buyer proxy listening on http://{bound} (model paid/<model>)");
    tracing::info!(%bound, "buyer running");
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(controller, served);
    Ok(())
}
