//! The admin API's secrets (behind the admin token, like every admin route):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /v1/secrets/{namespace}` | names and keys, never values |
//! | `PUT /v1/secrets/{namespace}/{name}` | `{"data": {key: value}}` creates or replaces it; answers names and keys |
//! | `DELETE /v1/secrets/{namespace}/{name}` | removes it |
//!
//! A change reconciles at once every offer of the namespace that refers to the secret, so a
//! rotated key is used from the next request and a deleted one stops the offer.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use obol_control::reconcile::Reconciler;
use obol_control::secrets::{FileSecrets, SecretData, SecretError, SecretInfo};
use obol_control::{ServiceOfferSpec, Store, StoreExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{AdminClient, AdminError};

#[derive(Clone)]
pub(crate) struct SecretsState {
    pub(crate) secrets: Arc<FileSecrets>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) reconciler: Arc<Reconciler>,
}

/// A secret as a PUT carries it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    /// Keys to values.
    pub(crate) data: SecretData,
}

pub(crate) fn router(state: SecretsState) -> Router {
    Router::new()
        .route("/v1/secrets/{namespace}", get(list))
        .route(
            "/v1/secrets/{namespace}/{name}",
            put(put_one).delete(delete_one),
        )
        .with_state(state)
}

/// A secret refusal as the admin API answers it (and as a cluster-backed client reports it).
fn refusal(error: &SecretError) -> AdminError {
    let status = match error {
        SecretError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SecretError::Io(_) | SecretError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        SecretError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    AdminError::new(status.as_u16(), error.to_string())
}

fn refused(error: &SecretError) -> Response {
    refusal(error).into_response()
}

fn not_found(namespace: &str, name: &str) -> AdminError {
    AdminError {
        status: Some(404),
        message: format!("secret {namespace}/{name} not found"),
        reason: Some("NotFound".to_owned()),
    }
}

async fn list(State(state): State<SecretsState>, Path(namespace): Path<String>) -> Response {
    match state.secrets.list(&namespace) {
        Ok(found) => axum::Json(found).into_response(),
        Err(e) => refused(&e),
    }
}

async fn put_one(
    State(state): State<SecretsState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Result<axum::Json<SecretBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // serde's rejection text can quote the body (the secret): say only what kind of problem.
    let Ok(axum::Json(body)) = body else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": "expected {\"data\": {key: value}} with printable one-line values of at most 8 KiB"})),
        )
            .into_response();
    };
    if let Err(e) = state.secrets.put(&namespace, &name, &body.data) {
        return refused(&e);
    }
    tracing::info!(%namespace, %name, keys = body.data.len(), "secret written");
    reconcile_users(&state, &namespace, &name).await;
    axum::Json(SecretInfo {
        namespace,
        name,
        keys: body.data.into_keys().collect(),
    })
    .into_response()
}

async fn delete_one(
    State(state): State<SecretsState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match state.secrets.delete(&namespace, &name) {
        Ok(false) => not_found(&namespace, &name).into_response(),
        Ok(true) => {
            tracing::info!(%namespace, %name, "secret deleted");
            reconcile_users(&state, &namespace, &name).await;
            axum::Json(json!({"deleted": true})).into_response()
        }
        Err(e) => refused(&e),
    }
}

/// Reconciles the offers of `namespace` whose upstream credential is secret `name`.
async fn reconcile_users(state: &SecretsState, namespace: &str, name: &str) {
    let offers = match state.store.list::<ServiceOfferSpec>(Some(namespace)).await {
        Ok(offers) => offers,
        Err(error) => {
            tracing::warn!(%error, "cannot list the offers using a changed secret; they follow at their next requeue");
            return;
        }
    };
    let users = offers.iter().filter(|o| {
        o.spec
            .upstream
            .auth
            .as_ref()
            .is_some_and(|a| a.secret_ref.name == name)
    });
    for offer in users {
        if let Err(error) = state
            .reconciler
            .reconcile(namespace, &offer.metadata.name)
            .await
        {
            tracing::warn!(offer = %offer.metadata.name, %error, "reconcile after a secret change failed; retried at the next requeue");
        }
    }
}

impl AdminClient {
    /// Creates or replaces secret `namespace/name`.
    pub async fn put_secret(
        &self,
        namespace: &str,
        name: &str,
        data: SecretData,
    ) -> Result<SecretInfo, AdminError> {
        if let Some(secrets) = self.secret_store() {
            let keys = data.keys().cloned().collect();
            secrets
                .put(namespace, name, &data)
                .await
                .map_err(|e| refusal(&e))?;
            return Ok(SecretInfo {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                keys,
            });
        }
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/secrets/{namespace}/{name}"),
            Some(&SecretBody { data }),
        )
        .await
    }

    /// Deletes secret `namespace/name` (an error with status 404 when there is none).
    pub async fn delete_secret(&self, namespace: &str, name: &str) -> Result<(), AdminError> {
        if let Some(secrets) = self.secret_store() {
            return match secrets.delete(namespace, name).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(not_found(namespace, name)),
                Err(e) => Err(refusal(&e)),
            };
        }
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("/v1/secrets/{namespace}/{name}"),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// The secrets of `namespace`: names and keys.
    pub async fn secrets(&self, namespace: &str) -> Result<Vec<SecretInfo>, AdminError> {
        if let Some(secrets) = self.secret_store() {
            return secrets.list(namespace).await.map_err(|e| refusal(&e));
        }
        self.call(
            reqwest::Method::GET,
            &format!("/v1/secrets/{namespace}"),
            None::<&()>,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::{Request, header};
    use obol_control::SqliteStore;
    use obol_gateway::Routes;
    use obol_x402::token::TokenRegistry;
    use tower::ServiceExt as _;

    use super::*;

    async fn call(app: &Router, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn values_go_in_and_never_come_out_and_bad_input_is_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let reconciler = Arc::new(Reconciler::new(
            store.clone(),
            Arc::new(Routes::new()),
            TokenRegistry::builtin(),
        ));
        let app = router(SecretsState {
            secrets: Arc::new(FileSecrets::new(dir.path())),
            store,
            reconciler,
        });

        let (status, body) = call(
            &app,
            "PUT",
            "/v1/secrets/default/api",
            r#"{"data": {"token": "sk-abc"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains("sk-abc"), "{body}");
        let (_, listed) = call(&app, "GET", "/v1/secrets/default", "").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&listed).unwrap(),
            json!([{"namespace": "default", "name": "api", "keys": ["token"]}])
        );

        for (path, body) in [
            (
                "/v1/secrets/default/api",
                r#"{"data": {"token": "sk-a\nb"}}"#,
            ),
            (
                "/v1/secrets/default/api",
                r#"{"data": {"token": "sk-abc", "x": 1}}"#,
            ),
            ("/v1/secrets/default/api", r#"{"value": "sk-abc"}"#),
            ("/v1/secrets/default/api", r#"{"data": {"token": "sk-abc"#),
            ("/v1/secrets/default/api", r#"{"data": {"a/b": "sk-abc"}}"#),
            ("/v1/secrets/default/api", r#"{"data": {}}"#),
            (
                "/v1/secrets/Default/api",
                r#"{"data": {"token": "sk-abc"}}"#,
            ),
        ] {
            let (status, answer) = call(&app, "PUT", path, body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            assert!(!answer.contains("sk-a"), "{body}: {answer}");
        }

        assert_eq!(
            call(&app, "DELETE", "/v1/secrets/default/api", "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "DELETE", "/v1/secrets/default/api", "").await.0,
            StatusCode::NOT_FOUND
        );
    }
}
