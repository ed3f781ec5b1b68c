//! The in-memory API server behaves as the real one where the store depends on it.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use obol_kube::testing::InMemoryApi;
use serde_json::json;

fn offers(api: &InMemoryApi) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("obol.org", "v1alpha1", "ServiceOffer"),
        "serviceoffers",
    );
    Api::namespaced_with(api.client().unwrap(), "default", &resource)
}

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

fn code_and_reason(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn spec_and_status_are_written_through_their_own_endpoints() {
    let api = InMemoryApi::start().await.unwrap();
    let offers = offers(&api);
    let pp = PostParams::default();
    let created = offers
        .create(
            &pp,
            &object(json!({
                "apiVersion": "obol.org/v1alpha1", "kind": "ServiceOffer",
                "metadata": {"name": "s", "generation": 7, "resourceVersion": "99"},
                "spec": {"x": 1}, "status": {"ignored": true},
            })),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is not created with the object"
    );
    let again = offers.create(&pp, &created).await.unwrap_err();
    assert_eq!(code_and_reason(again), (409, "AlreadyExists".into()));

    // The main resource ignores status; the status subresource ignores spec.
    let mut replaced = created.clone();
    replaced.data["status"] = json!({"s": 1});
    let same = offers.replace("s", &pp, &replaced).await.unwrap();
    assert_eq!(
        same.metadata.resource_version, created.metadata.resource_version,
        "no change"
    );
    let patched = offers
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"x": 2}, "status": {"s": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"], json!({"x": 1}));
    assert_eq!(patched.data["status"], json!({"s": 1}));
    assert_eq!(patched.metadata.generation, Some(1));
    let respecced = offers
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"x": 2}, "status": {"s": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(respecced.metadata.generation, Some(2));
    assert_eq!(respecced.data["status"], json!({"s": 1}));

    // A stale resourceVersion is a conflict; an unsupported patch type is refused.
    let stale = offers.replace("s", &pp, &created).await.unwrap_err();
    assert_eq!(code_and_reason(stale), (409, "Conflict".into()));
    let strategic = offers
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        code_and_reason(strategic),
        (415, "UnsupportedMediaType".into())
    );
    let missing = offers.get("nothing").await.unwrap_err();
    assert_eq!(code_and_reason(missing), (404, "NotFound".into()));
}

#[tokio::test]
async fn deletion_waits_for_finalizers_and_takes_none_new() {
    let api = InMemoryApi::start().await.unwrap();
    let offers = offers(&api);
    offers
        .create(
            &PostParams::default(),
            &object(json!({
                "apiVersion": "obol.org/v1alpha1", "kind": "ServiceOffer",
                "metadata": {"name": "f", "finalizers": ["a"]}, "spec": {},
            })),
        )
        .await
        .unwrap();
    let marked = offers
        .delete("f", &Default::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.generation,
        Some(2),
        "marking bumps the generation"
    );
    let more = offers
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["a", "b"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code_and_reason(more), (422, "Invalid".into()));
    offers
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": []}})),
        )
        .await
        .unwrap();
    assert!(
        offers.get_opt("f").await.unwrap().is_none(),
        "gone with its last finalizer"
    );
    assert!(api.object("serviceoffers", "default", "f").is_none());
}
