//! The Kubernetes backend of the resource store: [`KubeStore`] implements
//! [`obol_control::Store`] over the `obol.org/v1alpha1` custom resources (`ServiceOffer`,
//! `PurchaseRequest`, `AgentIdentity`) with kube-rs, with the semantics of the embedded
//! `SqliteStore` (docs/design/control-plane.md, "Store semantics"; the mapping is in
//! docs/design/kubernetes.md, "Kubernetes store").
//!
//! | trait | API |
//! | --- | --- |
//! | `get_raw`, `list_raw` | `GET` one object / the collection (one namespace or all), sorted by namespace then name |
//! | `apply_raw_with` Upsert | `GET`, then `POST` (absent) or `PUT` with the read `resourceVersion`; a `409 Conflict` from a concurrent writer re-reads and retries, re-checking a pinned generation |
//! | `apply_raw_with` CreateOnly | `POST`; `409 AlreadyExists` → [`StoreError::Exists`] |
//! | `patch_status_raw` | JSON patch `add /status` on the `status` subresource: the status replaced in one request |
//! | `set_finalizers` | merge patch of `metadata.finalizers` |
//! | `delete` | `DELETE`: the object back with a deletion timestamp → `Marked`, else `Deleted`; `404` → `NotFound` |
//! | `watch` | one list + watch per kind (all namespaces), re-listed when the watch expires |
//!
//! Every write names the field manager [`FIELD_MANAGER`].
//!
//! For the offer reconciler in a cluster: [`KubeServices`] (a Service upstream's Service,
//! `GET` core/v1 `services/{name}`: absent → `MissingService`) and [`KubeSecrets`] (an
//! upstream credential's Secret, `GET` core/v1 `secrets/{name}` in the offer's namespace).
//!
//! With the `testing` feature, [`testing::InMemoryApi`] is an in-memory API server for these
//! resources (and Leases, Services, Secrets).

mod cluster;
mod convert;
#[cfg(feature = "testing")]
pub mod testing;
mod watch;

use async_trait::async_trait;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use obol_control::store::{
    ApplyMode, ApplyOutcome, DeleteOutcome, Event, RawObject, Store, StoreError,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use cluster::{KubeSecrets, KubeServices};
use convert::{Target, api_resource, from_kube, is_already_exists, is_conflict, is_not_found};

/// The field manager of every write (`?fieldManager=obol`).
pub const FIELD_MANAGER: &str = "obol";

/// How often an upsert re-reads and retries after `409 Conflict` from concurrent writers.
const MAX_ATTEMPTS: usize = 64;

/// The resource store on a Kubernetes API server.
pub struct KubeStore {
    client: Client,
    events: broadcast::Sender<Event>,
    /// The watch tasks; aborted when the store is dropped.
    _watches: watch::Watches,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("default_namespace", &self.client.default_namespace())
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store on `client`'s cluster. Lists every kind once (all namespaces) and starts
    /// watching it, so [`Store::watch`] reports every change made after this returns. Fails
    /// when a kind cannot be listed (the CRDs not installed, no permission).
    pub async fn new(client: Client) -> Result<Self, StoreError> {
        let (events, _) = broadcast::channel(1024);
        let watches = watch::Watches::start(&client, &events).await?;
        Ok(Self {
            client,
            events,
            _watches: watches,
        })
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, kind: &str, namespace: Option<&str>) -> Result<Api<DynamicObject>, StoreError> {
        let resource = api_resource(kind)?;
        Ok(match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// The object's identity (for errors) and its namespace's API.
    fn at<'a>(
        &self,
        kind: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> Result<(Target<'a>, Api<DynamicObject>), StoreError> {
        let target = Target {
            kind,
            namespace,
            name,
        };
        Ok((target, self.api(kind, Some(namespace))?))
    }

    async fn read(
        &self,
        api: &Api<DynamicObject>,
        target: Target<'_>,
    ) -> Result<Option<DynamicObject>, StoreError> {
        api.get_opt(target.name)
            .await
            .map_err(|e| target.backend("get", &e))
    }

    /// `POST`: the new object, or `Ok(None)` when it already exists.
    async fn create(
        &self,
        api: &Api<DynamicObject>,
        object: &RawObject,
        target: Target<'_>,
    ) -> Result<Option<RawObject>, StoreError> {
        let resource = api_resource(&object.kind)?;
        let body = convert::to_kube(object, &resource);
        match api.create(&post_params(), &body).await {
            Ok(created) => Ok(Some(from_kube(&object.kind, &created))),
            Err(e) if is_already_exists(&e) => Ok(None),
            Err(e) => Err(target.backend("create", &e)),
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

#[async_trait]
impl Store for KubeStore {
    async fn get_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RawObject>, StoreError> {
        let (target, api) = self.at(kind, namespace, name)?;
        Ok(self
            .read(&api, target)
            .await?
            .map(|object| from_kube(kind, &object)))
    }

    async fn list_raw(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<RawObject>, StoreError> {
        let api = self.api(kind, namespace)?;
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            StoreError::Backend(convert::describe(
                &format!(
                    "Kubernetes API: list {kind} in {}",
                    namespace.unwrap_or("all namespaces")
                ),
                &e,
            ))
        })?;
        let mut objects: Vec<RawObject> = list.items.iter().map(|o| from_kube(kind, o)).collect();
        // The API lists in storage-key order (namespace, name) already; sorted here too, so
        // the order holds for any server.
        objects.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        Ok(objects)
    }

    async fn apply_raw_with(
        &self,
        object: RawObject,
        mode: ApplyMode,
    ) -> Result<(RawObject, ApplyOutcome), StoreError> {
        let meta = &object.metadata;
        let target = Target {
            kind: &object.kind,
            namespace: &meta.namespace,
            name: &meta.name,
        };
        let api = self.api(&object.kind, Some(&meta.namespace))?;
        if mode == ApplyMode::CreateOnly {
            return match self.create(&api, &object, target).await? {
                Some(created) => Ok((created, ApplyOutcome::Created)),
                None => Err(target.exists()),
            };
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = self.read(&api, target).await? else {
                // Read earlier, gone since (deleted): not brought back.
                if meta.generation > 0 {
                    return Err(target.not_found());
                }
                match self.create(&api, &object, target).await? {
                    Some(created) => return Ok((created, ApplyOutcome::Created)),
                    // Created by someone else meanwhile: update theirs.
                    None => continue,
                }
            };
            let stored = from_kube(&object.kind, &current);
            if stored.metadata.is_deleting() {
                return Err(target.deleting());
            }
            // Read at another generation, or from an object since deleted and recreated
            // (another creation time): refused.
            if meta.generation > 0
                && (meta.generation != stored.metadata.generation
                    || (!meta.creation_timestamp.is_empty()
                        && meta.creation_timestamp != stored.metadata.creation_timestamp))
            {
                return Err(target.conflict(meta.generation, stored.metadata.generation));
            }
            if stored.spec == object.spec
                && stored.metadata.labels == meta.labels
                && stored.metadata.annotations == meta.annotations
            {
                return Ok((stored, ApplyOutcome::Unchanged));
            }
            let body = convert::updated(current, &object);
            match api.replace(&meta.name, &post_params(), &body).await {
                Ok(written) => {
                    let written = from_kube(&object.kind, &written);
                    // The server made no change (its defaults made the specs equal).
                    let outcome =
                        if written.metadata.resource_version == stored.metadata.resource_version {
                            ApplyOutcome::Unchanged
                        } else {
                            ApplyOutcome::Updated
                        };
                    return Ok((written, outcome));
                }
                // A concurrent write (spec, status or metadata) since the read, or a delete:
                // read again; a pinned generation is checked against the new read.
                Err(e) if is_conflict(&e) || is_not_found(&e) => continue,
                Err(e) => return Err(target.backend("update", &e)),
            }
        }
        Err(StoreError::Backend(format!(
            "Kubernetes API: update {} {}/{}: still conflicting with concurrent writers after {MAX_ATTEMPTS} attempts",
            object.kind, meta.namespace, meta.name
        )))
    }

    async fn patch_status_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<RawObject, StoreError> {
        let (target, api) = self.at(kind, namespace, name)?;
        // `add` replaces an existing member (RFC 6902 §4.1): the whole status in one request,
        // whether or not the object had one.
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/status", "value": status}]))
                .map_err(|e| StoreError::Backend(format!("status patch: {e}")))?;
        match api
            .patch_status(name, &patch_params(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(written) => Ok(from_kube(kind, &written)),
            Err(e) if is_not_found(&e) => Err(target.not_found()),
            Err(e) => Err(target.backend("patch status of", &e)),
        }
    }

    async fn set_finalizers(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        finalizers: Vec<String>,
    ) -> Result<DeleteOutcome, StoreError> {
        let (target, api) = self.at(kind, namespace, name)?;
        let patch = json!({"metadata": {"finalizers": finalizers}});
        match api
            .patch(name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            // The server removes a deleting object with its last finalizer (and answers with
            // it as it was last).
            Ok(written) => {
                let written = from_kube(kind, &written);
                Ok(
                    if written.metadata.is_deleting() && written.metadata.finalizers.is_empty() {
                        DeleteOutcome::Deleted
                    } else {
                        DeleteOutcome::Marked
                    },
                )
            }
            Err(e) if is_not_found(&e) => Err(target.not_found()),
            Err(e) => Err(target.backend("set finalizers of", &e)),
        }
    }

    async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<DeleteOutcome, StoreError> {
        let (target, api) = self.at(kind, namespace, name)?;
        match api.delete(name, &DeleteParams::default()).await {
            // The object back: still there while it has finalizers (some servers answer
            // an immediate delete with the object too).
            Ok(answer) => Ok(match answer.left() {
                Some(object)
                    if object
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| !f.is_empty()) =>
                {
                    DeleteOutcome::Marked
                }
                _ => DeleteOutcome::Deleted,
            }),
            Err(e) if is_not_found(&e) => Ok(DeleteOutcome::NotFound),
            Err(e) => Err(target.backend("delete", &e)),
        }
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
