//! Calls to a seller that may carry a payment or an agent's body, as the buyer proxy and
//! `obol buy pay|probe` make them.
//!
//! - Redirects are never followed ([`client`], [`send`]): a 307 or 308 would resend the body and
//!   the payment header to wherever the seller points. Any 3xx is
//!   [`SellerError::Redirected`], naming its `Location` (escaped, cut).
//! - A paid call the seller answers "settlement not finished" — 503 with
//!   `reason: "settlement_pending"`, or `"settlement_failed"` with `retriable: true` — is sent
//!   again as it was, with the same payment (never a new signature or authorization), after
//!   the answer's `Retry-After` (1 s when absent), at most [`SETTLEMENT_RETRIES`] times and
//!   never past [`SETTLEMENT_PATIENCE`] in all ([`until_settled`]). The first other answer
//!   ends the retries. A payment whose settlement is still unconfirmed then is
//!   [`PaidAnswer::pending`]: the transfer may land, so its authorization is never reused and
//!   nothing reports it unpaid.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use obol_config::text::printable;
use obol_x402::header::{self as x402_header, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use obol_x402::wire::SettleResponse;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use serde_json::Value;

use crate::probe::DEFAULT_USER_AGENT;

/// The most times one paid call is sent again while its settlement is not finished.
pub const SETTLEMENT_RETRIES: u32 = 5;
/// The longest one paid call waits for its settlement, all retries together: a `Retry-After`
/// reaching past it ends the retries instead.
pub const SETTLEMENT_PATIENCE: Duration = Duration::from_secs(60);
/// The wait when a settlement answer names none (or an HTTP date).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A paid call's 503 is read up to this size to see whether it is a settlement answer (the
/// gateway's is a few hundred bytes).
const MAX_UNAVAILABLE_BODY: usize = 64 * 1024;
/// How much of a seller's `Location` or transaction hash is shown.
const MAX_SHOWN_CHARS: usize = 200;

/// Why a call to a seller got no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SellerError {
    /// The seller could not be reached, or the answer could not be read.
    #[error("the seller could not be reached: {0}")]
    Unreachable(String),
    /// No connection to the seller could be made (refused, unresolvable, timed out while
    /// connecting): nothing of the request was sent.
    #[error("the seller could not be reached: {0}")]
    NotConnected(String),
    /// The seller answered 3xx; the redirect was not followed.
    #[error(
        "the seller redirected the call to {location}; redirects are not followed (they would \
         carry the request body and the payment elsewhere)"
    )]
    Redirected {
        /// The `Location` (escaped, cut), or a note that there was none.
        location: String,
    },
    /// The HTTP client could not be built (a User-Agent that is not a valid header value).
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    /// A paid call's 503 answer exceeds what is read of it.
    #[error("the seller's 503 answer is larger than {MAX_UNAVAILABLE_BODY} bytes")]
    TooLarge,
}

/// An HTTP client for calls to sellers: `user_agent` (default [`DEFAULT_USER_AGENT`]), no
/// redirects followed, and what `configure` adds (timeouts).
///
/// # Errors
///
/// [`SellerError::Client`] when it cannot be built (a `user_agent` that is not a valid header
/// value).
pub fn client(
    user_agent: Option<&str>,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, SellerError> {
    configure(
        reqwest::Client::builder()
            .user_agent(user_agent.unwrap_or(DEFAULT_USER_AGENT))
            .redirect(reqwest::redirect::Policy::none()),
    )
    .build()
    .map_err(|e| SellerError::Client(e.to_string()))
}

/// Sends `request` (built on a [`client`]); a 3xx answer is [`SellerError::Redirected`].
///
/// # Errors
///
/// [`SellerError::NotConnected`] when no connection could be made (nothing was sent),
/// [`SellerError::Unreachable`] when the request fails otherwise, [`SellerError::Redirected`]
/// for a 3xx.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, SellerError> {
    let response = request.send().await.map_err(|e| {
        let connect = e.is_connect();
        let shown = e.without_url().to_string();
        if connect {
            SellerError::NotConnected(shown)
        } else {
            SellerError::Unreachable(shown)
        }
    })?;
    if response.status().is_redirection() {
        let location = response.headers().get(LOCATION).map_or_else(
            || "nowhere (no Location)".to_owned(),
            |v| printable(&String::from_utf8_lossy(v.as_bytes()), MAX_SHOWN_CHARS),
        );
        return Err(SellerError::Redirected { location });
    }
    Ok(response)
}

/// The receipt (`PAYMENT-RESPONSE`, else `X-PAYMENT-RESPONSE`) of an answer, when readable.
pub fn receipt_of(headers: &HeaderMap) -> Option<SettleResponse> {
    [PAYMENT_RESPONSE, X_PAYMENT_RESPONSE]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| x402_header::decode(v).ok())
}

/// Reads `response`'s body, at most `max` bytes; `None` when it is longer.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, SellerError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SellerError::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A paid call's outcome once the retries ended.
#[derive(Debug)]
pub struct PaidAnswer {
    /// The seller's last answer (a 503's body already read, and readable again).
    pub response: reqwest::Response,
    /// How many times the payment was sent again.
    pub retries: u32,
    /// Set when the payment's settlement is not confirmed but may land. Unless the answer
    /// served the call, it may then be charged without being served.
    pub pending: Option<Pending>,
}

/// A payment whose settlement the seller has not confirmed: the last answer still said
/// "settlement not finished" (or the seller stopped answering while it did), or its receipt says
/// `settlement_pending`. The transfer may land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The broadcast transaction, when the seller's receipt names one (escaped, cut).
    pub transaction: Option<String>,
}

/// Follows a paid call's first answer `first`: while the seller says the settlement is not
/// finished, calls `noted` (the payment may have been charged from now on), waits its
/// `Retry-After` and `resend`s the same request with the same payment, within
/// [`SETTLEMENT_RETRIES`] and [`SETTLEMENT_PATIENCE`]. A resend that fails ends the retries
/// with the last answer, still pending.
///
/// # Errors
///
/// [`SellerError::Unreachable`] or [`SellerError::TooLarge`] when `first`'s body cannot be read.
pub async fn until_settled<F, Fut>(
    first: reqwest::Response,
    mut resend: F,
    mut noted: impl FnMut(),
) -> Result<PaidAnswer, SellerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, SellerError>>,
{
    let started = Instant::now();
    let mut retries = 0;
    let mut response = first;
    // The last answer that said "not finished", kept should the next one fail.
    let mut last = None;
    loop {
        let (answer, wait) = match (settling(response).await, last) {
            (Ok(read), _) => read,
            (Err(error), None) => return Err(error),
            (Err(error), Some(last)) => return Ok(gave_up(last, retries, &error)),
        };
        let Some(wait) = wait else {
            return Ok(PaidAnswer::new(answer, retries, false));
        };
        noted();
        if retries >= SETTLEMENT_RETRIES
            || started.elapsed().saturating_add(wait) > SETTLEMENT_PATIENCE
        {
            return Ok(PaidAnswer::new(answer, retries, true));
        }
        tracing::info!(
            retries,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "the seller has not finished settling the payment; sending the same call again"
        );
        tokio::time::sleep(wait).await;
        retries += 1;
        response = match resend().await {
            Ok(response) => response,
            Err(error) => return Ok(gave_up(answer, retries, &error)),
        };
        last = Some(answer);
    }
}

/// The retries ended on a failure after a "settlement not finished": still pending, with the
/// last answer that said so.
fn gave_up(last: reqwest::Response, retries: u32, error: &SellerError) -> PaidAnswer {
    tracing::warn!(%error, retries, "the seller stopped answering while settling the payment");
    PaidAnswer::new(last, retries, true)
}

impl PaidAnswer {
    fn new(response: reqwest::Response, retries: u32, unfinished: bool) -> Self {
        let receipt = receipt_of(response.headers()).filter(|r| !r.success);
        let receipt_pending = receipt
            .as_ref()
            .is_some_and(|r| r.error_reason.as_deref() == Some("settlement_pending"));
        let pending = (unfinished || receipt_pending).then(|| Pending {
            transaction: receipt
                .map(|r| r.transaction)
                .filter(|tx| !tx.is_empty())
                .map(|tx| printable(&tx, MAX_SHOWN_CHARS)),
        });
        Self {
            response,
            retries,
            pending,
        }
    }
}

/// `response`, and its `Retry-After` when it is a "settlement not finished" answer. A 503's
/// body is read for its `reason` (and put back); other answers are left unread.
async fn settling(
    mut response: reqwest::Response,
) -> Result<(reqwest::Response, Option<Duration>), SellerError> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return Ok((response, None));
    }
    let body = read_body(&mut response, MAX_UNAVAILABLE_BODY)
        .await?
        .ok_or(SellerError::TooLarge)?;
    let wait = unfinished(&body).then(|| retry_after(response.headers()));
    let mut again = axum::http::Response::new(Bytes::from(body));
    *again.status_mut() = response.status();
    *again.headers_mut() = std::mem::take(response.headers_mut());
    Ok((reqwest::Response::from(again), wait))
}

/// Whether a 503 body says the settlement is not finished: `settlement_pending`, or
/// `settlement_failed` marked retriable (nothing was broadcast).
fn unfinished(body: &[u8]) -> bool {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    match body.get("reason").and_then(Value::as_str) {
        Some("settlement_pending") => true,
        Some("settlement_failed") => body.get("retriable") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// `Retry-After` in seconds; [`DEFAULT_RETRY_AFTER`] when absent or a date.
fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settlement_answers_and_retry_after() {
        for (body, expected) in [
            (r#"{"reason":"settlement_pending","retriable":true}"#, true),
            (r#"{"reason":"settlement_pending"}"#, true),
            (r#"{"reason":"settlement_failed","retriable":true}"#, true),
            (r#"{"reason":"settlement_failed","retriable":false}"#, false),
            (r#"{"reason":"settlement_failed"}"#, false),
            (
                r#"{"reason":"facilitator_unreachable","retriable":true}"#,
                false,
            ),
            ("<html>down</html>", false),
            ("[]", false),
        ] {
            assert_eq!(unfinished(body.as_bytes()), expected, "{body}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), DEFAULT_RETRY_AFTER);
        headers.insert(RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Duration::from_secs(7));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), DEFAULT_RETRY_AFTER);
    }
}
