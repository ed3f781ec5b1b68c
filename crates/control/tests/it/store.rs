//! Store semantics: the conformance suite on SQLite (`obol_control::store::conformance`, run
//! on Kubernetes too by obol-kube), and what only the SQLite file has: reopening, file
//! modes, corrupt rows.

use std::sync::Arc;

use obol_control::{ServiceOffer, ServiceOfferSpec, SqliteStore, Store, StoreExt};

/// An HTTP offer in `default`.
pub(crate) fn offer(name: &str, price: &str) -> ServiceOffer {
    obol_control::store::conformance::offer("default", name, price)
}

/// A fresh in-memory SQLite store (the suites' setup).
pub(crate) async fn sqlite() -> (Arc<dyn Store>, ()) {
    (Arc::new(SqliteStore::in_memory().unwrap()), ())
}

mod conformance {
    obol_control::store_conformance!(super::sqlite);
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
    let files = ["store.sqlite", "store.sqlite-wal", "store.sqlite-shm"];
    obol_testkit::fs::assert_private(&data, &files);
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
