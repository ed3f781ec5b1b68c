//! The admin operations on one kind, over any [`Store`]: what `GET/PUT/DELETE
//! /v1/<plural>/…` do on the daemon, and what [`AdminClient`](super::AdminClient) does itself
//! when the stack's resources live in a cluster (docs/design/kubernetes.md, slice 5). One
//! implementation, so the daemon and the cluster refuse and store alike.

use obol_control::store::{ApplyMode, ApplyOutcome, DeleteOutcome};
use obol_control::{Object, Store, StoreExt};
use obol_gateway::guard::ReplayGuard;
use serde_json::json;

use super::{AdminError, AdminKind, Applied};

/// Every object of a kind, with what the guard knows live added (`guard`: the daemon's).
pub(crate) async fn list<S: AdminKind>(
    store: &dyn Store,
    guard: Option<&ReplayGuard>,
) -> Result<Vec<Object<S>>, AdminError> {
    let mut objects = store
        .list::<S>(None)
        .await
        .map_err(|e| AdminError::store(&e))?;
    if let Some(guard) = guard {
        for object in &mut objects {
            S::decorate(object, guard).await;
        }
    }
    Ok(objects)
}

/// One object (404 when there is none).
pub(crate) async fn get<S: AdminKind>(
    store: &dyn Store,
    guard: Option<&ReplayGuard>,
    namespace: &str,
    name: &str,
) -> Result<Object<S>, AdminError> {
    let mut object = store
        .get::<S>(namespace, name)
        .await
        .map_err(|e| AdminError::store(&e))?
        .ok_or_else(|| AdminError::not_found(S::KIND, namespace, name))?;
    if let Some(guard) = guard {
        S::decorate(&mut object, guard).await;
    }
    Ok(object)
}

/// Validates and stores `object` (`CreateOnly`: 409 `AlreadyExists` when it is there); a kind
/// whose status the CLI records ([`AdminKind::PUT_WRITES_STATUS`]) has its status written too.
pub(crate) async fn put<S: AdminKind>(
    store: &dyn Store,
    object: &Object<S>,
    mode: ApplyMode,
) -> Result<Applied<S>, AdminError> {
    S::validate(object).map_err(|invalid| AdminError::new(422, invalid.to_string()))?;
    let (stored, outcome) = match store.apply_with(object, mode).await {
        Ok((stored, outcome)) if S::PUT_WRITES_STATUS && stored.status != object.status => {
            let stored = store
                .patch_status::<S>(
                    &stored.metadata.namespace,
                    &stored.metadata.name,
                    &object.status,
                )
                .await
                .map_err(|e| AdminError::store(&e))?;
            let outcome = match outcome {
                ApplyOutcome::Unchanged => ApplyOutcome::Updated,
                other => other,
            };
            (stored, outcome)
        }
        other => other.map_err(|e| AdminError::store(&e))?,
    };
    let outcome = match outcome {
        ApplyOutcome::Created => "created",
        ApplyOutcome::Updated => "updated",
        ApplyOutcome::Unchanged => "unchanged",
    };
    Ok(Applied {
        outcome: outcome.to_owned(),
        object: stored,
    })
}

/// Deletes an object: `{deleted, pending}` (pending: finalizers run first), 404 when absent.
pub(crate) async fn delete<S: AdminKind>(
    store: &dyn Store,
    namespace: &str,
    name: &str,
) -> Result<serde_json::Value, AdminError> {
    match store
        .delete(S::KIND, namespace, name)
        .await
        .map_err(|e| AdminError::store(&e))?
    {
        DeleteOutcome::NotFound => Err(AdminError::not_found(S::KIND, namespace, name)),
        outcome => Ok(json!({
            "deleted": outcome == DeleteOutcome::Deleted,
            "pending": outcome == DeleteOutcome::Marked,
        })),
    }
}
