//! The admin API (loopback only, bearer token) and its client.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /healthz` | liveness (no token) |
//! | `GET /v1/status` | stack id, gateway address, public URL, route count |
//! | `GET /v1/offers` | every `ServiceOffer` |
//! | `GET/PUT/DELETE /v1/offers/{namespace}/{name}` | one offer (PUT validates, then applies) |
//! | `GET /v1/purchases`, `GET/PUT/DELETE /v1/purchases/{namespace}/{name}` | `PurchaseRequest`s, the same way |
//! | `GET /v1/identities`, `GET/PUT/DELETE /v1/identities/{namespace}/{name}` | `AgentIdentity`s; a PUT also writes the status (the agent ids the CLI records) |
//! | `POST /admin/reload`, `POST /admin/remove` | the buyer proxy's purchases (re-read; stop serving one) |
//! | `GET /v1/secrets/{namespace}`, `PUT/DELETE /v1/secrets/{namespace}/{name}` | secrets offers refer to (values go in, never out; see `crate::secrets`) |
//! | `GET /v1/doctor` | what `obol doctor` asks the daemon: the facilitator's `/supported`, pending settlements, buyer pool expiries (`crate::doctor`) |
//! | `POST /v1/backup` | online copies of the open databases into a new private directory (`crate::backup`) |
//! | `GET/PUT/DELETE /v1/tunnel` | the `cloudflared` tunnel: status, start (the setting in the body), stop (`crate::tunnel`) |
//! | `POST /v1/shutdown` | graceful stop |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use obol_control::identity::AgentIdentitySpec;
use obol_control::purchase::PurchaseRequestSpec;
use obol_control::store::ApplyMode;
use obol_control::validate::{
    ValidationError, validate_identity, validate_offer, validate_purchase,
};
use obol_control::{Object, ServiceOfferSpec, Spec, Store};
use obol_gateway::Routes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::facilitator::FacilitatorSummary;

mod client;
mod error;
mod ops;

pub use client::{AdminClient, ClusterInfo};
pub use error::AdminError;

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) token: Arc<str>,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    pub(crate) gateway: String,
    /// The stack's public URL now (a tunnel may change it).
    pub(crate) public_url: obol_config::public_url::SharedPublicUrl,
    pub(crate) stack_id: String,
    pub(crate) facilitator: FacilitatorSummary,
    /// The gateway's payment guard: what metered offers used (`status.usage`, read live).
    pub(crate) guard: Option<Arc<obol_gateway::guard::ReplayGuard>>,
    /// The stores `POST /v1/backup` copies.
    pub(crate) backup: Option<Arc<crate::backup::Stores>>,
}

/// The stack's status as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// The stack id.
    pub stack_id: String,
    /// The daemon's pid.
    pub pid: u32,
    /// The gateway's bound address.
    pub gateway: String,
    /// The public base URL.
    pub public_url: String,
    /// True when no public URL is configured (buyers elsewhere cannot reach the stack).
    pub public_url_is_default: bool,
    /// Routes the gateway serves.
    pub routes: usize,
    /// The facilitator and the chains it serves.
    #[serde(default)]
    pub facilitator: FacilitatorSummary,
}

/// The answer to an apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Applied<S: Spec> {
    /// `created`, `updated` or `unchanged`.
    pub outcome: String,
    /// The stored object.
    pub object: Object<S>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    obol_facilitator::http::server::bearer_matches(headers, &state.token)
}

/// A kind the admin API serves under `/v1/<PLURAL>`.
pub trait AdminKind: Spec {
    /// The collection's path segment.
    const PLURAL: &'static str;
    /// Checks an object before it is stored.
    fn validate(object: &Object<Self>) -> Result<(), ValidationError>;
    /// Whether a PUT also stores the status it carries. Kinds whose status a controller writes
    /// keep it; `AgentIdentity`, whose ids only the CLI records, takes it from the PUT.
    const PUT_WRITES_STATUS: bool = false;
    /// Adds to an object read what is only known live, from the gateway's payment guard (none
    /// by default).
    fn decorate(
        _object: &mut Object<Self>,
        _guard: &obol_gateway::guard::ReplayGuard,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl AdminKind for ServiceOfferSpec {
    const PLURAL: &'static str = "offers";
    fn validate(object: &Object<Self>) -> Result<(), ValidationError> {
        validate_offer(object)
    }

    /// `status.usage`: what the offer's metered calls used and were charged, from the guard.
    async fn decorate(object: &mut Object<Self>, guard: &obol_gateway::guard::ReplayGuard) {
        let usage = guard
            .usage(&object.metadata.namespace, &object.metadata.name)
            .await;
        if let Some(raw) = usage {
            object.status.usage = Some(obol_control::routes::offer_usage(
                &obol_x402::TokenRegistry::builtin(),
                object,
                &raw,
            ));
        }
    }
}

impl AdminKind for PurchaseRequestSpec {
    const PLURAL: &'static str = "purchases";
    fn validate(object: &Object<Self>) -> Result<(), ValidationError> {
        validate_purchase(object)
    }
}

impl AdminKind for AgentIdentitySpec {
    const PLURAL: &'static str = "identities";
    const PUT_WRITES_STATUS: bool = true;
    fn validate(object: &Object<Self>) -> Result<(), ValidationError> {
        validate_identity(object)
    }
}

fn collection<S: AdminKind>(router: Router<AdminState>) -> Router<AdminState> {
    router
        .route(&format!("/v1/{}", S::PLURAL), get(list::<S>))
        .route(
            &format!("/v1/{}/{{namespace}}/{{name}}", S::PLURAL),
            get(get_one::<S>).put(put_one::<S>).delete(delete_one::<S>),
        )
}

/// The largest admin request body: a purchase carrying `MAX_PRE_SIGNED_AUTHS` authorizations
/// (about 1.4 KB each as JSON) with room to spare.
pub(crate) const MAX_ADMIN_BODY: usize = 32 << 20;

/// The admin routes, all behind the bearer token except `/healthz`; `extra` (e.g. the buyer's
/// reload and remove) is mounted behind the same token.
pub(crate) fn router(state: AdminState, extra: Router) -> Router {
    let kinds =
        collection::<AgentIdentitySpec>(collection::<PurchaseRequestSpec>(collection::<
            ServiceOfferSpec,
        >(Router::new())));
    kinds
        .route("/v1/status", get(status))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/backup", post(backup))
        .with_state(state.clone())
        .merge(extra)
        .route_layer(axum::middleware::from_fn_with_state(state, require_token))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ADMIN_BODY))
}

async fn require_token(
    State(state): State<AdminState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&state, request.headers()) {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs the bearer token from <config>/admin.token",
        )
    }
}

async fn status(State(state): State<AdminState>) -> Response {
    axum::Json(StackStatus {
        stack_id: state.stack_id.clone(),
        pid: std::process::id(),
        gateway: state.gateway.clone(),
        public_url: state
            .public_url
            .get()
            .map(|url| url.to_string())
            .unwrap_or_default(),
        public_url_is_default: state
            .public_url
            .get()
            .is_none_or(|url| url.is_local_default()),
        routes: state.routes.load().len(),
        facilitator: state.facilitator.clone(),
    })
    .into_response()
}

async fn backup(State(state): State<AdminState>) -> Response {
    let Some(stores) = state.backup.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this daemon has no stores to back up",
        );
    };
    match tokio::task::spawn_blocking(move || stores.snapshot()).await {
        Ok(Ok(snapshot)) => axum::Json(snapshot).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list<S: AdminKind>(State(state): State<AdminState>) -> Response {
    ops::list::<S>(state.store.as_ref(), state.guard.as_deref())
        .await
        .map(axum::Json)
        .into_response()
}

async fn get_one<S: AdminKind>(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    ops::get::<S>(
        state.store.as_ref(),
        state.guard.as_deref(),
        &namespace,
        &name,
    )
    .await
    .map(axum::Json)
    .into_response()
}

/// `PUT …?create=true`: create only (409 when it exists).
#[derive(Debug, Default, Deserialize)]
struct PutQuery {
    #[serde(default)]
    create: bool,
}

async fn put_one<S: AdminKind>(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<PutQuery>,
    body: Result<axum::Json<Object<S>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // A body that does not read as the kind (a field we refuse, bad JSON) gets the same
    // `{"error": …}` shape as every other refusal, naming what was wrong.
    let mut object = match body {
        Ok(axum::Json(object)) => object,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    object.metadata.namespace = namespace;
    object.metadata.name = name;
    let mode = if query.create {
        ApplyMode::CreateOnly
    } else {
        ApplyMode::Upsert
    };
    ops::put(state.store.as_ref(), &object, mode)
        .await
        .map(axum::Json)
        .into_response()
}

async fn delete_one<S: AdminKind>(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    ops::delete::<S>(state.store.as_ref(), &namespace, &name)
        .await
        .map(axum::Json)
        .into_response()
}

async fn shutdown(State(state): State<AdminState>) -> Response {
    let _ = state.stop.send(true);
    axum::Json(json!({"status": "stopping"})).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::{Request, header};
    use obol_control::SqliteStore;
    use obol_control::purchase::{PreSignedAuth, PurchasePayment, PurchaseRequest};
    use tower::ServiceExt as _;

    use super::*;

    fn app() -> Router {
        let extra = Router::new().route("/admin/reload", post(|| async { "reloaded" }));
        router(
            AdminState {
                store: Arc::new(SqliteStore::in_memory().unwrap()),
                routes: Arc::new(Routes::new()),
                token: Arc::from("s3cret"),
                stop: tokio::sync::watch::channel(false).0,
                gateway: "127.0.0.1:8080".into(),
                public_url: obol_config::public_url::SharedPublicUrl::new(
                    obol_config::PublicUrl::resolve(None, None, None, "http://127.0.0.1:8080")
                        .unwrap(),
                ),
                stack_id: "test".into(),
                facilitator: FacilitatorSummary::default(),
                guard: None,
                backup: None,
            },
            extra,
        )
    }

    async fn status_of(method: &str, path: &str, token: Option<&str>, body: Body) -> StatusCode {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        app()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_refused_field_is_a_json_422_naming_it() {
        let body = serde_json::json!({
            "apiVersion": "obol.org/v1alpha1", "kind": "ServiceOffer",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"upstream": {"url": "http://127.0.0.1:9"}, "branding": {"tagline": "x"},
                     "payment": {"network": "base-sepolia", "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                                 "price": {"perRequest": "0.001"}}}
        });
        let response = app()
            .oneshot(
                Request::builder()
                    .method("PUT")
                    .uri("/v1/offers/default/x")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, "Bearer s3cret")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains("spec.branding is not supported yet"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn every_route_but_healthz_needs_the_token() {
        for (method, path) in [
            ("GET", "/v1/status"),
            ("GET", "/v1/offers"),
            ("GET", "/v1/purchases"),
            ("GET", "/v1/purchases/buy/x"),
            ("DELETE", "/v1/purchases/buy/x"),
            ("GET", "/v1/identities"),
            ("POST", "/admin/reload"),
            ("POST", "/v1/shutdown"),
        ] {
            for token in [None, Some("wrong"), Some("s3cret-but-longer")] {
                assert_eq!(
                    status_of(method, path, token, Body::empty()).await,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {token:?}"
                );
            }
        }
        assert_eq!(
            status_of("GET", "/v1/purchases", Some("s3cret"), Body::empty()).await,
            StatusCode::OK
        );
        assert_eq!(
            status_of("POST", "/admin/reload", Some("s3cret"), Body::empty()).await,
            StatusCode::OK
        );
        assert_eq!(
            status_of("GET", "/healthz", None, Body::empty()).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_purchase_of_thousands_of_authorizations_fits_in_one_request() {
        let payment: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(json!({"payload": {"signature": "0x".to_owned() + &"ab".repeat(65)}, "pad": "x".repeat(1000)}))
                .unwrap();
        let auth = PreSignedAuth {
            id: String::new(),
            payment: Some(payment),
            signature: "0x".to_owned() + &"ab".repeat(65),
            from: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
            value: "1000".into(),
            valid_after: "0".into(),
            valid_before: "4102444800".into(),
            nonce: format!("0x{}", "11".repeat(32)),
        };
        let purchase = PurchaseRequest::new(
            "buy",
            "big",
            PurchaseRequestSpec {
                endpoint: "http://127.0.0.1:9/services/llm".into(),
                model: "m".into(),
                count: 2500,
                pre_signed_auths: vec![auth; 5000],
                auto_refill: None,
                payment: PurchasePayment::of(&obol_testkit::x402::requirement(
                    "USDC",
                    1000,
                    obol_testkit::accounts::PAY_TO,
                )),
            },
        );
        let body = serde_json::to_vec(&purchase).unwrap();
        assert!(body.len() > 6 << 20, "{} bytes", body.len());
        assert_eq!(
            status_of(
                "PUT",
                "/v1/purchases/buy/big",
                Some("s3cret"),
                Body::from(body)
            )
            .await,
            StatusCode::OK
        );
    }
}
