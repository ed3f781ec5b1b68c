//! An in-memory Kubernetes API server for the `obol.org/v1alpha1` custom resources, on
//! loopback (axum), standing in for a cluster in tests: no cluster runs on these machines.
//!
//! What it does as the real API server does for a CRD with the `status` subresource:
//!
//! - `GET`/`LIST` (one namespace or all; list `resourceVersion`), `POST` (`409
//!   AlreadyExists`), `PUT` (a `metadata.resourceVersion` other than the stored one → `409
//!   Conflict`), `PATCH` (`application/merge-patch+json` and `application/json-patch+json`;
//!   strategic merge and server-side apply → `415`), `DELETE`;
//! - the main resource ignores status changes, the `status` subresource everything but the
//!   status; `metadata.generation` starts at 1 and goes up when the spec changes, and when a
//!   deletion is first requested on an object with finalizers; a write that changes nothing
//!   keeps the resource version and sends no event;
//! - `DELETE` with finalizers sets `deletionTimestamp`; the write that removes the last
//!   finalizer of a deleting object removes it; no finalizer may be added while deleting;
//! - `?watch=true` streams `ADDED`/`MODIFIED`/`DELETED` events (one JSON document a line)
//!   from the given `resourceVersion`; an expired version gets an `ERROR` event with `410
//!   Expired`, as do open watches on [`InMemoryApi::expire_watches`];
//! - errors are `Status` documents (`reason` `NotFound`, `AlreadyExists`, `Conflict`,
//!   `Invalid`, …, and `code`).
//!
//! It also keeps `coordination.k8s.io/v1` Leases, with server-side apply's conflict on the lease
//! holder, for leader election ([`leases`]), and core/v1 Services, Secrets and ConfigMaps ([`core_v1`]).
//!
//! Not modelled: schema validation, defaulting and pruning, server-side apply, label and
//! field selectors, pagination, admission, authentication.
//!
//! Every request is recorded ([`InMemoryApi::requests`]) so tests can assert the exact HTTP
//! calls; [`InMemoryApi::fail_next`] answers the next request with an error.

#![allow(clippy::missing_panics_doc)]

mod core_v1;
mod leases;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use obol_control::crd::{GROUP, KINDS, VERSION};
use obol_control::resource::now_rfc3339;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// One HTTP request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// `fieldManager`, when given.
    pub field_manager: Option<String>,
    /// The `Content-Type` header, when given.
    pub content_type: Option<String>,
}

impl RecordedRequest {
    /// `METHOD path`, e.g. `PATCH /apis/obol.org/v1alpha1/namespaces/default/serviceoffers/a/status`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// True for a `?watch=true` request.
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

/// `(plural, namespace, name)`.
type Key = (String, String, String);

#[derive(Debug, Clone)]
struct Change {
    version: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

impl Change {
    fn line(&self) -> Bytes {
        event_line(self.kind, &self.object)
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

#[derive(Debug, Default)]
struct Db {
    version: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Versions up to this one are no longer in `history`.
    compacted_to: u64,
    requests: Vec<RecordedRequest>,
    failures: VecDeque<(String, u16)>,
    /// `coordination.k8s.io/v1` Leases by `(namespace, name)` ([`leases`]).
    leases: BTreeMap<(String, String), leases::Lease>,
    /// core/v1 Services, Secrets and ConfigMaps by `(plural, namespace, name)` ([`core_v1`]).
    core: BTreeMap<Key, Value>,
}

#[derive(Debug)]
struct Shared {
    db: Mutex<Db>,
    changes: broadcast::Sender<Change>,
    expire: watch::Sender<u64>,
}

impl Shared {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server; stopped when dropped.
#[derive(Debug)]
pub struct InMemoryApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for InMemoryApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InMemoryApi {
    /// Starts a server on `127.0.0.1`, port chosen by the system.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            db: Mutex::new(Db::default()),
            changes: broadcast::channel(4096).0,
            expire: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "in-memory Kubernetes API stopped");
            }
        });
        Ok(Self {
            address,
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kube client for this server (default namespace `default`).
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let uri = self
            .url()
            .parse()
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        kube::Client::try_from(kube::Config::new(uri))
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.db().requests.clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.shared.db().requests.clear();
    }

    /// The stored object, as the API would return it.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        self.shared.db().objects.get(&key).cloned()
    }

    /// The next `method` request (other than a watch) is answered with `code` and a
    /// `Status` (reason as the API server gives for that code), without being carried out.
    pub fn fail_next(&self, method: &str, code: u16) {
        self.shared
            .db()
            .failures
            .push_back((method.to_owned(), code));
    }

    /// Drops the event history (every version so far is too old to watch from) and ends
    /// every open watch with `410 Expired`, as an etcd compaction does.
    pub fn expire_watches(&self) {
        let mut db = self.shared.db();
        db.history.clear();
        db.compacted_to = db.version;
        drop(db);
        self.shared.expire.send_modify(|epoch| *epoch += 1);
    }
}

/// An error answer: a `Status` document with its HTTP code.
#[derive(Debug)]
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
    key: Option<Key>,
}

fn status(
    code: u16,
    reason: &'static str,
    message: impl Into<String>,
    key: Option<&Key>,
) -> Failure {
    Failure {
        code,
        reason,
        message: message.into(),
        key: key.cloned(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((plural, _, name)) = &self.key {
            body["details"] = json!({"name": name, "group": GROUP, "kind": plural});
        }
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(body)).into_response()
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn resource_name(key: &Key) -> String {
    format!("{}.{GROUP} \"{}\"", key.0, key.2)
}

fn not_found(key: &Key) -> Failure {
    status(
        404,
        "NotFound",
        format!("{} not found", resource_name(key)),
        Some(key),
    )
}

/// What a path addresses.
enum Target {
    Collection {
        plural: String,
        namespace: Option<String>,
    },
    Object {
        key: Key,
        status: bool,
    },
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["apis", group, version, rest @ ..] if *group == GROUP && *version == VERSION => rest,
        _ => return None,
    };
    let known = |plural: &str| KINDS.iter().any(|(_, p)| *p == plural);
    let target = match rest {
        [plural] => Target::Collection {
            plural: (*plural).to_owned(),
            namespace: None,
        },
        ["namespaces", namespace, plural] => Target::Collection {
            plural: (*plural).to_owned(),
            namespace: Some((*namespace).to_owned()),
        },
        ["namespaces", namespace, plural, name] => Target::Object {
            key: (
                (*plural).to_owned(),
                (*namespace).to_owned(),
                (*name).to_owned(),
            ),
            status: false,
        },
        ["namespaces", namespace, plural, name, "status"] => Target::Object {
            key: (
                (*plural).to_owned(),
                (*namespace).to_owned(),
                (*name).to_owned(),
            ),
            status: true,
        },
        _ => return None,
    };
    let plural = match &target {
        Target::Collection { plural, .. }
        | Target::Object {
            key: (plural, _, _),
            ..
        } => plural,
    };
    known(plural).then_some(target)
}

fn kind_of(plural: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(_, p)| *p == plural)
        .map_or("Unknown", |(k, _)| *k)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        field_manager: query.get("fieldManager").cloned(),
        query,
        content_type,
    };
    let watching = request.is_watch();
    let mut db = shared.db();
    db.requests.push(request.clone());
    if !watching
        && let Some(at) = db.failures.iter().position(|(m, _)| *m == request.method)
        && let Some((_, code)) = db.failures.remove(at)
    {
        return status(code, reason_for(code), "injected failure", None).into_response();
    }
    let Some(target) = parse_path(uri.path()) else {
        let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        return answer(core_v1::handle(&mut db, &request, &body));
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => value,
            Err(e) => {
                return status(
                    400,
                    "BadRequest",
                    format!("the body is not JSON: {e}"),
                    None,
                )
                .into_response();
            }
        }
    };
    let result = match (target, method) {
        (Target::Collection { plural, namespace }, Method::GET) if watching => {
            let version = request
                .query
                .get("resourceVersion")
                .cloned()
                .unwrap_or_default();
            let timeout = request
                .query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800);
            return open_watch(&shared, &mut db, plural, namespace, &version, timeout);
        }
        (Target::Collection { plural, namespace }, Method::GET) => {
            Ok((200, list(&db, &plural, namespace.as_deref())))
        }
        (
            Target::Collection {
                plural,
                namespace: Some(namespace),
            },
            Method::POST,
        ) => create(&mut db, &shared, plural, namespace, body),
        (Target::Object { key, .. }, Method::GET) => db
            .objects
            .get(&key)
            .cloned()
            .map(|o| (200, o))
            .ok_or_else(|| not_found(&key)),
        (Target::Object { key, status }, Method::PUT) => {
            update(&mut db, &shared, &key, body, status)
        }
        (Target::Object { key, status }, Method::PATCH) => patch(
            &mut db,
            &shared,
            &key,
            &body,
            status,
            request.content_type.as_deref(),
        ),
        (Target::Object { key, status: false }, Method::DELETE) => delete(&mut db, &shared, &key),
        (_, method) => Err(status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
            None,
        )),
    };
    answer(result)
}

fn answer(result: Answer) -> Response {
    match result {
        Ok((code, value)) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            (code, axum::Json(value)).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

fn list(db: &Db, plural: &str, namespace: Option<&str>) -> Value {
    let items: Vec<&Value> = db
        .objects
        .iter()
        .filter(|((p, ns, _), _)| p == plural && namespace.is_none_or(|n| n == ns))
        .map(|(_, object)| object)
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": format!("{}List", kind_of(plural)),
        "metadata": {"resourceVersion": db.version.to_string()},
        "items": items,
    })
}

fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        // Made an object just above.
        _ => unreachable!("metadata is an object"),
    }
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object)?.get(field)?.as_str()
}

fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default()
}

/// Empty labels, annotations and finalizers are absent, as the API server writes them.
fn normalize(object: &mut Value) {
    let meta = meta_mut(object);
    for field in ["labels", "annotations", "finalizers"] {
        let empty = match meta.get(field) {
            Some(Value::Object(map)) => map.is_empty(),
            Some(Value::Array(list)) => list.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

/// Fields only the server writes.
const SERVER_FIELDS: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

type Answer = Result<(u16, Value), Failure>;

fn record(db: &mut Db, shared: &Shared, kind: &'static str, key: &Key, object: &Value) {
    let change = Change {
        version: db.version,
        key: key.clone(),
        kind,
        object: object.clone(),
    };
    db.history.push(change.clone());
    // No open watch is fine.
    let _ = shared.changes.send(change);
}

fn next_version(db: &mut Db, object: &mut Value) {
    db.version += 1;
    meta_mut(object).insert("resourceVersion".into(), json!(db.version.to_string()));
}

fn create(db: &mut Db, shared: &Shared, plural: String, namespace: String, body: Value) -> Answer {
    let Some(name) = meta_str(&body, "name")
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
    else {
        return Err(status(
            422,
            "Invalid",
            "metadata.name: Required value: name is required",
            None,
        ));
    };
    let key = (plural, namespace, name);
    if meta_str(&body, "namespace").is_some_and(|n| n != key.1) {
        return Err(status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
            None,
        ));
    }
    if db.objects.contains_key(&key) {
        let message = format!("{} already exists", resource_name(&key));
        return Err(status(409, "AlreadyExists", message, Some(&key)));
    }
    let mut object = body;
    if let Value::Object(map) = &mut object {
        map.remove("status");
        map.insert("apiVersion".into(), json!(format!("{GROUP}/{VERSION}")));
        map.insert("kind".into(), json!(kind_of(&key.0)));
    }
    db.uid += 1;
    let uid = format!("00000000-0000-0000-0000-{:012}", db.uid);
    let meta = meta_mut(&mut object);
    for field in SERVER_FIELDS {
        meta.remove(field);
    }
    meta.insert("name".into(), json!(key.2));
    meta.insert("namespace".into(), json!(key.1));
    meta.insert("uid".into(), json!(uid));
    meta.insert("generation".into(), json!(1));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    normalize(&mut object);
    next_version(db, &mut object);
    db.objects.insert(key.clone(), object.clone());
    record(db, shared, "ADDED", &key, &object);
    Ok((201, object))
}

/// A write of `candidate` (a PUT's body, or the stored object patched) to the object or its
/// status.
fn update(db: &mut Db, shared: &Shared, key: &Key, candidate: Value, status_only: bool) -> Answer {
    let Some(current) = db.objects.get(key).cloned() else {
        return Err(not_found(key));
    };
    if !candidate.is_object() {
        return Err(status(
            400,
            "BadRequest",
            "the object is not a JSON object",
            Some(key),
        ));
    }
    let stored_version = meta_str(&current, "resourceVersion").unwrap_or_default();
    if let Some(wanted) = meta_str(&candidate, "resourceVersion").filter(|v| !v.is_empty())
        && wanted != stored_version
    {
        let message = format!(
            "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
            resource_name(key)
        );
        return Err(status(409, "Conflict", message, Some(key)));
    }
    if meta_str(&candidate, "name").is_some_and(|n| n != key.2) {
        return Err(status(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            Some(key),
        ));
    }
    let mut next;
    if status_only {
        next = current.clone();
        match candidate.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Value::Object(map) = &mut next {
                    map.remove("status");
                }
            }
        }
    } else {
        next = candidate;
        if let Value::Object(map) = &mut next {
            match current.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
            map.insert("apiVersion".into(), json!(format!("{GROUP}/{VERSION}")));
            map.insert("kind".into(), json!(kind_of(&key.0)));
        }
        let stored_meta = meta(&current).cloned().unwrap_or_default();
        let meta = meta_mut(&mut next);
        for field in SERVER_FIELDS {
            match stored_meta.get(field) {
                Some(value) => meta.insert(field.to_owned(), value.clone()),
                None => meta.remove(field),
            };
        }
        normalize(&mut next);
    }
    let deleting = meta(&current).is_some_and(|m| m.contains_key("deletionTimestamp"));
    let had = finalizers(&current);
    if deleting && finalizers(&next).iter().any(|f| !had.contains(f)) {
        let message = format!(
            "{} is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
            resource_name(key)
        );
        return Err(status(422, "Invalid", message, Some(key)));
    }
    if next == current {
        return Ok((200, current));
    }
    if !status_only && next.get("spec") != current.get("spec") {
        let generation = meta(&current)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut next).insert("generation".into(), json!(generation + 1));
    }
    next_version(db, &mut next);
    if deleting && finalizers(&next).is_empty() {
        db.objects.remove(key);
        record(db, shared, "DELETED", key, &next);
    } else {
        db.objects.insert(key.clone(), next.clone());
        record(db, shared, "MODIFIED", key, &next);
    }
    Ok((200, next))
}

fn patch(
    db: &mut Db,
    shared: &Shared,
    key: &Key,
    body: &Value,
    status_only: bool,
    content_type: Option<&str>,
) -> Answer {
    let Some(mut document) = db.objects.get(key).cloned() else {
        return Err(not_found(key));
    };
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    match media {
        "application/merge-patch+json" => json_patch::merge(&mut document, body),
        "application/json-patch+json" => {
            let operations: json_patch::Patch =
                serde_json::from_value(body.clone()).map_err(|e| {
                    status(
                        400,
                        "BadRequest",
                        format!("not a JSON patch: {e}"),
                        Some(key),
                    )
                })?;
            json_patch::patch(&mut document, &operations.0).map_err(|e| {
                status(
                    422,
                    "Invalid",
                    format!("the JSON patch does not apply: {e}"),
                    Some(key),
                )
            })?;
        }
        other => {
            let message = format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json"
            );
            return Err(status(415, "UnsupportedMediaType", message, Some(key)));
        }
    }
    update(db, shared, key, document, status_only)
}

fn delete(db: &mut Db, shared: &Shared, key: &Key) -> Answer {
    let Some(mut object) = db.objects.get(key).cloned() else {
        return Err(not_found(key));
    };
    if finalizers(&object).is_empty() {
        db.objects.remove(key);
        next_version(db, &mut object);
        record(db, shared, "DELETED", key, &object);
        let uid = meta_str(&object, "uid").unwrap_or_default().to_owned();
        return Ok((
            200,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": key.2, "group": GROUP, "kind": key.0, "uid": uid},
            }),
        ));
    }
    if meta(&object).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return Ok((200, object));
    }
    let generation = meta(&object)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let meta = meta_mut(&mut object);
    meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    meta.insert("generation".into(), json!(generation + 1));
    next_version(db, &mut object);
    db.objects.insert(key.clone(), object.clone());
    record(db, shared, "MODIFIED", key, &object);
    Ok((200, object))
}

struct WatchState {
    backlog: VecDeque<Bytes>,
    changes: broadcast::Receiver<Change>,
    expire: watch::Receiver<u64>,
    plural: String,
    namespace: Option<String>,
    deadline: tokio::time::Instant,
    done: bool,
}

fn expired(message: &str) -> Bytes {
    event_line(
        "ERROR",
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410,
        }),
    )
}

fn open_watch(
    shared: &Shared,
    db: &mut Db,
    plural: String,
    namespace: Option<String>,
    version: &str,
    timeout_seconds: u64,
) -> Response {
    let matches = |key: &Key| key.0 == plural && namespace.as_deref().is_none_or(|n| n == key.1);
    let mut backlog = VecDeque::new();
    let mut done = false;
    match version {
        // From "any": the current objects as ADDED, then changes.
        "" | "0" => backlog.extend(
            db.objects
                .iter()
                .filter(|(key, _)| matches(key))
                .map(|(_, object)| event_line("ADDED", object)),
        ),
        version => match version.parse::<u64>() {
            Ok(since) if since >= db.compacted_to => backlog.extend(
                db.history
                    .iter()
                    .filter(|c| c.version > since && matches(&c.key))
                    .map(Change::line),
            ),
            Ok(since) => {
                backlog.push_back(expired(&format!(
                    "too old resource version: {since} ({})",
                    db.compacted_to
                )));
                done = true;
            }
            Err(_) => {
                return status(
                    400,
                    "BadRequest",
                    format!("invalid resourceVersion {version:?}"),
                    None,
                )
                .into_response();
            }
        },
    }
    let mut expire = shared.expire.subscribe();
    expire.mark_unchanged();
    let state = WatchState {
        backlog,
        changes: shared.changes.subscribe(),
        expire,
        plural,
        namespace,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout_seconds),
        done,
    };
    let body = stream::unfold(state, |mut state| async move {
        loop {
            if let Some(line) = state.backlog.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), state));
            }
            if state.done {
                return None;
            }
            tokio::select! {
                change = state.changes.recv() => match change {
                    Ok(change) => {
                        let key = &change.key;
                        if key.0 == state.plural
                            && state.namespace.as_deref().is_none_or(|n| n == key.1)
                        {
                            state.backlog.push_back(change.line());
                        }
                    }
                    // Fell behind or shut down: the client watches again.
                    Err(_) => return None,
                },
                _ = state.expire.changed() => {
                    state.backlog.push_back(expired("the watch expired (compaction)"));
                    state.done = true;
                }
                () = tokio::time::sleep_until(state.deadline) => return None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            status(500, "InternalError", "could not start the watch", None).into_response()
        })
}
