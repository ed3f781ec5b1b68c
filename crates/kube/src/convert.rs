//! Our objects ↔ Kubernetes objects, and the API's errors ↔ [`StoreError`].

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::core::GroupVersionKind;
use kube::core::ObjectMeta as KubeMeta;
use obol_control::crd::{GROUP, VERSION};
use obol_control::resource::ObjectMeta;
use obol_control::store::{RawObject, StoreError};
use serde_json::{Map, Value};

/// The API resource of `kind` (`obol.org/v1alpha1`, its plural), or a backend error naming
/// a kind the CRDs do not define.
pub(crate) fn api_resource(kind: &str) -> Result<ApiResource, StoreError> {
    let plural = obol_control::crd::plural(kind).ok_or_else(|| {
        StoreError::Backend(format!(
            "kind {kind} has no Kubernetes custom resource (known: ServiceOffer, PurchaseRequest, AgentIdentity)"
        ))
    })?;
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, kind),
        plural,
    ))
}

/// The identity of an object an operation is about (for errors).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) kind: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

impl Target<'_> {
    pub(crate) fn not_found(&self) -> StoreError {
        StoreError::NotFound {
            kind: self.kind.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    pub(crate) fn exists(&self) -> StoreError {
        StoreError::Exists {
            kind: self.kind.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    pub(crate) fn deleting(&self) -> StoreError {
        StoreError::Deleting {
            kind: self.kind.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
        }
    }

    pub(crate) fn conflict(&self, based_on: i64, stored: i64) -> StoreError {
        StoreError::Conflict {
            kind: self.kind.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            based_on,
            stored,
        }
    }

    /// Any other failure of `operation`: the API's status (code, reason, message) or the
    /// transport's error, as a backend error naming the object.
    pub(crate) fn backend(&self, operation: &str, error: &kube::Error) -> StoreError {
        let what = format!(
            "Kubernetes API: {operation} {} {}/{}",
            self.kind, self.namespace, self.name
        );
        StoreError::Backend(describe(&what, error))
    }
}

/// `what: <the error>`, with the API's code, reason and message when it answered.
pub(crate) fn describe(what: &str, error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "{what}: HTTP {} {}: {}",
            status.code, status.reason, status.message
        ),
        other => format!("{what}: the API server could not be reached or answered badly: {other}"),
    }
}

/// The API's status code and reason when the error is an answer of the API server.
pub(crate) fn api_status(error: &kube::Error) -> Option<(u16, &str)> {
    match error {
        kube::Error::Api(status) => Some((status.code, status.reason.as_str())),
        _ => None,
    }
}

pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|(code, _)| code == 404)
}

pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|(code, reason)| code == 409 && reason != "AlreadyExists")
}

pub(crate) fn is_already_exists(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|(code, reason)| code == 409 && reason == "AlreadyExists")
}

/// A resource version as our `i64`: the API's are opaque strings, in practice etcd's
/// revision (decimal); anything else reads as 0.
pub(crate) fn resource_version(text: Option<&str>) -> i64 {
    text.and_then(|t| t.parse().ok()).unwrap_or(0)
}

fn time(value: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    let value = serde_json::to_value(value?).ok()?;
    value.as_str().map(str::to_owned)
}

fn non_empty<K: Ord + Clone, V: Clone>(map: &BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!map.is_empty()).then(|| map.clone())
}

/// The Kubernetes object for a new `object` (status left out: the API ignores it on create).
pub(crate) fn to_kube(object: &RawObject, resource: &ApiResource) -> DynamicObject {
    let meta = &object.metadata;
    let mut data = Map::new();
    data.insert("spec".to_owned(), object.spec.clone());
    DynamicObject {
        types: Some(TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        }),
        metadata: KubeMeta {
            name: Some(meta.name.clone()),
            namespace: Some(meta.namespace.clone()),
            labels: non_empty(&meta.labels),
            annotations: non_empty(&meta.annotations),
            finalizers: (!meta.finalizers.is_empty()).then(|| meta.finalizers.clone()),
            ..KubeMeta::default()
        },
        data: Value::Object(data),
    }
}

/// `current` with the spec, labels and annotations of `object` (everything else kept, its
/// resource version included: the update is conditional on it).
pub(crate) fn updated(mut current: DynamicObject, object: &RawObject) -> DynamicObject {
    let meta = &object.metadata;
    current.metadata.labels = non_empty(&meta.labels);
    current.metadata.annotations = non_empty(&meta.annotations);
    if let Value::Object(data) = &mut current.data {
        data.insert("spec".to_owned(), object.spec.clone());
    } else {
        let mut data = Map::new();
        data.insert("spec".to_owned(), object.spec.clone());
        current.data = Value::Object(data);
    }
    current
}

/// Our object from the API's.
pub(crate) fn from_kube(kind: &str, object: &DynamicObject) -> RawObject {
    let meta = &object.metadata;
    RawObject {
        kind: kind.to_owned(),
        metadata: ObjectMeta {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or(0),
            resource_version: resource_version(meta.resource_version.as_deref()),
            creation_timestamp: time(meta.creation_timestamp.as_ref()).unwrap_or_default(),
            deletion_timestamp: time(meta.deletion_timestamp.as_ref()),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
        },
        spec: object.data.get("spec").cloned().unwrap_or(Value::Null),
        status: object.data.get("status").cloned().unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_round_trips_through_the_api_form() {
        let api: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "obol.org/v1alpha1",
            "kind": "ServiceOffer",
            "metadata": {
                "name": "a", "namespace": "ns", "generation": 3, "resourceVersion": "42",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "deletionTimestamp": "2026-01-02T03:04:06Z",
                "finalizers": ["obol.org/offer"], "labels": {"l": "1"},
                "annotations": {"a": "2"}, "uid": "u-1",
            },
            "spec": {"x": 1},
            "status": {"y": 2},
        }))
        .unwrap();
        let raw = from_kube("ServiceOffer", &api);
        assert_eq!(raw.metadata.generation, 3);
        assert_eq!(raw.metadata.resource_version, 42);
        assert_eq!(raw.metadata.creation_timestamp, "2026-01-02T03:04:05Z");
        assert_eq!(
            raw.metadata.deletion_timestamp.as_deref(),
            Some("2026-01-02T03:04:06Z")
        );
        assert_eq!(raw.metadata.finalizers, ["obol.org/offer"]);
        assert_eq!(raw.metadata.labels["l"], "1");
        assert_eq!(raw.metadata.annotations["a"], "2");
        assert_eq!(
            (raw.spec.clone(), raw.status.clone()),
            (json!({"x": 1}), json!({"y": 2}))
        );

        let resource = api_resource("ServiceOffer").unwrap();
        let back = serde_json::to_value(to_kube(&raw, &resource)).unwrap();
        assert_eq!(back["apiVersion"], "obol.org/v1alpha1");
        assert_eq!(back["metadata"]["finalizers"], json!(["obol.org/offer"]));
        assert_eq!(back["spec"], json!({"x": 1}));
        assert!(back.get("status").is_none(), "status is not sent on create");
        assert!(back["metadata"].get("resourceVersion").is_none());

        let mut changed = raw;
        changed.metadata.labels.clear();
        changed.spec = json!({"x": 2});
        let update = serde_json::to_value(updated(api, &changed)).unwrap();
        assert_eq!(
            update["metadata"]["resourceVersion"], "42",
            "conditional on the read"
        );
        assert_eq!(update["metadata"]["uid"], "u-1", "unknown metadata kept");
        assert!(update["metadata"].get("labels").is_none());
        assert_eq!(update["spec"], json!({"x": 2}));
    }

    #[test]
    fn unknown_kinds_and_versions() {
        assert_eq!(
            api_resource("ServiceOffer").unwrap().plural,
            "serviceoffers"
        );
        let error = api_resource("Pod").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("kind Pod has no Kubernetes custom resource")
        );
        assert_eq!(resource_version(Some("abc")), 0);
        assert_eq!(resource_version(None), 0);
    }
}
