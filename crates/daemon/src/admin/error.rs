//! [`AdminError`]: why an admin operation failed, and the one place it becomes an HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use obol_control::store::StoreError;
use serde_json::json;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status, when the daemon answered (or would have: the same operation run against a
    /// cluster's store reports the status the daemon would send).
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
    /// The store's reason, when a store refusal caused it (`NotFound`, `Conflict`,
    /// `AlreadyExists`, `Deleting`).
    pub reason: Option<String>,
}

impl AdminError {
    /// A refusal with an HTTP status.
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            message: message.into(),
            reason: None,
        }
    }

    /// `KIND namespace/name not found` (404).
    pub(crate) fn not_found(kind: &str, namespace: &str, name: &str) -> Self {
        Self::new(404, format!("{kind} {namespace}/{name} not found"))
    }

    /// A store's refusal, with its reason.
    pub(crate) fn store(e: &StoreError) -> Self {
        let (status, reason) = match e {
            StoreError::NotFound { .. } => (404, "NotFound"),
            StoreError::Deleting { .. } => (409, "Deleting"),
            StoreError::Conflict { .. } => (409, "Conflict"),
            StoreError::Exists { .. } => (409, "AlreadyExists"),
            _ => (500, "Internal"),
        };
        Self {
            status: Some(status),
            message: e.to_string(),
            reason: Some(reason.to_owned()),
        }
    }

    fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }

    /// The object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The update was read at another generation (read again and retry).
    pub fn is_stale(&self) -> bool {
        self.is("Conflict")
    }

    /// A create-only apply found the object there.
    pub fn is_already_exists(&self) -> bool {
        self.is("AlreadyExists")
    }
}

/// `{"error": message, "reason"?: …}` with the status (500 when none was set).
impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = self
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({"error": self.message});
        if let Some(reason) = self.reason {
            body["reason"] = reason.into();
        }
        (status, axum::Json(body)).into_response()
    }
}
