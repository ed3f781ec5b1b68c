//! The seller's answer on its way back to the agent: the headers relayed (content type, cache
//! control, the receipts and the receipt link of a stream), and what they say of the payment.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;

use crate::seller::receipt_of;

/// Copies the seller's receipt headers onto the proxy's own answer.
pub(super) fn copy_receipts(from: &reqwest::header::HeaderMap, to: &mut HeaderMap) {
    for name in RECEIPTS {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}

/// The receipt headers (`PAYMENT-RESPONSE`, `X-PAYMENT-RESPONSE`).
const RECEIPTS: [HeaderName; 2] = [
    HeaderName::from_static("payment-response"),
    HeaderName::from_static("x-payment-response"),
];

/// Where a streamed answer's receipt can be read after the stream (the seller's gateway sets
/// it; trailers do not make it through this relay).
const RECEIPT_LINK: HeaderName = HeaderName::from_static("x-payment-receipt");

/// Whether the answer carries a receipt header at all.
pub(super) fn has_receipt(headers: &reqwest::header::HeaderMap) -> bool {
    RECEIPTS.iter().any(|name| headers.contains_key(name))
}

/// Whether the answer carries a successful receipt; event streams report theirs in trailers,
/// which are not visible here, so they count as settled.
pub(super) fn settled(headers: &reqwest::header::HeaderMap) -> bool {
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    event_stream || receipt_of(headers).is_some_and(|receipt| receipt.success)
}

/// The receipt link of a streamed answer, when it is on the seller's origin (`seller`, the URL
/// called): a link anywhere else is never fetched.
pub(super) fn receipt_link(
    headers: &reqwest::header::HeaderMap,
    seller: &str,
) -> Option<reqwest::Url> {
    let link = reqwest::Url::parse(headers.get(&RECEIPT_LINK)?.to_str().ok()?).ok()?;
    let seller = reqwest::Url::parse(seller).ok()?;
    (link.origin() == seller.origin()).then_some(link)
}

/// [`relay`], calling `after` once the body is done with (it ended, or the agent left).
pub(super) fn relay_then(
    response: reqwest::Response,
    after: impl FnOnce() + Send + 'static,
) -> Response {
    let (parts, body) = relay(response).into_parts();
    let then = Then {
        inner: body.into_data_stream(),
        after: Some(Box::new(after)),
    };
    Response::from_parts(parts, Body::from_stream(then))
}

/// A body stream that runs its `after` when dropped.
struct Then {
    inner: axum::body::BodyDataStream,
    after: Option<Box<dyn FnOnce() + Send>>,
}

impl futures_core::Stream for Then {
    type Item = Result<axum::body::Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for Then {
    fn drop(&mut self) {
        if let Some(after) = self.after.take() {
            after();
        }
    }
}

/// The seller's answer, streamed through with the headers the agent needs.
pub(super) fn relay(response: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL, RECEIPT_LINK]
        .into_iter()
        .chain(RECEIPTS)
    {
        if let Some(value) = response.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
