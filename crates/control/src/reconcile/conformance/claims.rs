//! Claims on paths and hostnames: the oldest claimant wins (`PathConflict`,
//! `HostnameConflict`, requeued after 30 s), paths compare normalised, nested paths are no
//! conflict, the stack's own host is refused.

use std::sync::Arc;
use std::time::Duration;

use obol_x402::token::TokenRegistry;

use super::{Harness, is_published};
use crate::reconcile::{Action, Reconciler};
use crate::resource::ConditionStatus::False;
use crate::resource::condition;
use crate::store::{Store, StoreExt};

/// A later second, so the next offer is created after the previous one.
async fn a_second_later() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// The later claimant of a path is `PathConflict`; when the owner is deleted it takes over.
pub async fn the_oldest_claimant_of_a_path_wins(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let mut first = s.offer("first");
    first.spec.path = Some("/services/shared".into());
    s.run(&first).await;
    a_second_later().await;
    let mut second = s.offer("second");
    second.spec.path = Some("/services/shared".into());
    let (action, stored) = s.run(&second).await;
    let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (route.status, route.reason.as_str()),
        (False, "PathConflict")
    );
    assert_eq!(
        route.message,
        "/services/shared is already served by default/first"
    );
    assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    assert_eq!(s.routed("/services/shared").as_deref(), Some("first"));

    // When the owner goes, the other takes over.
    s.store
        .delete("ServiceOffer", "default", "first")
        .await
        .unwrap();
    s.reconciler.reconcile("default", "first").await.unwrap();
    assert!(
        s.stored("default", "first").await.is_none(),
        "finalizer released"
    );
    s.reconciler.reconcile("default", "second").await.unwrap();
    assert_eq!(s.routed("/services/shared").as_deref(), Some("second"));
}

/// The later claimant of a hostname is `HostnameConflict` on the gate and the route; the
/// stack's public host belongs to the stack.
pub async fn the_oldest_claimant_of_a_hostname_wins_and_the_stacks_own_is_refused(
    store: Arc<dyn Store>,
) {
    let s = Harness::new(store).await;
    let mut first = s.offer("first");
    first.spec.hostname = Some("api.example.com".into());
    s.run(&first).await;
    a_second_later().await;
    let mut second = s.offer("second");
    second.spec.hostname = Some("api.example.com".into());
    let (action, stored) = s.run(&second).await;
    for type_ in ["PaymentGateReady", "RoutePublished"] {
        let c = condition(&stored.status.conditions, type_).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (False, "HostnameConflict"));
        assert_eq!(
            c.message,
            "api.example.com is already served by default/first"
        );
    }
    assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    let table = s.routes.load();
    assert_eq!(table.vanity("api.example.com").unwrap().name, "first");

    let own = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin())
        .with_public_host(Some("stack.example.com".into()));
    let mut third = s.offer("third");
    third.spec.hostname = Some("stack.example.com".into());
    s.store.apply(&third).await.unwrap();
    let (_, stored) = s.reconcile_with(&own, &third).await;
    let c = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        (
            "HostnameConflict",
            "stack.example.com is already served by the stack itself (its public URL)"
        )
    );
}

/// Paths equal once normalised (`//`, `.`, `..`, a trailing `/`) conflict; case counts.
pub async fn paths_equal_after_normalisation_conflict(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let mut first = s.offer("first");
    first.spec.path = Some("/services/shared".into());
    s.run(&first).await;
    a_second_later().await;
    // Stored before validation refused such paths: the same path once normalised.
    for (name, path) in [
        ("slashes", "/services//shared/"),
        ("dots", "/services/./other/../shared"),
    ] {
        let mut later = s.offer(name);
        later.spec.path = Some(path.into());
        let (action, stored) = s.run(&later).await;
        assert_eq!(stored.status.endpoint.as_deref(), Some("/services/shared"));
        let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
        assert_eq!(
            (route.status, route.reason.as_str(), route.message.as_str()),
            (
                False,
                "PathConflict",
                "/services/shared is already served by default/first"
            ),
            "{path}"
        );
        assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    }
    assert_eq!(s.routed("/services/shared/x").as_deref(), Some("first"));
    // Case is significant, as in the gateway: another path, no conflict.
    let mut upper = s.offer("upper");
    upper.spec.path = Some("/services/Shared".into());
    let (_, stored) = s.run(&upper).await;
    assert!(is_published(&stored), "{:?}", stored.status.conditions);
}

/// `/services/x` and `/services/x/premium` are both published, in either order.
pub async fn nested_paths_are_not_a_conflict(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let mut outer = s.offer("outer");
    outer.spec.path = Some("/services/x".into());
    let mut inner = s.offer("inner");
    inner.spec.path = Some("/services/x/premium".into());
    for offer in [&outer, &inner] {
        let (_, stored) = s.run(offer).await;
        assert!(is_published(&stored), "{:?}", stored.status.conditions);
    }
    // The outer one again, now that the inner one exists.
    let (_, stored) = s.run(&outer).await;
    assert!(is_published(&stored), "{:?}", stored.status.conditions);
}
