//! The HTTP calls the store makes: paths, methods, the `status` subresource, patch types,
//! `fieldManager=obol`; conflicts retried; errors mapped.

use std::collections::BTreeSet;
use std::time::Duration;

use obol_control::store::conformance::offer;
use obol_control::store::{ApplyMode, ApplyOutcome, DeleteOutcome, Event, ObjectKey};
use obol_control::{ServiceOfferSpec, ServiceOfferStatus, Store, StoreError, StoreExt};
use obol_kube::KubeStore;
use obol_kube::testing::{InMemoryApi, RecordedRequest};

use crate::kube_store_typed;

const OFFERS: &str = "/apis/obol.org/v1alpha1/namespaces/default/serviceoffers";

/// The non-watch requests since the last call, as `(METHOD path, fieldManager, content type)`.
fn calls(api: &InMemoryApi) -> Vec<(String, Option<String>, Option<String>)> {
    let calls = api
        .requests()
        .into_iter()
        .filter(|r| !r.is_watch())
        .map(|r: RecordedRequest| (r.line(), r.field_manager, r.content_type))
        .collect();
    api.clear_requests();
    calls
}

fn call(
    line: &str,
    manager: Option<&str>,
    content_type: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (
        line.to_owned(),
        manager.map(str::to_owned),
        content_type.map(str::to_owned),
    )
}

const JSON: Option<&str> = Some("application/json");
const OBOL: Option<&str> = Some("obol");

#[tokio::test]
async fn each_operation_is_the_expected_http_call() {
    let (store, api) = kube_store_typed().await;
    api.clear_requests();

    store.apply(&offer("default", "a", "0.001")).await.unwrap();
    assert_eq!(
        calls(&api),
        [
            call(&format!("GET {OFFERS}/a"), None, None),
            call(&format!("POST {OFFERS}"), OBOL, JSON),
        ]
    );
    assert_eq!(
        store
            .apply(&offer("default", "a", "0.001"))
            .await
            .unwrap()
            .1,
        ApplyOutcome::Unchanged
    );
    assert_eq!(
        calls(&api),
        [call(&format!("GET {OFFERS}/a"), None, None)],
        "nothing written"
    );
    store.apply(&offer("default", "a", "0.002")).await.unwrap();
    assert_eq!(
        calls(&api),
        [
            call(&format!("GET {OFFERS}/a"), None, None),
            call(&format!("PUT {OFFERS}/a"), OBOL, JSON),
        ]
    );
    let status = ServiceOfferStatus {
        endpoint: Some("/services/a".into()),
        ..Default::default()
    };
    store
        .patch_status::<ServiceOfferSpec>("default", "a", &status)
        .await
        .unwrap();
    assert_eq!(
        calls(&api),
        [call(
            &format!("PATCH {OFFERS}/a/status"),
            OBOL,
            Some("application/json-patch+json")
        )]
    );
    store
        .set_finalizers(
            "ServiceOffer",
            "default",
            "a",
            vec!["obol.org/offer".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        calls(&api),
        [call(
            &format!("PATCH {OFFERS}/a"),
            OBOL,
            Some("application/merge-patch+json")
        )]
    );
    assert_eq!(
        store.delete("ServiceOffer", "default", "a").await.unwrap(),
        DeleteOutcome::Marked
    );
    assert_eq!(
        calls(&api),
        [call(&format!("DELETE {OFFERS}/a"), None, JSON)]
    );
    store.get::<ServiceOfferSpec>("default", "a").await.unwrap();
    store.list::<ServiceOfferSpec>(None).await.unwrap();
    store
        .list::<ServiceOfferSpec>(Some("default"))
        .await
        .unwrap();
    assert_eq!(
        calls(&api),
        [
            call(&format!("GET {OFFERS}/a"), None, None),
            call("GET /apis/obol.org/v1alpha1/serviceoffers", None, None),
            call(&format!("GET {OFFERS}"), None, None),
        ]
    );
    // Create-only: one POST, no read.
    let error = store
        .apply_with(&offer("default", "a", "1"), ApplyMode::CreateOnly)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Exists { .. }), "{error}");
    assert_eq!(calls(&api), [call(&format!("POST {OFFERS}"), OBOL, JSON)]);
    // Other kinds, other plurals.
    store.delete("PurchaseRequest", "agent", "p").await.unwrap();
    store
        .get_raw("AgentIdentity", "x402", "default")
        .await
        .unwrap();
    assert_eq!(
        calls(&api),
        [
            call(
                "DELETE /apis/obol.org/v1alpha1/namespaces/agent/purchaserequests/p",
                None,
                JSON
            ),
            call(
                "GET /apis/obol.org/v1alpha1/namespaces/x402/agentidentities/default",
                None,
                None
            ),
        ]
    );
}

#[tokio::test]
async fn the_server_keeps_a_kubernetes_object() {
    let (store, api) = kube_store_typed().await;
    let mut labelled = offer("default", "k", "0.5");
    labelled
        .metadata
        .labels
        .insert("tier".into(), "gold".into());
    store.apply(&labelled).await.unwrap();
    let status = ServiceOfferStatus {
        observed_generation: 1,
        ..Default::default()
    };
    store
        .patch_status::<ServiceOfferSpec>("default", "k", &status)
        .await
        .unwrap();
    let object = api.object("serviceoffers", "default", "k").unwrap();
    assert_eq!(object["apiVersion"], "obol.org/v1alpha1");
    assert_eq!(object["kind"], "ServiceOffer");
    assert_eq!(object["metadata"]["labels"]["tier"], "gold");
    assert_eq!(object["metadata"]["generation"], 1);
    assert!(object["metadata"]["uid"].is_string());
    assert_eq!(
        object["spec"],
        serde_json::to_value(&labelled.spec).unwrap()
    );
    assert_eq!(object["status"], serde_json::to_value(&status).unwrap());
}

#[tokio::test]
async fn a_write_conflicting_with_a_concurrent_one_is_read_again_and_retried() {
    let (store, api) = kube_store_typed().await;
    let (first, _) = store.apply(&offer("default", "r", "1")).await.unwrap();
    api.clear_requests();
    // A writer got in between our read and our write (a status write: the generation
    // holds, so even a pinned update goes through after a re-read).
    api.fail_next("PUT", 409);
    let mut pinned = first.clone();
    pinned.spec.payment.price.per_request = Some("2".into());
    let (written, outcome) = store.apply(&pinned).await.unwrap();
    assert_eq!(
        (outcome, written.metadata.generation),
        (ApplyOutcome::Updated, 2)
    );
    let lines: Vec<String> = calls(&api).into_iter().map(|c| c.0).collect();
    assert_eq!(
        lines,
        [
            format!("GET {OFFERS}/r"),
            format!("PUT {OFFERS}/r"),
            format!("GET {OFFERS}/r"),
            format!("PUT {OFFERS}/r"),
        ]
    );
    // Pinned to generation 1, now 2: refused without a write.
    let error = store.apply(&first).await.unwrap_err().to_string();
    assert!(
        error.contains("(now generation 2, the update was based on 1)"),
        "{error}"
    );
    assert_eq!(calls(&api).len(), 1, "only the read");
}

#[tokio::test]
async fn api_and_transport_failures_are_backend_errors() {
    let (store, api) = kube_store_typed().await;
    api.fail_next("GET", 500);
    let error = store
        .get_raw("ServiceOffer", "default", "x")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("get ServiceOffer default/x: HTTP 500 InternalError"),
        "{error}"
    );
    api.fail_next("PATCH", 500);
    let error = store
        .patch_status_raw("ServiceOffer", "default", "x", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("patch status of ServiceOffer default/x"),
        "{error}"
    );
    let error = store.list_raw("Pod", None).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("kind Pod has no Kubernetes custom resource"),
        "{error}"
    );

    // No server at all.
    let url = api.url();
    drop(store);
    drop(api);
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(20), KubeStore::new(client))
        .await
        .expect("fails fast")
        .unwrap_err();
    assert!(
        error.to_string().contains("could not be reached"),
        "{error}"
    );
}

async fn next(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_watch_lists_again_when_its_version_expires() {
    let (store, api) = kube_store_typed().await;
    let mut events = store.watch();
    store.apply(&offer("default", "a", "1")).await.unwrap();
    assert!(matches!(next(&mut events).await, Event::Added(_)));
    api.clear_requests();
    api.expire_watches();
    store.apply(&offer("default", "b", "1")).await.unwrap();
    store.apply(&offer("default", "a", "2")).await.unwrap();
    store.delete("ServiceOffer", "default", "b").await.unwrap();
    store.apply(&offer("default", "c", "1")).await.unwrap();
    let key = |name: &str| ObjectKey {
        kind: "ServiceOffer".into(),
        namespace: "default".into(),
        name: name.into(),
    };
    // Seen live or found by the new list: a changed, c added; b (added and gone while the
    // watch was down) at most as a pair.
    let mut seen = BTreeSet::new();
    let wanted = [Event::Modified(key("a")), Event::Added(key("c"))];
    while !wanted.iter().all(|w| seen.contains(&format!("{w:?}"))) {
        seen.insert(format!("{:?}", next(&mut events).await));
    }
    let relisted = api
        .requests()
        .iter()
        .any(|r| !r.is_watch() && r.line() == "GET /apis/obol.org/v1alpha1/serviceoffers");
    assert!(relisted, "listed again: {:?}", api.requests());
    // And the watch goes on.
    store.apply(&offer("default", "d", "1")).await.unwrap();
    loop {
        if next(&mut events).await == Event::Added(key("d")) {
            break;
        }
    }
}
