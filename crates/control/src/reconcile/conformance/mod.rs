//! The reconcile conformance suite: the offer reconciler's condition tables — every condition
//! and reason, route publication, draining and deletion, path and hostname claims,
//! registration, upstream secrets, Service upstreams, the controller loop — on any [`Store`]
//! (SQLite in this crate's tests, Kubernetes in `obol-kube`'s). Each test takes a fresh, empty
//! store.
//!
//! [`reconcile_conformance!`](crate::reconcile_conformance) turns the suite into
//! `#[tokio::test]`s. Upstreams are local HTTP servers; secrets live in a temporary
//! [`FileSecrets`] directory and Services in a [`MemoryServices`] map (the Kubernetes sources
//! are tested in `obol-kube`). A store's watch may deliver events later (a Kubernetes watch),
//! so the controller tests wait for results with a deadline.
//!
//! Test support: failures panic, as in any test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod claims;
mod cluster;
mod conditions;
mod loops;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::routing::get;
use obol_gateway::{Lookup, Routes};
use obol_x402::token::TokenRegistry;

pub use claims::{
    nested_paths_are_not_a_conflict, paths_equal_after_normalisation_conflict,
    the_oldest_claimant_of_a_hostname_wins_and_the_stacks_own_is_refused,
    the_oldest_claimant_of_a_path_wins,
};
pub use cluster::{
    a_missing_service_is_missing_service_until_it_appears,
    a_service_upstream_is_missing_service_in_embedded_mode,
    a_service_without_the_port_or_unreadable_is_unhealthy,
};
pub use conditions::{
    a_healthy_offer_becomes_ready_and_routed,
    an_upstream_secret_is_probed_with_and_routed_and_missing_blocks_the_offer,
    deleting_tombstones_the_route_first, draining_keeps_serving_until_the_end,
    inference_models_registration_and_reserved_paths,
    registered_takes_the_agent_id_recorded_for_the_offers_chain,
    unhealthy_and_unreachable_upstreams_are_not_routed,
};
pub use loops::{an_identity_change_requeues_every_offer, the_controller_loop_follows_the_store};

use super::{Action, Reconciler, ServiceDirectory, ServiceInfo, ServiceLookupError};
use crate::offer::{SecretRef, ServiceOffer, ServiceOfferSpec, UpstreamAuthSpec};
use crate::resource::{ConditionStatus, condition};
use crate::secrets::FileSecrets;
use crate::store::conformance::offer;
use crate::store::{Store, StoreExt};

/// Generates one `#[tokio::test]` per reconcile conformance test. `$setup` is an async
/// function returning `(Arc<dyn Store>, guard)`: a fresh store and whatever must live as long
/// as it (the same constructor as [`store_conformance!`](crate::store_conformance)'s).
#[macro_export]
macro_rules! reconcile_conformance {
    ($setup:path) => {
        $crate::reconcile_conformance!(@tests $setup;
            a_healthy_offer_becomes_ready_and_routed,
            unhealthy_and_unreachable_upstreams_are_not_routed,
            an_upstream_secret_is_probed_with_and_routed_and_missing_blocks_the_offer,
            inference_models_registration_and_reserved_paths,
            draining_keeps_serving_until_the_end,
            deleting_tombstones_the_route_first,
            registered_takes_the_agent_id_recorded_for_the_offers_chain,
            the_oldest_claimant_of_a_path_wins,
            the_oldest_claimant_of_a_hostname_wins_and_the_stacks_own_is_refused,
            paths_equal_after_normalisation_conflict,
            nested_paths_are_not_a_conflict,
            the_controller_loop_follows_the_store,
            an_identity_change_requeues_every_offer,
            a_service_upstream_is_missing_service_in_embedded_mode,
            a_missing_service_is_missing_service_until_it_appears,
            a_service_without_the_port_or_unreadable_is_unhealthy,
        );
    };
    (@tests $setup:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $setup().await;
                $crate::reconcile::conformance::$name(store).await;
            }
        )+
    };
}

/// Services kept in memory, for the suite (a Kubernetes cluster's are `obol-kube`'s
/// `KubeServices`).
#[derive(Debug, Default)]
pub struct MemoryServices {
    services: Mutex<BTreeMap<(String, String), ServiceInfo>>,
    failure: Mutex<Option<String>>,
}

impl MemoryServices {
    /// Creates or replaces Service `namespace/name` (`ports`: see [`ServiceInfo::ports`]).
    pub fn put(&self, namespace: &str, name: &str, ports: Option<Vec<u16>>) {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (namespace.to_owned(), name.to_owned()),
                ServiceInfo { ports },
            );
    }

    /// Deletes Service `namespace/name`.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Every lookup fails with `message` from now on (`None`: answers again).
    pub fn fail(&self, message: Option<&str>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = message.map(str::to_owned);
    }
}

#[async_trait::async_trait]
impl ServiceDirectory for MemoryServices {
    async fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceInfo>, ServiceLookupError> {
        if let Some(message) = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(ServiceLookupError(message));
        }
        Ok(self
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

/// A local upstream: `/health` 200, `/sick` 503, `/keyed` 200 only with `X-Api-Key:
/// sk-seller`; the `Host` of each `/health` and `/keyed` request is recorded.
#[derive(Debug)]
pub struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Where it listens.
    pub address: SocketAddr,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    /// Starts one on loopback.
    pub async fn start() -> Self {
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let seen = hosts.clone();
        let record = move |headers: &HeaderMap| {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(host.unwrap_or_default().to_owned());
        };
        let (health, keyed) = (record.clone(), record);
        let app = Router::new()
            .route(
                "/health",
                get(move |headers: HeaderMap| {
                    health(&headers);
                    async { "ok" }
                }),
            )
            .route(
                "/sick",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
            )
            .route(
                "/keyed",
                get(move |headers: HeaderMap| {
                    keyed(&headers);
                    let known = headers.get("x-api-key").is_some_and(|k| k == "sk-seller");
                    async move {
                        if known {
                            StatusCode::OK
                        } else {
                            StatusCode::UNAUTHORIZED
                        }
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{address}"),
            address,
            hosts,
        }
    }

    /// The `Host` headers of the `/health` and `/keyed` requests so far, then forgets them.
    pub fn take_hosts(&self) -> Vec<String> {
        std::mem::take(&mut *self.hosts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A probe client (as the reconciler's: [`HEALTH_TIMEOUT`](super::HEALTH_TIMEOUT)) that
/// resolves `hosts` (cluster DNS names) to loopback: the URL keeps the name and its port.
pub fn probe_client(hosts: &[&str]) -> reqwest::Client {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    hosts
        .iter()
        .fold(reqwest::Client::builder(), |b, host| {
            b.resolve(host, loopback)
        })
        .no_proxy()
        .timeout(super::HEALTH_TIMEOUT)
        .build()
        .unwrap()
}

/// A store, the reconciler on it, its route table, an upstream and a secrets directory.
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) reconciler: Reconciler,
    pub(crate) upstream: Upstream,
    pub(crate) secrets: Arc<FileSecrets>,
    _secrets_dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) async fn new(store: Arc<dyn Store>) -> Self {
        let routes = Arc::new(Routes::new());
        let secrets_dir = tempfile::tempdir().unwrap();
        let secrets = Arc::new(FileSecrets::new(secrets_dir.path()));
        let reconciler = Reconciler::new(store.clone(), routes.clone(), TokenRegistry::builtin())
            .with_secrets(secrets.clone());
        Self {
            store,
            routes,
            reconciler,
            upstream: Upstream::start().await,
            secrets,
            _secrets_dir: secrets_dir,
        }
    }

    /// An HTTP offer in `default` on the upstream.
    pub(crate) fn offer(&self, name: &str) -> ServiceOffer {
        let mut o = offer("default", name, "0.001");
        o.spec.upstream.url = Some(self.upstream.url.clone());
        o
    }

    /// Applies `offer`, reconciles it once: the action and the stored offer.
    pub(crate) async fn run(&self, offer: &ServiceOffer) -> (Action, ServiceOffer) {
        self.store.apply(offer).await.unwrap();
        self.reconcile_with(&self.reconciler, offer).await
    }

    /// Reconciles the stored `offer` once with `reconciler`: the action and the stored offer.
    pub(crate) async fn reconcile_with(
        &self,
        reconciler: &Reconciler,
        offer: &ServiceOffer,
    ) -> (Action, ServiceOffer) {
        let (namespace, name) = (&offer.metadata.namespace, &offer.metadata.name);
        let action = reconciler.reconcile(namespace, name).await.unwrap();
        (action, self.stored(namespace, name).await.unwrap())
    }

    pub(crate) async fn stored(&self, namespace: &str, name: &str) -> Option<ServiceOffer> {
        self.store
            .get::<ServiceOfferSpec>(namespace, name)
            .await
            .unwrap()
    }

    /// The offer the route table serves `path` (GET) from, if paid.
    pub(crate) fn routed(&self, path: &str) -> Option<String> {
        routed(&self.routes, path)
    }
}

pub(crate) fn routed(routes: &Routes, path: &str) -> Option<String> {
    match routes.load().lookup(&Method::GET, path) {
        Lookup::Paid(o, _) => Some(o.name.clone()),
        _ => None,
    }
}

/// `(type, status, reason)` of the five pipeline conditions and `Ready`.
pub(crate) fn reasons(offer: &ServiceOffer) -> Vec<(String, ConditionStatus, String)> {
    [
        "ModelReady",
        "UpstreamHealthy",
        "PaymentGateReady",
        "RoutePublished",
        "Registered",
        "Ready",
    ]
    .iter()
    .map(|t| {
        let c = condition(&offer.status.conditions, t).unwrap_or_else(|| panic!("{t} missing"));
        ((*t).to_owned(), c.status, c.reason.clone())
    })
    .collect()
}

pub(crate) fn row(t: &str, s: ConditionStatus, r: &str) -> (String, ConditionStatus, String) {
    (t.to_owned(), s, r.to_owned())
}

/// [`reasons`] of a ready HTTP offer without registration.
pub(crate) fn all_ready() -> Vec<(String, ConditionStatus, String)> {
    use ConditionStatus::True;
    vec![
        row("ModelReady", True, "Skipped"),
        row("UpstreamHealthy", True, "Healthy"),
        row("PaymentGateReady", True, "Reconciled"),
        row("RoutePublished", True, "Reconciled"),
        row("Registered", True, "Disabled"),
        row("Ready", True, "Reconciled"),
    ]
}

/// [`reasons`] after `ModelReady` and `UpstreamHealthy` of an HTTP offer without
/// registration whose upstream is not healthy.
pub(crate) fn waiting_for_upstream() -> Vec<(String, ConditionStatus, String)> {
    use ConditionStatus::{False, True};
    vec![
        row("PaymentGateReady", False, "WaitingForUpstream"),
        row("RoutePublished", False, "WaitingForPaymentGate"),
        row("Registered", True, "Disabled"),
        row("Ready", False, "Reconciling"),
    ]
}

/// The credential [`Upstream`]'s `/keyed` wants, by reference: key `api` of secret `keys`,
/// sent as `X-Api-Key` (its value must be `sk-seller`).
pub fn keyed_auth() -> UpstreamAuthSpec {
    UpstreamAuthSpec {
        secret_ref: SecretRef {
            name: "keys".into(),
            key: "api".into(),
        },
        header: Some("X-Api-Key".into()),
    }
}

/// `(status, reason, message)` of condition `type_`.
pub(crate) fn said(offer: &ServiceOffer, type_: &str) -> (ConditionStatus, String, String) {
    let c = condition(&offer.status.conditions, type_)
        .unwrap_or_else(|| panic!("{type_} missing: {:?}", offer.status.conditions));
    (c.status, c.reason.clone(), c.message.clone())
}

pub(crate) fn is_published(offer: &ServiceOffer) -> bool {
    condition(&offer.status.conditions, "RoutePublished")
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// Waits (up to 10 s) until `check` holds.
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
