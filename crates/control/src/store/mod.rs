//! The `Store`: where resources live. The embedded implementation is [`SqliteStore`]; a
//! Kubernetes implementation follows the same contract.
//!
//! The trait works on raw objects (kind + metadata + JSON spec and status) so it stays
//! object-safe; [`StoreExt`] adds typed helpers for any [`Spec`].

#[cfg(feature = "testing")]
pub mod conformance;
mod sqlite;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::broadcast;

pub use sqlite::{SCHEMA_VERSION as SQLITE_SCHEMA_VERSION, SqliteStore};

use crate::resource::{API_VERSION, Object, ObjectMeta, Spec};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The object is being deleted and cannot be changed.
    #[error("{kind} {namespace}/{name} is being deleted")]
    Deleting {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A create-only apply found the object already there.
    #[error("{kind} {namespace}/{name} already exists")]
    Exists {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The spec changed since the update was read (optimistic concurrency on `generation`).
    #[error(
        "{kind} {namespace}/{name} changed since it was read (now generation {stored}, the update was based on {based_on}); read it again and retry"
    )]
    Conflict {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The generation the update was read at.
        based_on: i64,
        /// The stored generation.
        stored: i64,
    },
    /// A stored document does not match its type.
    #[error("stored {kind} {namespace}/{name} is not valid: {message}")]
    Corrupt {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The decoder's message.
        message: String,
    },
    /// The database failed.
    #[error("store: {0}")]
    Backend(String),
}

/// A resource as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawObject {
    /// Kind.
    pub kind: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec (JSON).
    pub spec: Value,
    /// Status (JSON; `null` when none was written).
    pub status: Value,
}

impl RawObject {
    /// The object's identity.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind.clone(),
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
        }
    }
}

/// `(kind, namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// A new object.
    Created,
    /// The spec, labels or annotations changed.
    Updated,
    /// Nothing changed.
    Unchanged,
}

/// How an apply treats an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Create or update.
    Upsert,
    /// Create only: an existing object is refused (two creators racing: one wins, the other
    /// learns it and can read and merge).
    CreateOnly,
}

/// A change seen by watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Created.
    Added(ObjectKey),
    /// Spec, status, finalizers or deletion timestamp changed.
    Modified(ObjectKey),
    /// Gone.
    Deleted(ObjectKey),
}

impl Event {
    /// The object it is about.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Self::Added(k) | Self::Modified(k) | Self::Deleted(k) => k,
        }
    }
}

/// What `delete` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed.
    Deleted,
    /// Finalizers pending: marked with a deletion timestamp.
    Marked,
    /// There was nothing to delete.
    NotFound,
}

/// Persistent resources with Kubernetes-like semantics (see `docs/design/control-plane.md`).
#[async_trait]
pub trait Store: Send + Sync {
    /// One object.
    async fn get_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RawObject>, StoreError>;

    /// Objects of a kind, in one namespace or all, ordered by namespace then name.
    async fn list_raw(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<RawObject>, StoreError>;

    /// Creates or updates spec, labels and annotations; bumps `generation` when the spec
    /// changes. New objects get `finalizers` as given; existing ones keep theirs. An update
    /// carrying a `generation` (read earlier) other than the stored one is refused with
    /// [`StoreError::Conflict`]; generation 0 means "whatever is stored" (a plain upsert).
    async fn apply_raw(&self, object: RawObject) -> Result<(RawObject, ApplyOutcome), StoreError> {
        self.apply_raw_with(object, ApplyMode::Upsert).await
    }

    /// [`Store::apply_raw`], or with [`ApplyMode::CreateOnly`] a create that refuses an
    /// existing object with [`StoreError::Exists`].
    async fn apply_raw_with(
        &self,
        object: RawObject,
        mode: ApplyMode,
    ) -> Result<(RawObject, ApplyOutcome), StoreError>;

    /// Replaces the status.
    async fn patch_status_raw(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<RawObject, StoreError>;

    /// Replaces the finalizers; removing the last one of a deleting object removes it.
    async fn set_finalizers(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        finalizers: Vec<String>,
    ) -> Result<DeleteOutcome, StoreError>;

    /// Deletes, or marks for deletion while finalizers remain.
    async fn delete(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<DeleteOutcome, StoreError>;

    /// A stream of changes from now on.
    fn watch(&self) -> broadcast::Receiver<Event>;
}

fn decode<S: Spec>(raw: RawObject) -> Result<Object<S>, StoreError> {
    let RawObject {
        kind,
        metadata,
        spec,
        status,
    } = raw;
    // Moved, not cloned: a purchase's spec can carry thousands of authorizations.
    let corrupt = |message: String| StoreError::Corrupt {
        kind: kind.clone(),
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone(),
        message,
    };
    let spec: S = serde_json::from_value(spec).map_err(|e| corrupt(e.to_string()))?;
    let status: S::Status = if status.is_null() {
        S::Status::default()
    } else {
        serde_json::from_value(status).map_err(|e| corrupt(e.to_string()))?
    };
    Ok(Object {
        api_version: API_VERSION.to_owned(),
        kind,
        metadata,
        spec,
        status,
    })
}

fn encode<S: Spec>(object: &Object<S>) -> Result<RawObject, StoreError> {
    Ok(RawObject {
        kind: S::KIND.to_owned(),
        metadata: object.metadata.clone(),
        spec: serde_json::to_value(&object.spec).map_err(|e| StoreError::Backend(e.to_string()))?,
        status: serde_json::to_value(&object.status)
            .map_err(|e| StoreError::Backend(e.to_string()))?,
    })
}

/// Typed access for any [`Spec`].
#[async_trait]
pub trait StoreExt: Store {
    /// One object.
    async fn get<S: Spec>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object<S>>, StoreError> {
        self.get_raw(S::KIND, namespace, name)
            .await?
            .map(decode)
            .transpose()
    }

    /// Objects of a kind; undecodable ones are reported and skipped.
    async fn list<S: Spec>(&self, namespace: Option<&str>) -> Result<Vec<Object<S>>, StoreError> {
        let raws = self.list_raw(S::KIND, namespace).await?;
        Ok(raws
            .into_iter()
            .filter_map(|raw| match decode(raw) {
                Ok(object) => Some(object),
                Err(error) => {
                    tracing::error!(%error, "skipping a stored object that does not decode");
                    None
                }
            })
            .collect())
    }

    /// Creates or updates.
    async fn apply<S: Spec>(
        &self,
        object: &Object<S>,
    ) -> Result<(Object<S>, ApplyOutcome), StoreError> {
        self.apply_with(object, ApplyMode::Upsert).await
    }

    /// Creates or updates, or (with [`ApplyMode::CreateOnly`]) only creates.
    async fn apply_with<S: Spec>(
        &self,
        object: &Object<S>,
        mode: ApplyMode,
    ) -> Result<(Object<S>, ApplyOutcome), StoreError> {
        let (raw, outcome) = self.apply_raw_with(encode(object)?, mode).await?;
        Ok((decode(raw)?, outcome))
    }

    /// Replaces the status.
    async fn patch_status<S: Spec>(
        &self,
        namespace: &str,
        name: &str,
        status: &S::Status,
    ) -> Result<Object<S>, StoreError> {
        let value = serde_json::to_value(status).map_err(|e| StoreError::Backend(e.to_string()))?;
        decode(
            self.patch_status_raw(S::KIND, namespace, name, value)
                .await?,
        )
    }

    /// Adds `finalizer` to `object` unless it is there.
    async fn add_finalizer<S: Spec>(
        &self,
        object: &Object<S>,
        finalizer: &str,
    ) -> Result<(), StoreError> {
        let meta = &object.metadata;
        if meta.finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let mut finalizers = meta.finalizers.clone();
        finalizers.push(finalizer.to_owned());
        self.set_finalizers(S::KIND, &meta.namespace, &meta.name, finalizers)
            .await
            .map(drop)
    }

    /// Removes `finalizer` from `object`; a deleting object whose last finalizer it was goes.
    async fn remove_finalizer<S: Spec>(
        &self,
        object: &Object<S>,
        finalizer: &str,
    ) -> Result<DeleteOutcome, StoreError> {
        let meta = &object.metadata;
        let remaining = meta
            .finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        self.set_finalizers(S::KIND, &meta.namespace, &meta.name, remaining)
            .await
    }
}

impl<T: Store + ?Sized> StoreExt for T {}
