//! Store semantics: generations, status, finalizers, watch, concurrency, reopening.

use std::sync::Arc;

use obol_control::offer::OfferType;
use obol_control::store::{ApplyOutcome, DeleteOutcome, Event};
use obol_control::{ConditionStatus, ServiceOffer, ServiceOfferSpec, SqliteStore, Store, StoreExt};

pub(crate) fn offer(name: &str, price: &str) -> ServiceOffer {
    ServiceOffer::new(
        "default",
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

#[tokio::test]
async fn apply_bumps_generation_only_on_spec_changes() {
    let store = SqliteStore::in_memory().unwrap();
    let (created, outcome) = store.apply(&offer("a", "0.001")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Created);
    assert_eq!(created.metadata.generation, 1);
    assert!(created.metadata.creation_timestamp.ends_with('Z'));
    let (same, outcome) = store.apply(&offer("a", "0.001")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert_eq!(
        same.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut labelled = offer("a", "0.001");
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

    let (updated, outcome) = store.apply(&offer("a", "0.002")).await.unwrap();
    assert_eq!(outcome, ApplyOutcome::Updated);
    assert_eq!(updated.metadata.generation, 2);
    assert!(updated.metadata.resource_version > relabelled.metadata.resource_version);

    // Status writes leave the generation alone.
    let mut status = updated.status.clone();
    status.observed_generation = 2;
    obol_control::resource::set_condition(
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
    assert_eq!(patched.metadata.generation, 2);
    assert_eq!(patched.status, status);
    let fetched = store
        .get::<ServiceOfferSpec>("default", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched, patched);
}

#[tokio::test]
async fn delete_honours_finalizers() {
    let store = SqliteStore::in_memory().unwrap();
    let mut guarded = offer("g", "1");
    guarded.metadata.finalizers = vec!["obol.org/offer".into()];
    store.apply(&guarded).await.unwrap();
    assert_eq!(
        store.delete("ServiceOffer", "default", "g").await.unwrap(),
        DeleteOutcome::Marked
    );
    let deleting = store
        .get::<ServiceOfferSpec>("default", "g")
        .await
        .unwrap()
        .unwrap();
    assert!(deleting.metadata.is_deleting());
    let err = store.apply(&guarded).await.unwrap_err();
    assert!(err.to_string().contains("is being deleted"), "{err}");
    assert_eq!(
        store.delete("ServiceOffer", "default", "g").await.unwrap(),
        DeleteOutcome::Marked,
        "idempotent"
    );
    assert_eq!(
        store
            .set_finalizers("ServiceOffer", "default", "g", vec![])
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(
        store
            .get::<ServiceOfferSpec>("default", "g")
            .await
            .unwrap()
            .is_none()
    );

    store.apply(&offer("plain", "1")).await.unwrap();
    assert_eq!(
        store
            .delete("ServiceOffer", "default", "plain")
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        store
            .delete("ServiceOffer", "default", "plain")
            .await
            .unwrap(),
        DeleteOutcome::NotFound
    );
}

#[tokio::test]
async fn watchers_see_every_change() {
    let store = SqliteStore::in_memory().unwrap();
    let mut events = store.watch();
    store.apply(&offer("w", "1")).await.unwrap();
    store.apply(&offer("w", "1")).await.unwrap(); // unchanged: no event
    store.apply(&offer("w", "2")).await.unwrap();
    store.delete("ServiceOffer", "default", "w").await.unwrap();
    let kinds: Vec<&str> = (0..3)
        .map(|_| match events.try_recv().unwrap() {
            Event::Added(_) => "added",
            Event::Modified(_) => "modified",
            Event::Deleted(_) => "deleted",
        })
        .collect();
    assert_eq!(kinds, ["added", "modified", "deleted"]);
    assert!(events.try_recv().is_err(), "nothing else");
}

#[tokio::test]
async fn concurrent_applies_keep_every_object_and_one_history() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            // 20 distinct offers, and 20 writers racing on one offer with distinct prices.
            let name = if i % 2 == 0 {
                format!("o{i}")
            } else {
                "shared".to_owned()
            };
            store
                .apply(&offer(&name, &format!("0.{}", i + 1)))
                .await
                .unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}
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

#[tokio::test]
async fn reopening_after_a_crash_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/store.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.apply(&offer("kept", "1")).await.unwrap();
        let status = obol_control::ServiceOfferStatus {
            endpoint: Some("/services/kept".into()),
            ..Default::default()
        };
        store
            .patch_status::<ServiceOfferSpec>("default", "kept", &status)
            .await
            .unwrap();
        // Dropped without any shutdown: the WAL is all there is.
        std::mem::forget(store);
    }
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.schema_version().unwrap(), 1);
    let kept = reopened
        .get::<ServiceOfferSpec>("default", "kept")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.status.endpoint.as_deref(), Some("/services/kept"));
    // Versions keep increasing after a reopen.
    let (again, _) = reopened.apply(&offer("kept", "2")).await.unwrap();
    assert!(again.metadata.resource_version > kept.metadata.resource_version);
}

#[tokio::test]
#[cfg(unix)]
async fn the_store_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = SqliteStore::open(&data.join("store.sqlite")).unwrap();
    store.apply(&offer("private", "1")).await.unwrap();
    let mode = |name: &str| {
        let meta = std::fs::metadata(data.join(name)).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for file in ["store.sqlite", "store.sqlite-wal", "store.sqlite-shm"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_corrupt_object_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    store.apply(&offer("good", "1")).await.unwrap();
    store.apply(&offer("bad", "1")).await.unwrap();
    drop(store);
    let db = rusqlite_connection(&path);
    db.execute(
        "UPDATE objects SET spec = '{\"nonsense\":true}' WHERE name = 'bad'",
        [],
    )
    .unwrap();
    drop(db);
    let store = SqliteStore::open(&path).unwrap();
    let listed = store.list::<ServiceOfferSpec>(None).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|o| o.metadata.name.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    let err = store
        .get::<ServiceOfferSpec>("default", "bad")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("stored ServiceOffer default/bad is not valid"),
        "{err}"
    );
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn every_kind_round_trips_through_the_store() {
    use obol_control::identity::{AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY};
    use obol_control::purchase::{PurchasePayment, PurchaseRequest, PurchaseRequestSpec};
    let store = SqliteStore::in_memory().unwrap();
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
        .patch_status::<AgentIdentitySpec>("x402", "default", &identity.status)
        .await
        .unwrap();
    assert_eq!(
        store
            .get::<PurchaseRequestSpec>("agent", "buy-llm")
            .await
            .unwrap()
            .unwrap()
            .spec,
        purchase.spec
    );
    let stored = store
        .get::<AgentIdentitySpec>("x402", "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.agent_id("base-sepolia"), Some("42"));
    assert!(
        store
            .list::<ServiceOfferSpec>(None)
            .await
            .unwrap()
            .is_empty(),
        "kinds are separate"
    );
}

#[tokio::test]
async fn an_update_read_at_an_older_generation_is_refused() {
    let store = SqliteStore::in_memory().unwrap();
    let (first, _) = store.apply(&offer("c", "0.001")).await.unwrap();
    // Two writers read generation 1; the first one's change lands.
    let mut mine = first.clone();
    mine.spec.payment.price.per_request = Some("0.002".into());
    let (stored, _) = store.apply(&mine).await.unwrap();
    assert_eq!(stored.metadata.generation, 2);
    let mut theirs = first;
    theirs.spec.payment.price.per_request = Some("0.003".into());
    let error = store.apply(&theirs).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("ServiceOffer default/c changed since it was read (now generation 2, the update was based on 1)"),
        "{error}"
    );
    // Read again: it applies; a plain upsert (generation 0) always does.
    let mut again = store
        .get::<ServiceOfferSpec>("default", "c")
        .await
        .unwrap()
        .unwrap();
    again.spec.payment.price.per_request = Some("0.003".into());
    assert_eq!(store.apply(&again).await.unwrap().0.metadata.generation, 3);
    assert_eq!(
        store
            .apply(&offer("c", "0.004"))
            .await
            .unwrap()
            .0
            .metadata
            .generation,
        4
    );

    // Read, then deleted: the update does not bring it back.
    let read = store
        .get::<ServiceOfferSpec>("default", "c")
        .await
        .unwrap()
        .unwrap();
    store.delete("ServiceOffer", "default", "c").await.unwrap();
    assert!(matches!(
        store.apply(&read).await,
        Err(obol_control::StoreError::NotFound { .. })
    ));
    // Recreated since (generation 1 again, another creation time): still refused.
    let (recreated, _) = store.apply(&offer("c", "0.001")).await.unwrap();
    let mut stale = recreated.clone();
    stale.metadata.creation_timestamp = "2000-01-01T00:00:00Z".into();
    assert!(matches!(
        store.apply(&stale).await,
        Err(obol_control::StoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn a_create_only_apply_refuses_an_existing_object() {
    use obol_control::store::ApplyMode;
    let store = SqliteStore::in_memory().unwrap();
    let (created, outcome) = store
        .apply_with(&offer("once", "0.001"), ApplyMode::CreateOnly)
        .await
        .unwrap();
    assert_eq!(
        (outcome, created.metadata.generation),
        (ApplyOutcome::Created, 1)
    );
    let error = store
        .apply_with(&offer("once", "0.002"), ApplyMode::CreateOnly)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "ServiceOffer default/once already exists"
    );
    let kept = store
        .get::<ServiceOfferSpec>("default", "once")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.spec.payment.price.per_request.as_deref(),
        Some("0.001")
    );
}
