//! # obol-operator — `obol operator`, the Kubernetes controller
//!
//! The resource reconcilers the embedded daemon runs (offers: ModelReady → … → Ready), driven
//! over the Kubernetes store ([`obol_kube::KubeStore`]), by one replica at a time: the replicas
//! contend for a `coordination.k8s.io/v1` Lease (`kube-lease-manager`), the holder reconciles,
//! the others wait, and a leader that loses its lease (or is stopped) stops reconciling before
//! anyone else starts. On shutdown the lease is released, so a successor takes over at once
//! instead of waiting for it to expire.
//!
//! [`router`] serves `/healthz` (the process answers), `/readyz` (the store listed and watches
//! every kind) and `/metrics` (`obol_operator_leader` 0/1, and what the reconcilers record).
//!
//! In a cluster an offer's upstream may be a Service (`upstream.service / namespace / port`):
//! the reconciler looks it up first ([`obol_kube::KubeServices`]: absent → `MissingService`)
//! and probes it at its cluster DNS name. An upstream credential (`upstream.auth.secretRef`)
//! is read from the Secret of that name in the offer's namespace ([`obol_kube::KubeSecrets`]).
//! Both with one `GET` each, which is all the RBAC grants (docs/design/kubernetes.md,
//! "Services, Secrets and condition coverage on the cluster").
//!
//! Not here: the purchase reconciler. A purchase's pool is spent by the buyer proxy beside it,
//! so both run in `obol buyer --kubernetes` (one replica; docs/design/kubernetes.md, slice 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube_lease_manager::LeaseManagerBuilder;
use metrics_exporter_prometheus::PrometheusHandle;
use obol_control::reconcile::{Reconciler, UpstreamResolution};
use obol_control::routes::Settlers;
use obol_control::store::{Store, StoreError};
use obol_gateway::Routes;
use obol_kube::{KubeSecrets, KubeServices, KubeStore};
use obol_x402::token::TokenRegistry;

/// The lease's default name.
pub const DEFAULT_LEASE_NAME: &str = "obol-operator";

/// How an operator runs.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// The namespace of the lease.
    pub lease_namespace: String,
    /// The lease's name (every replica of one operator names the same).
    pub lease_name: String,
    /// This replica's name among the candidates (the pod's name).
    pub identity: String,
    /// How long a lease lasts without renewal, in seconds.
    pub lease_seconds: u64,
    /// How long before expiry the holder renews it, in seconds.
    pub grace_seconds: u64,
    /// How offers' upstreams are reached (`Cluster`: a Service's DNS name).
    pub upstreams: UpstreamResolution,
    /// Who settles `upto` payments per chain (from the facilitator's `/supported`).
    pub settlers: Settlers,
    /// The HTTP client of the upstream health probes; `None`: the reconciler's own (2 s,
    /// no redirects). Tests give one resolving cluster DNS names to loopback.
    pub probe_client: Option<reqwest::Client>,
}

impl OperatorConfig {
    /// An operator named `identity`, its lease `obol-operator` in `namespace` (15 s, renewed
    /// 5 s before expiry), upstreams resolved in the cluster.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            lease_namespace: namespace.to_owned(),
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            identity: identity.to_owned(),
            lease_seconds: 15,
            grace_seconds: 5,
            upstreams: UpstreamResolution::Cluster {
                domain: obol_control::offer::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            },
            settlers: Settlers::new(),
            probe_client: None,
        }
    }
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The store could not start (the API server unreachable, the CRDs missing).
    #[error("the Kubernetes store: {0}")]
    Store(#[from] StoreError),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
}

/// What the health endpoints and the metrics report, shared with [`run`].
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    leader: Arc<AtomicBool>,
}

impl Health {
    /// Whether the store is listed and watched.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Whether this replica leads (reconciles).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::SeqCst);
        metrics::gauge!("obol_operator_leader").set(if leading { 1.0 } else { 0.0 });
    }
}

#[derive(Clone)]
struct Served {
    health: Health,
    metrics: PrometheusHandle,
}

/// `/healthz`, `/readyz` (200 once the store is watched; says whether this replica leads) and
/// `/metrics`.
pub fn router(health: Health, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(served): State<Served>| async move {
                let body = serde_json::json!({
                    "ready": served.health.is_ready(),
                    "leader": served.health.is_leader(),
                });
                let code = if served.health.is_ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, axum::Json(body)).into_response()
            }),
        )
        .route(
            "/metrics",
            get(|State(served): State<Served>| async move { served.metrics.render() }),
        )
        .with_state(Served { health, metrics })
}

/// The offer reconciler over `store` (its route table is unused: gateways build their own),
/// reading Services and Secrets through `client`.
fn reconciler(
    store: &Arc<dyn Store>,
    client: &kube::Client,
    config: &OperatorConfig,
) -> Arc<Reconciler> {
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(Routes::new()),
        TokenRegistry::builtin(),
    )
    .with_settlers(config.settlers.clone())
    .with_upstreams(config.upstreams.clone())
    .with_services(Arc::new(KubeServices::new(client.clone())))
    .with_secrets(Arc::new(KubeSecrets::new(client.clone())));
    Arc::new(match &config.probe_client {
        Some(http) => reconciler.with_probe_client(http.clone()),
        None => reconciler,
    })
}

/// Runs the operator on `client`'s cluster until `shutdown` resolves: reconciling while this
/// replica holds the lease (see the module docs).
///
/// # Errors
///
/// [`OperatorError`] when the store cannot start or leader election fails for good.
pub async fn run(
    client: kube::Client,
    config: OperatorConfig,
    health: Health,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), OperatorError> {
    let store: Arc<dyn Store> = Arc::new(KubeStore::new(client.clone()).await?);
    health.ready.store(true, Ordering::SeqCst);
    health.set_leader(false);
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.identity)
        .with_duration(config.lease_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await
        .map_err(|e| OperatorError::Lease(e.to_string()))?;
    let (mut leading, lease_task) = manager.watch().await;
    let lost = |e: &dyn std::fmt::Display| OperatorError::Lease(e.to_string());
    tokio::pin!(shutdown);
    loop {
        // Follow until this replica holds the lease.
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => changed.map_err(|e| lost(&e))?,
                () = &mut shutdown => return release(leading, lease_task).await,
            }
        }
        tracing::info!(identity = %config.identity, "leading: reconciling");
        health.set_leader(true);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let controller = tokio::spawn(obol_control::controller::run(
            store.clone(),
            reconciler(&store, &client, &config),
            async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        // Lead until the lease is lost or the process stops.
        let stopping = loop {
            tokio::select! {
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() {
                        break false;
                    }
                }
                () = &mut shutdown => break true,
            }
        };
        let _ = stop.send(true);
        let _ = controller.await;
        health.set_leader(false);
        if stopping {
            return release(leading, lease_task).await;
        }
        tracing::warn!(identity = %config.identity, "lost the lease: following");
    }
}

/// Gives the lease up (the manager releases it once its channel closes) and waits for that.
async fn release(
    leading: tokio::sync::watch::Receiver<bool>,
    lease_task: tokio::task::JoinHandle<
        kube_lease_manager::Result<kube_lease_manager::LeaseManager>,
    >,
) -> Result<(), OperatorError> {
    drop(leading);
    match lease_task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(OperatorError::Lease(e.to_string())),
        Err(e) => Err(OperatorError::Lease(e.to_string())),
    }
}
