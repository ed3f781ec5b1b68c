//! Upstreams given as a Kubernetes Service (`upstream.service / namespace / port`):
//! `MissingService` in the embedded mode, and in the cluster mode only while the Service is
//! missing; present, it is probed at its cluster DNS name.
//!
//! The DNS name cannot resolve on a machine without a cluster, so the probe client here maps
//! the Service's name to loopback (reqwest's `resolve`): the URL keeps the name the reconciler
//! built and the offer's port, only the address lookup is replaced; the upstream checks the
//! `Host` it was asked for.

use std::sync::Arc;

use obol_gateway::Routes;
use obol_x402::token::TokenRegistry;

use super::{
    Harness, MemoryServices, all_ready, probe_client, reasons, row, said, waiting_for_upstream,
};
use crate::offer::{DEFAULT_CLUSTER_DOMAIN, ServiceOffer};
use crate::reconcile::{Action, NOT_READY_REQUEUE, Reconciler, UpstreamResolution};
use crate::resource::ConditionStatus::{False, True};
use crate::store::conformance::offer;
use crate::store::{Store, StoreExt};

/// An offer in `sellers` whose upstream is Service `service` on `port`.
fn service_offer(name: &str, service: &str, port: u16) -> ServiceOffer {
    let mut o = offer("sellers", name, "0.001");
    o.spec.upstream.url = None;
    o.spec.upstream.service = Some(service.into());
    o.spec.upstream.port = Some(port);
    o
}

/// A reconciler in the cluster mode over `services`, whose probes reach `hosts` on loopback.
fn in_cluster(s: &Harness, services: Arc<MemoryServices>, hosts: &[&str]) -> Reconciler {
    Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin())
        .with_upstreams(UpstreamResolution::Cluster {
            domain: DEFAULT_CLUSTER_DOMAIN.into(),
        })
        .with_services(services)
        .with_probe_client(probe_client(hosts))
}

/// The embedded stack has no Services: `MissingService`, and the stored spec is never
/// rewritten.
pub async fn a_service_upstream_is_missing_service_in_embedded_mode(store: Arc<dyn Store>) {
    let original = service_offer("svc", "llm", 8000);
    store.apply(&original).await.unwrap();
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(Routes::new()),
        TokenRegistry::builtin(),
    );
    reconciler.reconcile("sellers", "svc").await.unwrap();
    let stored = store
        .get::<crate::ServiceOfferSpec>("sellers", "svc")
        .await
        .unwrap()
        .unwrap();
    let (status, reason, _) = said(&stored, "UpstreamHealthy");
    assert_eq!((status, reason.as_str()), (False, "MissingService"));
    assert_eq!(
        stored.spec.upstream.url, None,
        "the stored spec is never rewritten"
    );
}

/// `MissingService` naming the Service and its namespace, no probe sent; once the Service
/// exists the next reconcile probes its DNS name and the offer is Ready, routed to that
/// name; the Service deleted, `MissingService` again and the route withdrawn.
pub async fn a_missing_service_is_missing_service_until_it_appears(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let port = s.upstream.address.port();
    let services = Arc::new(MemoryServices::default());
    let dns = "llm.sellers.svc.cluster.local";
    let reconciler = in_cluster(&s, services.clone(), &[dns]);
    let svc = service_offer("svc", "llm", port);
    s.store.apply(&svc).await.unwrap();

    let (action, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(
        said(&stored, "UpstreamHealthy"),
        (
            False,
            "MissingService".into(),
            "Service llm not found in namespace sellers".into()
        )
    );
    assert_eq!(reasons(&stored)[2..], waiting_for_upstream());
    assert_eq!(action, Action::Requeue(NOT_READY_REQUEUE));
    assert!(s.upstream.take_hosts().is_empty(), "nothing probed");
    assert_eq!(s.routed("/services/svc"), None);

    services.put("sellers", "llm", Some(vec![port]));
    let (_, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(reasons(&stored), all_ready());
    assert_eq!(s.upstream.take_hosts(), [format!("{dns}:{port}")]);
    assert_eq!(s.routed("/services/svc/x").as_deref(), Some("svc"));
    let table = s.routes.load();
    let route = table.routes().next().unwrap();
    assert_eq!(
        route.offer.upstream.as_str(),
        format!("http://{dns}:{port}/")
    );
    assert_eq!(stored.spec.upstream.url, None, "the spec is not rewritten");

    services.remove("sellers", "llm");
    let (_, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(said(&stored, "UpstreamHealthy").1, "MissingService");
    assert_eq!(s.routed("/services/svc"), None);
    assert!(s.upstream.take_hosts().is_empty(), "nothing probed");
}

/// A Service in another namespace (`upstream.namespace`) without the offer's port is
/// `Unhealthy` without a probe; a headless one (any port) is probed; a lookup that fails is
/// `Unhealthy`, not `MissingService`.
pub async fn a_service_without_the_port_or_unreadable_is_unhealthy(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let port = s.upstream.address.port();
    let services = Arc::new(MemoryServices::default());
    let dns = "llm.models.svc.cluster.local";
    let reconciler = in_cluster(&s, services.clone(), &[dns]);
    let mut svc = service_offer("svc", "llm", port);
    svc.spec.upstream.namespace = Some("models".into());
    s.store.apply(&svc).await.unwrap();
    // A Service of that name in the offer's own namespace is not the one asked for.
    services.put("sellers", "llm", Some(vec![port]));

    services.put("models", "llm", Some(vec![80, 443]));
    let (_, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(
        said(&stored, "UpstreamHealthy"),
        (
            False,
            "Unhealthy".into(),
            format!("Service llm in namespace models has no port {port} (its ports: 80, 443)")
        )
    );
    assert!(s.upstream.take_hosts().is_empty(), "nothing probed");

    services.put("models", "llm", None);
    let (_, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(reasons(&stored)[5], row("Ready", True, "Reconciled"));
    assert_eq!(s.upstream.take_hosts(), [format!("{dns}:{port}")]);

    services.fail(Some("HTTP 403 Forbidden"));
    let (_, stored) = s.reconcile_with(&reconciler, &svc).await;
    assert_eq!(
        said(&stored, "UpstreamHealthy"),
        (
            False,
            "Unhealthy".into(),
            "Service llm in namespace models could not be looked up: HTTP 403 Forbidden".into()
        )
    );
    assert_eq!(s.routed("/services/svc"), None);
}
