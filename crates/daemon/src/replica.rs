//! `obol gateway --kubernetes`: one replica of the public gateway (docs/design/kubernetes.md,
//! slice 4b). It serves what the embedded stack's gateway serves — the paygate, the storefront,
//! the discovery documents — for the offers of a shared store (the cluster's, reconciled by
//! `obol operator`), publishing the route table from the offers whose `RoutePublished` is True
//! each time the store reports a change. Replicas share their payment guard: the settings must
//! name a PostgreSQL `paymentStore`, so one payment is served once whichever replica it reaches.
//! No admin API, no buyer proxy, no reconciling: those are the operator's and the buyer's.

use std::sync::Arc;
use std::time::Duration;

use obol_config::stack::{StackFile, TlsSetting};
use obol_config::{Paths, PublicUrl, env};
use obol_control::Store;
use obol_control::reconcile::Reconciler;

use crate::{DaemonError, bind, https, public, stopping};

/// How often the route table is rebuilt without a store event (drain times pass).
const REPUBLISH_EVERY: Duration = Duration::from_secs(30);

/// How a replica runs.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The public listener (buyers).
    pub listen: String,
    /// The internal listener: `/metrics` and ForwardAuth (never exposed to buyers).
    pub internal_listen: String,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--tls-cert`/`--tls-key` (overrides the settings' `tls`).
    pub tls: Option<TlsSetting>,
}

/// Rebuilds `reconciler`'s route table now, on every offer or identity change in `store`, and
/// every [`REPUBLISH_EVERY`], until `stop` resolves.
async fn follow_routes(
    store: Arc<dyn Store>,
    reconciler: Arc<Reconciler>,
    stop: impl Future<Output = ()>,
) {
    let mut events = store.watch();
    tokio::pin!(stop);
    loop {
        match reconciler.publish_routes_with_fresh_secrets().await {
            Ok(count) => tracing::debug!(count, "route table published"),
            Err(error) => tracing::error!(%error, "cannot publish the route table"),
        }
        tokio::select! {
            event = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return;
                }
            }
            () = tokio::time::sleep(REPUBLISH_EVERY) => {}
            () = &mut stop => return,
        }
    }
}

/// Runs one gateway replica over `store` until `shutdown` resolves, reaching Service upstreams
/// and reading upstream credentials as `cluster` says.
///
/// # Errors
///
/// [`DaemonError`] when the settings do not name a PostgreSQL payment store, a listener cannot
/// bind, or the facilitator, the guard or the certificate cannot be set up.
pub async fn run_replica(
    paths: Paths,
    store: Arc<dyn Store>,
    cluster: crate::ClusterAccess,
    options: ReplicaOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let settings = StackFile::load(&paths.stack_file())?;
    if crate::payment_store_url(settings.payment_store.as_deref())?.is_none() {
        return Err(DaemonError::Start(
            "gateway replicas share their payment guard: set paymentStore to a postgres:// URL \
             (stack init --payment-store, or OBOL_PAYMENT_STORE)"
                .into(),
        ));
    }
    let (listener, bound) = bind(&options.listen).await?;
    let (internal_listener, internal_bound) = bind(&options.internal_listen).await?;
    let tls = https::load(options.tls.as_ref(), settings.tls.as_ref())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = PublicUrl::resolve(
        options.public_url.as_deref(),
        std::env::var(env::PUBLIC_URL).ok().as_deref(),
        settings.public_url.as_deref(),
        &format!("{scheme}://{bound}"),
    )?;
    let public::Public {
        reconciler,
        public,
        internal,
        ..
    } = public::assemble(
        &paths,
        &settings,
        store.clone(),
        (
            &public_url,
            &obol_config::public_url::SharedPublicUrl::new(public_url.clone()),
        ),
        None,
        Some(&cluster),
    )
    .await?;

    let (stop_tx, _) = tokio::sync::watch::channel(false);
    let routes = tokio::spawn(follow_routes(store, reconciler, stopping(&stop_tx)));
    let served = tokio::spawn(https::serve(
        listener,
        tls.map(|(tls, _)| tls),
        public,
        stopping(&stop_tx),
    ));
    let internal_served = tokio::spawn(obol_gateway::server::serve(
        internal_listener,
        internal,
        stopping(&stop_tx),
    ));
    eprintln!(
        "gateway replica listening on {scheme}://{bound} (internal http://{internal_bound}), public URL {public_url}"
    );
    tracing::info!(%bound, %internal_bound, %public_url, "gateway replica running");
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(routes, served, internal_served);
    Ok(())
}
