//! The upstream side: a streaming reverse proxy.
//!
//! The request is rewritten for the offer's upstream (public prefix stripped, chat paths of
//! inference and agent offers normalised to `/v1/chat/completions`, query kept), cleaned
//! (hop-by-hop, `Host`, `Origin`, `Sec-Fetch-*`, x402 and identity headers dropped), given the
//! upstream's own `Authorization`, and streamed both ways.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, header, request};
use http_body_util::BodyExt as _;
use url::Url;

use crate::error::GatewayError;
use crate::route::{Offer, OfferKind};

/// Default budget for the upstream to start answering (the body may stream longer).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Headers that never cross the proxy (RFC 9110 §7.6.1 hop-by-hop, plus ones we replace).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Client headers the upstream must not see: the payment itself, and `Origin` (paid calls are
/// server-to-server from the upstream's point of view). Identity headers are stripped at the
/// gateway's entrance, before the paygate sets the verified payer.
const STRIPPED_FROM_CLIENT: [&str; 3] = ["x-payment", "payment-signature", "origin"];

/// The upstream URL for a request: the offer's base, the path below the public prefix, the
/// query. Refused when the path could leave the base once decoded (see [`crate::path`]), and
/// checked again on the built URL: whatever a URL library collapses, the result stays under
/// the offer's upstream base.
pub fn upstream_url(
    offer: &Offer,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Result<Url, GatewayError> {
    crate::path::check(path).map_err(GatewayError::invalid_path)?;
    let prefix = offer.strip_prefix.trim_end_matches('/');
    let mut rest = path
        .strip_prefix(prefix)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(path)
        .to_owned();
    let chat = matches!(offer.kind, OfferKind::Inference | OfferKind::Agent);
    if chat
        && method == Method::POST
        && matches!(
            rest.as_str(),
            "" | "/" | "/v1" | "/v1/" | "/chat/completions"
        )
    {
        rest = "/v1/chat/completions".to_owned();
    }
    if rest.is_empty() {
        rest.push('/');
    }
    let mut url = offer.upstream.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{rest}"));
    url.set_query(query);
    let under_base = url.path() == base
        || url
            .path()
            .strip_prefix(base.as_str())
            .is_some_and(|below| below.starts_with('/'));
    if !under_base {
        return Err(GatewayError::invalid_path(
            crate::path::PathError::DotSegment,
        ));
    }
    Ok(url)
}

fn copy_request_headers(from: &HeaderMap, upstream_auth: Option<&str>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let name_str = name.as_str();
        if HOP_BY_HOP.contains(&name_str)
            || STRIPPED_FROM_CLIENT.contains(&name_str)
            || name_str.starts_with("sec-fetch-")
        {
            continue;
        }
        if name == header::AUTHORIZATION && upstream_auth.is_some() {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(auth) = upstream_auth
        && let Ok(value) = auth.parse()
    {
        out.insert(header::AUTHORIZATION, value);
    }
    out
}

fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The HTTP client towards upstreams (pooled; redirects are returned, not followed).
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    timeout: Duration,
    body_limit: usize,
}

impl UpstreamClient {
    /// A client that waits at most `timeout` for response headers and refuses request bodies
    /// over `body_limit` bytes.
    pub fn new(timeout: Duration, body_limit: usize) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GatewayError::upstream_unavailable(e.to_string()))?;
        Ok(Self {
            http,
            timeout,
            body_limit,
        })
    }

    /// Sends the request to `offer`'s upstream and returns its response with a streaming
    /// body.
    pub async fn forward(
        &self,
        offer: &Offer,
        parts: &request::Parts,
        body: Body,
    ) -> Result<Response<Body>, GatewayError> {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.body_limit) {
            return Err(GatewayError::body_too_large(self.body_limit));
        }
        let url = upstream_url(offer, &parts.method, parts.uri.path(), parts.uri.query())?;
        let limited = http_body_util::Limited::new(body, self.body_limit);
        let stream = limited.into_data_stream();
        let request = self
            .http
            .request(parts.method.clone(), url)
            .headers(copy_request_headers(
                &parts.headers,
                offer.upstream_auth.as_deref(),
            ))
            .body(reqwest::Body::wrap_stream(stream));
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => {
                return Err(GatewayError::upstream_unavailable(format!(
                    "the upstream did not answer within {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) if is_body_limit(&e) => {
                return Err(GatewayError::body_too_large(self.body_limit));
            }
            Ok(Err(e)) => {
                return Err(GatewayError::upstream_unavailable(format!(
                    "{}: {}",
                    offer.name,
                    e.without_url()
                )));
            }
            Ok(Ok(response)) => response,
        };
        let mut out = Response::builder().status(response.status().as_u16());
        if let Some(headers) = out.headers_mut() {
            copy_response_headers(response.headers(), headers);
        }
        out.body(Body::from_stream(response.bytes_stream()))
            .map_err(|e| GatewayError::upstream_unavailable(e.to_string()))
    }
}

fn is_body_limit(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// True for `text/event-stream` responses (settled after the stream completes).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::route::tests::offer;
    use axum::http::HeaderName;

    fn with(kind: OfferKind, upstream: &str) -> Offer {
        let mut offer = Arc::unwrap_or_clone(offer("foo", "/services/foo"));
        offer.kind = kind;
        offer.upstream = upstream.parse().unwrap();
        offer
    }

    #[test]
    fn rewrites_paths() {
        let http = with(OfferKind::Http, "http://127.0.0.1:9000/api/");
        let url = |o: &Offer, m: Method, p: &str, q: Option<&str>| {
            upstream_url(o, &m, p, q).unwrap().to_string()
        };
        assert_eq!(
            url(&http, Method::GET, "/services/foo/items/7", Some("a=1")),
            "http://127.0.0.1:9000/api/items/7?a=1"
        );
        assert_eq!(
            url(&http, Method::GET, "/services/foo", None),
            "http://127.0.0.1:9000/api/"
        );
        let llm = with(OfferKind::Inference, "http://127.0.0.1:11434");
        for path in [
            "/services/foo",
            "/services/foo/",
            "/services/foo/v1",
            "/services/foo/chat/completions",
            "/services/foo/v1/chat/completions",
        ] {
            assert_eq!(
                url(&llm, Method::POST, path, None),
                "http://127.0.0.1:11434/v1/chat/completions",
                "{path}"
            );
        }
        assert_eq!(
            url(&llm, Method::GET, "/services/foo/v1/models", None),
            "http://127.0.0.1:11434/v1/models"
        );
    }

    #[test]
    fn never_leaves_the_upstream_base() {
        let http = with(OfferKind::Http, "http://127.0.0.1:9000/api/foo");
        for path in [
            "/services/foo/../admin",
            "/services/foo/%2e%2e/%2e%2e/admin",
            "/services/foo/%2E%2E/admin",
            "/services/foo/..%2f..%2fadmin",
            "/services/foo/..\\admin",
        ] {
            let refused = upstream_url(&http, &Method::GET, path, None).unwrap_err();
            assert_eq!(refused.reason, "invalid_path", "{path}");
        }
    }

    #[test]
    fn cleans_headers() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("x-payment", "p"),
            ("payment-signature", "p"),
            ("origin", "https://evil"),
            ("sec-fetch-site", "cross-site"),
            ("connection", "keep-alive"),
            ("authorization", "Bearer client"),
            ("accept", "application/json"),
            ("host", "gateway"),
        ] {
            headers.insert(HeaderName::from_static(k), v.parse().unwrap());
        }
        let out = copy_request_headers(&headers, Some("Bearer upstream"));
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "authorization"]);
        assert_eq!(out[header::AUTHORIZATION], "Bearer upstream");
        let out = copy_request_headers(&headers, None);
        assert_eq!(
            out[header::AUTHORIZATION],
            "Bearer client",
            "kept when the offer has no upstream auth"
        );
    }
}
