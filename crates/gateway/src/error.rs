//! Every gateway failure, and the one place it becomes an HTTP answer:
//! `{error, reason, detail?, hint?, retriable}` (obol-stack.md §4.5). 402 re-challenges are
//! built by [`crate::challenge`] instead, because an x402 client needs `accepts` to retry.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failure with its status and wire body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status} {reason}: {error}")]
pub struct GatewayError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Human summary.
    pub error: &'static str,
    /// Machine reason (metrics label and wire code).
    pub reason: &'static str,
    /// Specifics (sanitised: never raw untrusted input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the caller can do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
    /// Whether the same request may succeed later.
    pub retriable: bool,
    /// The `Allow` header of a 405.
    #[serde(skip)]
    pub allow: Option<String>,
    /// The `Retry-After` of a 429, in seconds.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl GatewayError {
    fn new(status: StatusCode, error: &'static str, reason: &'static str) -> Self {
        Self {
            status,
            error,
            reason,
            detail: None,
            hint: None,
            retriable: false,
            allow: None,
            retry_after: None,
        }
    }

    /// Adds specifics.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Marks it retriable.
    pub fn retriable(mut self, retriable: bool) -> Self {
        self.retriable = retriable;
        self
    }

    /// 400: the payment header does not decode.
    pub fn invalid_payment_header(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid payment header", "invalid_payment_header")
            .detail(detail)
            .hint("send base64(JSON PaymentPayload) with the standard alphabet in X-PAYMENT (v1) or PAYMENT-SIGNATURE (v2)")
    }

    /// 400: the request path could leave its route once decoded.
    pub fn invalid_path(error: crate::path::PathError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Invalid request path",
            "invalid_path",
        )
        .detail(error.to_string())
        .hint("send the path without dot segments, encoded slashes or backslashes")
    }

    /// 503: a settlement was broadcast (or its outcome is unknown) but not confirmed yet. The
    /// same payment, sent again, is settled and served; never sign a new one for this call.
    pub fn settlement_pending(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Payment settlement pending",
            "settlement_pending",
        )
        .detail(detail)
        .hint("retry the same request with the same payment header; do not sign a new one")
        .retriable(true)
    }

    /// A refused sign-in (`reason` from [`crate::siwx`]): 400 unreadable, 401 refused, 503
    /// retriable.
    pub fn sign_in(status: StatusCode, reason: &'static str, detail: String) -> Self {
        let error = match status {
            StatusCode::BAD_REQUEST => "Invalid sign-in",
            StatusCode::SERVICE_UNAVAILABLE => "Sign-in unavailable",
            _ => "Sign-in refused",
        };
        Self::new(status, error, reason)
            .detail(detail)
            .retriable(status == StatusCode::SERVICE_UNAVAILABLE)
    }

    /// 404: nothing is served at this path.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "No service here", "route_not_found")
    }

    /// 404: a paid prefix without a matching route (never served free).
    pub fn fail_closed() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "No service here",
            "paid_route_not_found",
        )
        .hint("this path belongs to a paid offer but matches none of its routes")
    }

    /// 405: the route exists but does not answer this method; `allow` lists those it does.
    pub fn method_not_allowed(allow: String) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "method_not_allowed",
        );
        error.detail = Some(format!("this route answers {allow}"));
        error.allow = Some(allow);
        error
    }

    /// 429: the offer's rate limit is spent; it refills in `retry_after` seconds.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "rate_limited",
        )
        .detail("this service's request rate is limited")
        .retriable(true);
        error.retry_after = Some(retry_after);
        error
    }

    /// 429: as many requests of the offer as it allows are being served.
    pub fn too_many_in_flight() -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "too_many_in_flight",
        )
        .detail("this service serves a limited number of requests at once")
        .retriable(true);
        error.retry_after = Some(1);
        error
    }

    /// 503: the facilitator could not be reached.
    pub fn facilitator_unreachable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Payment verification failed",
            "facilitator_unreachable",
        )
        .detail(detail)
        .retriable(true)
    }

    /// 503: the facilitator answered with an error.
    pub fn facilitator_error(detail: impl Into<String>, retriable: bool) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Payment verification failed", "facilitator_error")
            .detail(detail)
            .retriable(retriable)
            .hint("usual causes: validAfter too close to now (use 0 or now-600 s), or a signature v other than 27/28")
    }

    /// 503: settlement could not be completed. Retriable only when nothing was broadcast.
    pub fn settlement_failed(detail: impl Into<String>, transaction_sent: bool) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Payment settlement failed",
            "settlement_failed",
        )
        .detail(detail)
        .retriable(!transaction_sent)
    }

    /// 502: the upstream could not be reached; nothing was charged.
    pub fn upstream_unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream unavailable",
            "upstream_unavailable",
        )
        .detail(detail)
        .retriable(true)
    }

    /// 413: the request body is over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            "body_too_large",
        )
        .detail(format!("the limit is {limit} bytes"))
    }

    /// 503: the payment guard's store cannot be read (a shared database down): no payment is
    /// taken unchecked.
    pub fn payment_store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments cannot be checked right now",
            "payment_store_unavailable",
        )
        .hint("try again shortly with the same payment; nothing was charged")
        .retriable(true)
    }

    /// 503: the route table has not been loaded yet.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: routes not loaded",
            "not_ready",
        )
        .retriable(true)
    }
}

/// `Retry-After` of a retriable 503, in seconds.
pub const RETRY_AFTER_SECS: &str = "2";

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| header::HeaderValue::from_str(a).ok())
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if self.retriable && self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_body_shape() {
        let err = GatewayError::settlement_failed("timeout", false);
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "Payment settlement failed", "reason": "settlement_failed",
                               "detail": "timeout", "retriable": true})
        );
        assert!(
            !GatewayError::settlement_failed("x", true).retriable,
            "a sent tx is not retried"
        );
    }
}
