//! The `Store` conformance suite: one set of tests every implementation passes (SQLite in
//! this crate's tests, Kubernetes in `obol-kube`'s). Each test takes a fresh, empty store.
//!
//! [`store_conformance!`](crate::store_conformance) turns the suite into `#[tokio::test]`s.
//! Events may arrive asynchronously (a Kubernetes watch), so the watch tests wait for them
//! with a deadline instead of expecting them at once.
//!
//! Test support: failures panic, as in any test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;

use super::{
    ApplyMode, ApplyOutcome, DeleteOutcome, Event, ObjectKey, Store, StoreError, StoreExt,
};
use crate::identity::{AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY};
use crate::offer::{OfferType, ServiceOffer, ServiceOfferSpec, ServiceOfferStatus};
use crate::purchase::{PurchasePayment, PurchaseRequest, PurchaseRequestSpec};
use crate::resource::{ConditionStatus, set_condition};

/// Generates one `#[tokio::test]` per conformance test. `$setup` is an async function
/// returning `(Arc<dyn Store>, guard)`: a fresh store and whatever must live as long as it
/// (a server, a directory).
#[macro_export]
macro_rules! store_conformance {
    ($setup:path) => {
        $crate::store_conformance!(@tests $setup;
            get_and_list_in_namespace_then_name_order,
            apply_bumps_generation_only_on_spec_changes,
            labels_and_annotations_are_replaced,
            status_is_replaced_not_merged,
            a_create_only_apply_refuses_an_existing_object,
            an_update_read_at_an_older_generation_is_refused,
            delete_honours_finalizers,
            watchers_see_every_change_in_order,
            concurrent_applies_keep_every_object_and_one_history,
            every_kind_round_trips,
        );
    };
    (@tests $setup:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $setup().await;
                $crate::store::conformance::$name(store).await;
            }
        )+
    };
}

/// An HTTP offer at `price` per request.
pub fn offer(namespace: &str, name: &str, price: &str) -> ServiceOffer {
    ServiceOffer::new(
        namespace,
        name,
        ServiceOfferSpec::per_request(
            OfferType::Http,
            "http://127.0.0.1:9000",
            "base-sepolia",
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            price,
        ),
    )
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: "ServiceOffer".into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

async fn get(store: &dyn Store, namespace: &str, name: &str) -> Option<ServiceOffer> {
    store
        .get::<ServiceOfferSpec>(namespace, name)
        .await
        .unwrap()
}

/// Objects are read back as written; lists are per kind, per namespace or all, ordered by
/// namespace then name whatever the order of creation.
pub async fn get_and_list_in_namespace_then_name_order(store: Arc<dyn Store>) {
    for (namespace, name) in [
        ("zeta", "a"),
        ("alpha", "m"),
        ("alpha", "b"),
        ("default", "z"),
    ] {
        store.apply(&offer(namespace, name, "0.001")).await.unwrap();
    }
    let all = store.list::<ServiceOfferSpec>(None).await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|o| (o.metadata.namespace.as_str(), o.metadata.name.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("alpha", "b"),
            ("alpha", "m"),
            ("default", "z"),
            ("zeta", "a")
        ]
    );
    let alpha = store.list::<ServiceOfferSpec>(Some("alpha")).await.unwrap();
    assert_eq!(alpha.len(), 2);
    assert!(alpha.iter().all(|o| o.metadata.namespace == "alpha"));
    assert!(
        store
            .list::<ServiceOfferSpec>(Some("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
    let got = get(store.as_ref(), "alpha", "m").await.unwrap();
    assert_eq!(got, all[1]);
    assert_eq!(got.spec, offer("alpha", "m", "0.001").spec);
    assert_eq!(got.kind, "ServiceOffer");
    assert!(get(store.as_ref(), "alpha", "missing").await.is_none());
    assert!(get(store.as_ref(), "nobody", "m").await.is_none());
    assert!(
        store
            .list::<PurchaseRequestSpec>(None)
            .await
            .unwrap()
            .is_empty(),
        "kinds are separate"
    );
}

/// Generation 1 on create, +1 per spec change only; an identical apply is `Unchanged`
/// and writes nothing; every write raises the resource version; status writes leave the
/// generation alone.
pub async fn apply_bumps_generation_only_on_spec_changes(store: Arc<dyn Store>) {
    let (created, outcome) = store.apply(&offer("default", "a", "0.001")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Created);
    assert_eq!(created.metadata.generation, 1);
    assert!(created.metadata.creation_timestamp.ends_with('Z'));
    assert!(created.metadata.resource_version > 0);
    let (same, outcome) = store.apply(&offer("default", "a", "0.001")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert_eq!(
        same.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut labelled = offer("default", "a", "0.001");
    labelled
        .metadata
        .labels
        .insert("tier".into(), "gold".into());
    let (relabelled, outcome) = store.apply(&labelled).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Updated);
    assert_eq!(
        relabelled.metadata.generation, 1,
        "labels do not bump the generation"
    );
    assert!(relabelled.metadata.resource_version > created.metadata.resource_version);

    let (updated, outcome) = store.apply(&offer("default", "a", "0.002")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Updated);
    assert_eq!(updated.metadata.generation, 2);
    assert!(updated.metadata.resource_version > relabelled.metadata.resource_version);
    assert_eq!(
        updated.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );

    let mut status = updated.status.clone();
    status.observed_generation = 2;
    set_condition(
        &mut status.conditions,
        "Ready",
        ConditionStatus::True,
        "Reconciled",
        "ok",
    );
    let patched = store
        .patch_status::<ServiceOfferSpec>("default", "a", &status)
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.generation, 2,
        "status does not bump the generation"
    );
    assert!(patched.metadata.resource_version > updated.metadata.resource_version);
    assert_eq!(patched.status, status);
    assert_eq!(patched.spec, updated.spec);
    let fetched = get(store.as_ref(), "default", "a").await.unwrap();
    assert_eq!(fetched, patched);

    // The spec apply keeps the status; the status write kept the spec.
    let (respecced, _) = store.apply(&offer("default", "a", "0.003")).await.unwrap();
    assert_eq!(respecced.metadata.generation, 3);
    assert_eq!(respecced.status, status);
}

/// Labels and annotations are the object's as applied: a removed one is gone.
pub async fn labels_and_annotations_are_replaced(store: Arc<dyn Store>) {
    let mut first = offer("default", "l", "1");
    first.metadata.labels.insert("a".into(), "1".into());
    first.metadata.labels.insert("b".into(), "2".into());
    first
        .metadata
        .annotations
        .insert("obol.org/paused".into(), "true".into());
    store.apply(&first).await.unwrap();
    let mut second = offer("default", "l", "1");
    second.metadata.labels.insert("b".into(), "3".into());
    let (stored, outcome) = store.apply(&second).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Updated);
    assert_eq!(stored.metadata.labels, second.metadata.labels);
    assert!(
        stored.metadata.annotations.is_empty(),
        "{:?}",
        stored.metadata.annotations
    );
    assert_eq!(stored.metadata.generation, 1);
    assert_eq!(get(store.as_ref(), "default", "l").await.unwrap(), stored);
}

/// A status write replaces the whole status (a field left out is gone); a missing object
/// is `NotFound`.
pub async fn status_is_replaced_not_merged(store: Arc<dyn Store>) {
    store.apply(&offer("default", "s", "1")).await.unwrap();
    let full = ServiceOfferStatus {
        endpoint: Some("/services/s".into()),
        observed_generation: 1,
        ..Default::default()
    };
    store
        .patch_status::<ServiceOfferSpec>("default", "s", &full)
        .await
        .unwrap();
    let smaller = ServiceOfferStatus {
        observed_generation: 1,
        ..Default::default()
    };
    let written = store
        .patch_status::<ServiceOfferSpec>("default", "s", &smaller)
        .await
        .unwrap();
    assert_eq!(written.status.endpoint, None);
    assert_eq!(
        get(store.as_ref(), "default", "s").await.unwrap().status,
        smaller
    );
    // Raw: the status is the JSON written.
    let raw = store
        .patch_status_raw("ServiceOffer", "default", "s", json!({"endpoint": "/x"}))
        .await
        .unwrap();
    assert_eq!(raw.status, json!({"endpoint": "/x"}));
    let missing = store
        .patch_status::<ServiceOfferSpec>("default", "missing", &smaller)
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
}

/// `CreateOnly` creates, and refuses an existing object with `Exists`, leaving it as is.
pub async fn a_create_only_apply_refuses_an_existing_object(store: Arc<dyn Store>) {
    let (created, outcome) = store
        .apply_with(&offer("default", "once", "0.001"), ApplyMode::CreateOnly)
        .await
        .unwrap();
    assert_eq!(
        (outcome, created.metadata.generation),
        (ApplyOutcome::Created, 1)
    );
    let error = store
        .apply_with(&offer("default", "once", "0.002"), ApplyMode::CreateOnly)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Exists { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "ServiceOffer default/once already exists"
    );
    let kept = get(store.as_ref(), "default", "once").await.unwrap();
    assert_eq!(
        kept.spec.payment.price.per_request.as_deref(),
        Some("0.001")
    );
    assert_eq!(kept.metadata.generation, 1);
}

/// An update pinned to the generation it was read at is refused once the spec moved on
/// (both generations named), applies after a re-read; generation 0 always applies; an
/// update read from an object deleted since does not bring it back, nor apply to a
/// recreated one.
pub async fn an_update_read_at_an_older_generation_is_refused(store: Arc<dyn Store>) {
    let (first, _) = store.apply(&offer("default", "c", "0.001")).await.unwrap();
    let mut mine = first.clone();
    mine.spec.payment.price.per_request = Some("0.002".into());
    let (stored, _) = store.apply(&mine).await.unwrap();
    assert_eq!(stored.metadata.generation, 2);
    // A status write in between does not make a pinned update fail.
    store
        .patch_status::<ServiceOfferSpec>("default", "c", &ServiceOfferStatus::default())
        .await
        .unwrap();
    let mut theirs = first;
    theirs.spec.payment.price.per_request = Some("0.003".into());
    let error = store.apply(&theirs).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Conflict {
                based_on: 1,
                stored: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().starts_with(
            "ServiceOffer default/c changed since it was read (now generation 2, the update was based on 1)"
        ),
        "{error}"
    );
    let mut again = get(store.as_ref(), "default", "c").await.unwrap();
    again.spec.payment.price.per_request = Some("0.003".into());
    assert_eq!(store.apply(&again).await.unwrap().0.metadata.generation, 3);
    let plain = store.apply(&offer("default", "c", "0.004")).await.unwrap();
    assert_eq!(plain.0.metadata.generation, 4);

    let read = get(store.as_ref(), "default", "c").await.unwrap();
    store.delete("ServiceOffer", "default", "c").await.unwrap();
    let gone = store.apply(&read).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }), "{gone}");
    assert!(get(store.as_ref(), "default", "c").await.is_none());
    let (recreated, _) = store.apply(&offer("default", "c", "0.001")).await.unwrap();
    let mut stale = recreated;
    stale.metadata.creation_timestamp = "2000-01-01T00:00:00Z".into();
    stale.spec.payment.price.per_request = Some("0.009".into());
    let error = store.apply(&stale).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
}

/// With finalizers, delete marks (idempotently) and the object goes with its last
/// finalizer; an apply to a deleting object is refused with `Deleting`; without
/// finalizers delete removes at once; deleting nothing is `NotFound`.
pub async fn delete_honours_finalizers(store: Arc<dyn Store>) {
    let mut guarded = offer("default", "g", "1");
    guarded.metadata.finalizers = vec!["obol.org/offer".into(), "obol.org/other".into()];
    let (created, _) = store.apply(&guarded).await.unwrap();
    assert_eq!(created.metadata.finalizers, guarded.metadata.finalizers);
    assert_eq!(
        store.delete("ServiceOffer", "default", "g").await.unwrap(),
        DeleteOutcome::Marked
    );
    let deleting = get(store.as_ref(), "default", "g").await.unwrap();
    assert!(deleting.metadata.is_deleting());
    assert_eq!(deleting.spec, guarded.spec);
    let error = store.apply(&offer("default", "g", "2")).await.unwrap_err();
    assert!(matches!(error, StoreError::Deleting { .. }), "{error}");
    assert_eq!(error.to_string(), "ServiceOffer default/g is being deleted");
    assert_eq!(
        store.delete("ServiceOffer", "default", "g").await.unwrap(),
        DeleteOutcome::Marked,
        "idempotent"
    );
    // One finalizer removed: still there; a status can still be written.
    store
        .remove_finalizer(&deleting, "obol.org/other")
        .await
        .unwrap();
    let still = get(store.as_ref(), "default", "g").await.unwrap();
    assert_eq!(still.metadata.finalizers, ["obol.org/offer"]);
    store
        .patch_status::<ServiceOfferSpec>("default", "g", &ServiceOfferStatus::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .remove_finalizer(&still, "obol.org/offer")
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(get(store.as_ref(), "default", "g").await.is_none());

    // Finalizers added after creation hold the object too.
    let (plain, _) = store.apply(&offer("default", "later", "1")).await.unwrap();
    store.add_finalizer(&plain, "obol.org/offer").await.unwrap();
    assert_eq!(
        store
            .delete("ServiceOffer", "default", "later")
            .await
            .unwrap(),
        DeleteOutcome::Marked
    );
    assert_eq!(
        store
            .set_finalizers("ServiceOffer", "default", "later", vec![])
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );

    store.apply(&offer("default", "plain", "1")).await.unwrap();
    assert_eq!(
        store
            .delete("ServiceOffer", "default", "plain")
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(get(store.as_ref(), "default", "plain").await.is_none());
    assert_eq!(
        store
            .delete("ServiceOffer", "default", "plain")
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
    let error = store
        .set_finalizers("ServiceOffer", "default", "plain", vec![])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
}

async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the watch is open")
}

/// Watchers see Added, Modified (spec, status, deletion mark) and Deleted, in order, and
/// nothing for a write that changed nothing.
pub async fn watchers_see_every_change_in_order(store: Arc<dyn Store>) {
    let mut events = store.watch();
    store.apply(&offer("default", "w", "1")).await.unwrap();
    store.apply(&offer("default", "w", "1")).await.unwrap(); // unchanged: no event
    store.apply(&offer("default", "w", "2")).await.unwrap();
    let status = ServiceOfferStatus {
        endpoint: Some("/services/w".into()),
        ..Default::default()
    };
    store
        .patch_status::<ServiceOfferSpec>("default", "w", &status)
        .await
        .unwrap();
    store.delete("ServiceOffer", "default", "w").await.unwrap();
    let mut guarded = offer("other", "f", "1");
    guarded.metadata.finalizers = vec!["obol.org/offer".into()];
    store.apply(&guarded).await.unwrap();
    store.delete("ServiceOffer", "other", "f").await.unwrap();
    store
        .set_finalizers("ServiceOffer", "other", "f", vec![])
        .await
        .unwrap();
    let expected = [
        Event::Added(key("default", "w")),
        Event::Modified(key("default", "w")),
        Event::Modified(key("default", "w")),
        Event::Deleted(key("default", "w")),
        Event::Added(key("other", "f")),
        Event::Modified(key("other", "f")),
        Event::Deleted(key("other", "f")),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&next_event(&mut events).await, want, "event {i}");
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(extra.is_err(), "nothing else: {extra:?}");
}

/// 20 writers creating distinct offers and 20 racing on one with distinct specs: every
/// object kept, every spec change counted once.
pub async fn concurrent_applies_keep_every_object_and_one_history(store: Arc<dyn Store>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            let name = if i % 2 == 0 {
                format!("o{i}")
            } else {
                "shared".to_owned()
            };
            store
                .apply(&offer("default", &name, &format!("0.{}", i + 1)))
                .await
                .unwrap();
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let all = store.list::<ServiceOfferSpec>(None).await.unwrap();
    assert_eq!(all.len(), 21);
    let shared = all.iter().find(|o| o.metadata.name == "shared").unwrap();
    assert_eq!(
        shared.metadata.generation, 20,
        "every racing spec change counted once"
    );
    let names: Vec<&str> = all.iter().map(|o| o.metadata.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "listed in namespace/name order");
}

/// Purchases and identities are stored, read and status-patched like offers.
pub async fn every_kind_round_trips(store: Arc<dyn Store>) {
    let purchase = PurchaseRequest::new(
        "agent",
        "buy-llm",
        PurchaseRequestSpec {
            endpoint: "https://seller.example/services/llm".into(),
            model: "qwen3".into(),
            count: 5,
            pre_signed_auths: Vec::new(),
            auto_refill: None,
            payment: PurchasePayment {
                network: "eip155:84532".into(),
                pay_to: "0x1".into(),
                price: "1000".into(),
                asset: "0x2".into(),
                ..PurchasePayment::default()
            },
        },
    );
    store.apply(&purchase).await.unwrap();
    let mut identity = AgentIdentity::new(
        DEFAULT_IDENTITY.0,
        DEFAULT_IDENTITY.1,
        AgentIdentitySpec::default(),
    );
    store.apply(&identity).await.unwrap();
    identity.status.upsert("base-sepolia", "42").unwrap();
    store
        .patch_status::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1, &identity.status)
        .await
        .unwrap();
    let stored = store
        .get::<PurchaseRequestSpec>("agent", "buy-llm")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec, purchase.spec);
    assert_eq!(stored.kind, "PurchaseRequest");
    let stored = store
        .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.agent_id("base-sepolia"), Some("42"));
    assert_eq!(
        store.list::<AgentIdentitySpec>(None).await.unwrap().len(),
        1
    );
    assert!(
        store
            .list::<ServiceOfferSpec>(None)
            .await
            .unwrap()
            .is_empty()
    );
}
