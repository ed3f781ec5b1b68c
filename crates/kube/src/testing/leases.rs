//! `coordination.k8s.io/v1` Leases on the in-memory API server, as leader election uses them
//! (the operator's `kube-lease-manager`): `GET`, `POST` (`409 AlreadyExists`), and `PATCH` with
//! server-side apply (`application/apply-patch+yaml`) or a strategic merge patch.
//!
//! Server-side apply is what makes two candidates unable to lock one lease: a field set by one
//! field manager and applied with another value by a second one is a `409 Conflict` (unless
//! forced). The stand-in models that ownership for the field leader election races on,
//! `spec.holderIdentity`: its owner is the manager that last set it; clearing it (a release)
//! frees it. Other fields merge without conflicts.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Answer, Db, RecordedRequest, status};

/// The lease API's path prefix.
const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

/// A stored lease and who owns its holder.
#[derive(Debug, Clone, Default)]
pub(super) struct Lease {
    object: Value,
    holder_owner: Option<String>,
}

/// `(namespace, name)`; `name` empty for the collection.
pub(super) fn target(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [namespace, "leases"] => Some(((*namespace).to_owned(), String::new())),
        [namespace, "leases", name] => Some(((*namespace).to_owned(), (*name).to_owned())),
        _ => None,
    }
}

fn conflict(message: String) -> super::Failure {
    status(409, "Conflict", message, None)
}

/// Merges `patch` into `into` (JSON merge semantics: `null` removes).
fn merge(into: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match (into.get_mut(key), value) {
            (_, Value::Null) => {
                into.remove(key);
            }
            (Some(Value::Object(existing)), Value::Object(update)) => merge(existing, update),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Answers a lease request.
pub(super) fn handle(
    db: &mut Db,
    (namespace, name): (String, String),
    request: &RecordedRequest,
    body: &Value,
) -> Answer {
    let key = (namespace.clone(), name.clone());
    let missing = || {
        status(
            404,
            "NotFound",
            format!("leases \"{name}\" not found"),
            None,
        )
    };
    match request.method.as_str() {
        "GET" => db
            .leases
            .get(&key)
            .map(|l| (200, l.object.clone()))
            .ok_or_else(missing),
        "POST" => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let key = (namespace.clone(), name.clone());
            if db.leases.contains_key(&key) {
                return Err(status(
                    409,
                    "AlreadyExists",
                    format!("leases \"{name}\" already exists"),
                    None,
                ));
            }
            let mut object = body.clone();
            db.version += 1;
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(db.version.to_string());
            let holder_owner = object["spec"]["holderIdentity"]
                .as_str()
                .and(request.field_manager.clone());
            db.leases.insert(
                key,
                Lease {
                    object: object.clone(),
                    holder_owner,
                },
            );
            Ok((201, object))
        }
        "PATCH" => {
            let lease = db.leases.get_mut(&key).ok_or_else(missing)?;
            let apply = request
                .content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/apply-patch"));
            let manager = request.field_manager.clone().unwrap_or_default();
            let forced = request.query.get("force").is_some_and(|f| f == "true");
            let spec = body["spec"].as_object().cloned().unwrap_or_default();
            let current = lease.object["spec"]["holderIdentity"].clone();
            if let Some(holder) = spec.get("holderIdentity") {
                let owned_by_other = lease
                    .holder_owner
                    .as_ref()
                    .is_some_and(|owner| *owner != manager);
                if apply && !forced && owned_by_other && !current.is_null() && *holder != current {
                    return Err(conflict(format!(
                        "Apply failed with 1 conflict: conflict with \"{}\": .spec.holderIdentity",
                        lease.holder_owner.clone().unwrap_or_default()
                    )));
                }
                lease.holder_owner = (!holder.is_null()).then_some(manager);
            }
            let object = lease.object.as_object_mut().ok_or_else(missing)?;
            let mut patch = BTreeMap::new();
            patch.insert("spec".to_owned(), Value::Object(spec));
            merge(object, &patch.into_iter().collect());
            db.version += 1;
            let version = db.version.to_string();
            let lease = db.leases.get_mut(&key).ok_or_else(missing)?;
            lease.object["metadata"]["resourceVersion"] = json!(version);
            Ok((200, lease.object.clone()))
        }
        other => Err(status(
            405,
            "MethodNotAllowed",
            format!("{other} is not supported on leases here"),
            None,
        )),
    }
}
