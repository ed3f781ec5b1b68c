//! The API server's built-in kinds on the in-memory server, besides the custom resources:
//! Leases ([`super::leases`]) and core/v1 Services, Secrets and ConfigMaps, as the operator
//! reads them and the CLI writes them.
//!
//! Services, Secrets and ConfigMaps: `GET` (one object, or the namespace's list), `POST` (`409
//! AlreadyExists`), `PUT` (a `metadata.resourceVersion` other than the stored one → `409
//! Conflict`), `DELETE` (`404 NotFound` when absent). The server writes `apiVersion`,
//! `kind`, `metadata.namespace`, `uid`, `resourceVersion` and `creationTimestamp`, and folds a
//! Secret's `stringData` into its base64 `data`, as the API server does. Not modelled: watches,
//! selectors, Endpoints, a Service's cluster IP.

use k8s_openapi::ByteString;
use obol_control::resource::now_rfc3339;
use serde_json::{Map, Value, json};

use super::{Answer, Db, InMemoryApi, RecordedRequest, leases, status};

/// The core/v1 kinds kept, by plural.
const KINDS: [(&str, &str); 3] = [
    ("services", "Service"),
    ("secrets", "Secret"),
    ("configmaps", "ConfigMap"),
];

/// `(plural, namespace, name)`; `name` empty for the collection.
type CoreKey = (String, String, String);

/// Answers a request for a built-in kind: a Lease, a Service, a Secret or a ConfigMap; anything else is
/// `404`.
pub(super) fn handle(db: &mut Db, request: &RecordedRequest, body: &Value) -> Answer {
    if let Some(lease) = leases::target(&request.path) {
        return leases::handle(db, lease, request, body);
    }
    let Some(key) = target(&request.path) else {
        return Err(status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ));
    };
    match (request.method.as_str(), key.2.is_empty()) {
        _ if request.is_watch() => Err(status(
            405,
            "MethodNotAllowed",
            "watching core/v1 objects is not modelled",
            None,
        )),
        ("GET", true) => Ok((200, list(db, &key))),
        ("GET", false) => db
            .core
            .get(&key)
            .cloned()
            .map(|object| (200, object))
            .ok_or_else(|| not_found(&key)),
        ("POST", true) => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let key = (key.0, key.1, name.to_owned());
            if name.is_empty() {
                return Err(status(
                    422,
                    "Invalid",
                    "metadata.name: Required value",
                    None,
                ));
            }
            if db.core.contains_key(&key) {
                let message = format!("{} \"{}\" already exists", key.0, key.2);
                return Err(status(409, "AlreadyExists", message, None));
            }
            Ok((201, write(db, &key, body.clone())))
        }
        ("PUT", false) if db.core.contains_key(&key) => {
            // A replace read at another version is refused, as for the custom resources.
            let given = body["metadata"]["resourceVersion"].as_str();
            let stored = db.core[&key]["metadata"]["resourceVersion"].as_str();
            if given.is_some_and(|given| Some(given) != stored) {
                let message = format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified",
                    key.0, key.2
                );
                return Err(status(409, "Conflict", message, None));
            }
            Ok((200, write(db, &key, body.clone())))
        }
        ("PUT", false) => Err(not_found(&key)),
        ("DELETE", false) => match db.core.remove(&key) {
            Some(_) => Ok((
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            )),
            None => Err(not_found(&key)),
        },
        (method, _) => Err(status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {} here", key.0),
            None,
        )),
    }
}

/// `/api/v1/namespaces/{namespace}/{services|secrets|configmaps}[/{name}]`.
fn target(path: &str) -> Option<CoreKey> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (namespace, plural, name) = match parts.as_slice() {
        [namespace, plural] => (*namespace, *plural, ""),
        [namespace, plural, name] => (*namespace, *plural, *name),
        _ => return None,
    };
    KINDS
        .iter()
        .any(|(p, _)| *p == plural)
        .then(|| (plural.to_owned(), namespace.to_owned(), name.to_owned()))
}

fn kind(plural: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(p, _)| *p == plural)
        .map_or("Unknown", |(_, k)| *k)
}

fn not_found(key: &CoreKey) -> super::Failure {
    status(
        404,
        "NotFound",
        format!("{} \"{}\" not found", key.0, key.2),
        None,
    )
}

fn list(db: &Db, key: &CoreKey) -> Value {
    let items: Vec<&Value> = db
        .core
        .iter()
        .filter(|((plural, namespace, _), _)| *plural == key.0 && *namespace == key.1)
        .map(|(_, object)| object)
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": format!("{}List", kind(&key.0)),
        "metadata": {"resourceVersion": db.version.to_string()},
        "items": items,
    })
}

/// Stores `object` as `key`, with the fields the server writes; the stored object.
fn write(db: &mut Db, key: &CoreKey, mut object: Value) -> Value {
    if !object.is_object() {
        object = json!({});
    }
    db.version += 1;
    let created = db.core.get(key).map_or_else(now_rfc3339, |old| {
        old["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    object["apiVersion"] = json!("v1");
    object["kind"] = json!(kind(&key.0));
    let mut meta = object["metadata"].as_object().cloned().unwrap_or_default();
    meta.insert("name".into(), json!(key.2));
    meta.insert("namespace".into(), json!(key.1));
    meta.insert("uid".into(), json!(format!("core-{}", db.version)));
    meta.insert("resourceVersion".into(), json!(db.version.to_string()));
    meta.insert("creationTimestamp".into(), json!(created));
    object["metadata"] = Value::Object(meta);
    if let Some(Value::Object(plain)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        for (k, v) in plain {
            let bytes = ByteString(v.as_str().unwrap_or_default().as_bytes().to_vec());
            object["data"][k] = serde_json::to_value(bytes).unwrap_or_default();
        }
    }
    db.core.insert(key.clone(), object.clone());
    object
}

impl InMemoryApi {
    fn put_core(&self, plural: &str, namespace: &str, name: &str, object: Value) {
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        write(&mut self.shared.db(), &key, object);
    }

    /// Creates or replaces the `ClusterIP` Service `namespace/name` with `ports`.
    pub fn put_service(&self, namespace: &str, name: &str, ports: &[u16]) {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| json!({"port": p, "protocol": "TCP"}))
            .collect();
        self.put_core(
            "services",
            namespace,
            name,
            json!({"spec": {"type": "ClusterIP", "ports": ports}}),
        );
    }

    /// Creates or replaces the `Opaque` Secret `namespace/name` with `data` (plain text,
    /// stored base64 as the API server does).
    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let plain: Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.put_core(
            "secrets",
            namespace,
            name,
            json!({"type": "Opaque", "stringData": plain}),
        );
    }

    /// Creates or replaces the ConfigMap `namespace/name` with `data`.
    pub fn put_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data: Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.put_core("configmaps", namespace, name, json!({"data": data}));
    }

    /// Deletes Service `namespace/name`, if there is one.
    pub fn delete_service(&self, namespace: &str, name: &str) {
        let key = ("services".to_owned(), namespace.to_owned(), name.to_owned());
        self.shared.db().core.remove(&key);
    }

    /// The stored core/v1 object (`services`, `secrets` or `configmaps`), as the API would
    /// return it.
    pub fn core_object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        self.shared.db().core.get(&key).cloned()
    }
}
