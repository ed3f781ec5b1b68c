//! The reconciler: its condition tables run as the reconcile conformance suite
//! (`obol_control::reconcile::conformance`, on Kubernetes too in obol-kube); here, on SQLite,
//! that suite and what depends on no store: time parsing, the Service-upstream URL, and the
//! controller's requeue timers.

use std::sync::Arc;
use std::time::Duration;

use obol_control::reconcile::{
    UpstreamResolution, parse_duration, parse_rfc3339, resolve_upstream,
};
use obol_control::{ServiceOffer, SqliteStore, Store, StoreExt};

use crate::store::offer;

mod reconcile_conformance {
    obol_control::reconcile_conformance!(crate::store::sqlite);
}

#[test]
fn time_parsing() {
    assert_eq!(parse_duration("1h"), Some(3600));
    assert_eq!(parse_duration("2h30m"), Some(9000));
    assert_eq!(parse_duration("30d"), Some(2_592_000));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("10x"), None);
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_rfc3339("2025-02-27T16:02:34Z"), Some(1_740_672_154));
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2025-13-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("yesterday"), None);
    for t in [0u64, 951_782_400, 1_740_672_154, 4_294_967_295] {
        assert_eq!(parse_rfc3339(&obol_config::time::rfc3339(t)), Some(t));
    }
}

/// Counts reconciles; every one asks to be requeued soon.
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl obol_control::controller::Reconcile for Counting {
    type Error = obol_control::StoreError;

    fn kind(&self) -> &'static str {
        "ServiceOffer"
    }

    async fn reconcile(
        &self,
        _: &str,
        _: &str,
    ) -> Result<obol_control::reconcile::Action, Self::Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(obol_control::reconcile::Action::Requeue(
            Duration::from_millis(100),
        ))
    }
}

#[tokio::test]
async fn a_burst_of_changes_leaves_one_requeue_timer_per_object() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let counting = Arc::new(Counting {
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(obol_control::controller::run(
        store.clone(),
        counting.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // Thirty changes in a burst, each reconciled and each answered "again in 100 ms".
    for price in 1..=30 {
        store
            .apply(&offer("burst", &format!("0.{price:03}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_burst = counting.calls.load(std::sync::atomic::Ordering::SeqCst);
    // Then quiet: one timer chain, about one reconcile per 100 ms — not thirty timers firing.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let quiet = counting.calls.load(std::sync::atomic::Ordering::SeqCst) - after_burst;
    assert!(
        (2..=6).contains(&quiet),
        "{quiet} reconciles in 450 ms of quiet"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

/// `resolve_upstream`'s table (reconciling such an offer is in the suite:
/// `a_service_upstream_is_missing_service_in_embedded_mode` and the cluster-mode rows).
#[test]
fn a_service_upstream_is_its_cluster_dns_name_in_kubernetes_mode_only() {
    let cluster = UpstreamResolution::Cluster {
        domain: obol_control::offer::DEFAULT_CLUSTER_DOMAIN.into(),
    };
    let mut original = ServiceOffer::new("sellers", "svc", offer("x", "1").spec);
    original.spec.upstream.url = None;
    original.spec.upstream.service = Some("llm".into());
    original.spec.upstream.port = Some(8000);
    let resolved = resolve_upstream(original.clone(), &cluster);
    assert_eq!(
        resolved.spec.upstream.url.as_deref(),
        Some("http://llm.sellers.svc.cluster.local:8000")
    );
    assert_eq!(resolved.spec.upstream.service, None);
    let mut elsewhere = original.clone();
    elsewhere.spec.upstream.namespace = Some("models".into());
    let resolved = resolve_upstream(
        elsewhere,
        &UpstreamResolution::Cluster {
            domain: "k8s.internal".into(),
        },
    );
    assert_eq!(
        resolved.spec.upstream.url.as_deref(),
        Some("http://llm.models.svc.k8s.internal:8000")
    );
    // Embedded: unchanged, so the reconciler reports MissingService.
    assert_eq!(
        resolve_upstream(original.clone(), &UpstreamResolution::Embedded),
        original
    );
    // A URL upstream stays as it is in a cluster too; no port or service: nothing to resolve.
    let by_url = offer("u", "1");
    assert_eq!(resolve_upstream(by_url.clone(), &cluster), by_url);
    let mut portless = original;
    portless.spec.upstream.port = None;
    assert_eq!(resolve_upstream(portless.clone(), &cluster), portless);
}
