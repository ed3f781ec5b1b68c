//! The upstream side: a streaming reverse proxy.
//!
//! The request is rewritten for the offer's upstream (public prefix stripped, chat paths of
//! inference and agent offers normalised to `/v1/chat/completions`, query kept), cleaned
//! (hop-by-hop, `Host`, `Origin`, `Sec-Fetch-*`, x402 and identity headers dropped), given the
//! upstream's own `Authorization`, and streamed both ways.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, header, request};
use http_body_util::BodyExt as _;
use url::Url;

use crate::error::GatewayError;
use crate::route::{Gate, Offer, OfferKind};

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
const STRIPPED_FROM_CLIENT: [&str; 4] = [
    "x-payment",
    "payment-signature",
    "origin",
    crate::siwx::SIGN_IN_WITH_X,
];

/// Headers an upstream secret may not be sent as: hop-by-hop and framing headers, the x402
/// headers and the identities the gateway vouches for.
const NOT_FOR_SECRETS: [&str; 7] = [
    "content-length",
    "content-type",
    "payment-required",
    "payment-response",
    "x-payment-response",
    "x-verified-wallet",
    "x-payment-payer",
];

/// The seller's own credential for the upstream ("bring your own key"): one header, its value
/// marked sensitive, so it is never printed (`Debug` shows `***`) and HTTP/2 never indexes it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamAuth {
    header: HeaderName,
    value: HeaderValue,
}

impl UpstreamAuth {
    /// `secret` sent as `header`. For `Authorization`, a bare token gets the `Bearer` scheme;
    /// a value that already names its scheme (`Basic …`, `Bearer …`: it has a space, which a
    /// token cannot) is sent as it is. Surrounding white space (a key file's newline) is
    /// trimmed.
    pub fn new(header: &str, secret: &str) -> Result<Self, String> {
        let header = auth_header(header)?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        if !secret.is_ascii() {
            return Err("the secret is not a valid header value (non-ASCII)".to_owned());
        }
        let text = if header == header::AUTHORIZATION && !secret.contains(' ') {
            format!("Bearer {secret}")
        } else {
            secret.to_owned()
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            "the secret is not a valid header value (control characters or non-ASCII)".to_owned()
        })?;
        value.set_sensitive(true);
        Ok(Self { header, value })
    }

    /// The header it is sent as.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Sets it on `headers`, replacing whatever is there under that name.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(self.header.clone(), self.value.clone());
    }
}

impl std::fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamAuth({}: ***)", self.header)
    }
}

/// `name` as the header an upstream secret is sent as, or why it cannot be.
pub fn auth_header(name: &str) -> Result<HeaderName, String> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not an HTTP header name"))?;
    let lower = header.as_str();
    if HOP_BY_HOP.contains(&lower)
        || STRIPPED_FROM_CLIENT.contains(&lower)
        || NOT_FOR_SECRETS.contains(&lower)
        || lower.starts_with("sec-")
    {
        return Err(format!(
            "{name:?} is managed by the gateway; send the secret as Authorization or an API-key header such as X-Api-Key"
        ));
    }
    Ok(header)
}

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
    let mut url = offer.upstream.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    // An OpenAI-style base URL (`https://api.example/v1`) already holds the version: the
    // buyer's `/v1/…` lands on it once, not twice.
    if chat
        && base.ends_with("/v1")
        && let Some(below) = rest.strip_prefix("/v1")
        && (below.is_empty() || below.starts_with('/'))
    {
        rest = below.to_owned();
    }
    if rest.is_empty() {
        rest.push('/');
    }
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

/// The client's headers as the upstream gets them. The client's `Authorization` is dropped on
/// paid and auth routes (the buyer paid or signed in; their credentials are not the seller's
/// to pass on) and wherever it carries a sign-in credential or session of ours; our session
/// cookie never leaves; the client's copy of the offer's secret header (`Authorization` or
/// another) is always replaced.
fn copy_request_headers(from: &HeaderMap, auth: Option<&UpstreamAuth>, gate: Gate) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len() + 1);
    let drop_authorization = gate != Gate::Free;
    let named = connection_named(from);
    for (name, value) in from {
        let name_str = name.as_str();
        if HOP_BY_HOP.contains(&name_str)
            || named.iter().any(|n| n == name_str)
            || STRIPPED_FROM_CLIENT.contains(&name_str)
            || name_str.starts_with("sec-fetch-")
            || auth.is_some_and(|a| a.header == name)
        {
            continue;
        }
        if name == header::AUTHORIZATION && (drop_authorization || is_sign_in(value)) {
            continue;
        }
        if name == header::COOKIE {
            if let Some(kept) = crate::siwx::cookie_without_session(value) {
                out.append(header::COOKIE, kept);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(auth) = auth {
        auth.apply(&mut out);
    }
    out
}

/// `Authorization: SIWX …` or a `Bearer` session token of ours.
fn is_sign_in(value: &HeaderValue) -> bool {
    let text = value.as_bytes();
    text.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"siwx "))
        || value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| crate::siwx::keys::is_session_token(token.trim()))
}

fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let named = connection_named(from);
    for (name, value) in from {
        let text = name.as_str();
        if !HOP_BY_HOP.contains(&text) && !named.iter().any(|n| n == text) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The header names a `Connection` header lists: hop-by-hop for this message (RFC 9110
/// §7.6.1), never forwarded. Empty (no allocation) in the usual case of no such header.
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
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
                offer.upstream_auth.as_ref(),
                parts.extensions.get::<Gate>().copied().unwrap_or_default(),
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
        let hosted = with(OfferKind::Inference, "https://api.example/v1");
        for (method, path, upstream) in [
            (
                Method::POST,
                "/services/foo",
                "https://api.example/v1/chat/completions",
            ),
            (
                Method::POST,
                "/services/foo/v1/chat/completions",
                "https://api.example/v1/chat/completions",
            ),
            (
                Method::GET,
                "/services/foo/v1/models",
                "https://api.example/v1/models",
            ),
            (
                Method::GET,
                "/services/foo/models",
                "https://api.example/v1/models",
            ),
            (
                Method::GET,
                "/services/foo/v1x",
                "https://api.example/v1/v1x",
            ),
        ] {
            assert_eq!(url(&hosted, method, path, None), upstream, "{path}");
        }
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
        let bearer = UpstreamAuth::new("Authorization", "upstream\n").unwrap();
        for gate in [Gate::Paid, Gate::Free] {
            let out = copy_request_headers(&headers, Some(&bearer), gate);
            let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
            assert_eq!(names, ["accept", "authorization"]);
            assert_eq!(out[header::AUTHORIZATION], "Bearer upstream");
            assert!(out[header::AUTHORIZATION].is_sensitive());
        }
        let out = copy_request_headers(&headers, None, Gate::Free);
        assert_eq!(
            out[header::AUTHORIZATION],
            "Bearer client",
            "kept on a free route of an offer without upstream auth"
        );
        let out = copy_request_headers(&headers, None, Gate::Paid);
        assert!(
            !out.contains_key(header::AUTHORIZATION),
            "never passed on from a paying buyer"
        );

        // Sign-in credentials and our session never reach the upstream; other cookies do.
        let mut signed_in = HeaderMap::new();
        signed_in.insert("sign-in-with-x", "e30=".parse().unwrap());
        signed_in.insert("cookie", "a=1; obol_siwx=siwx1.x.y; b=2".parse().unwrap());
        signed_in.insert("authorization", "Bearer siwx1.x.y".parse().unwrap());
        let out = copy_request_headers(&signed_in, None, Gate::Free);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["cookie"], "a=1; b=2");
        signed_in.insert("authorization", "SIWX bWVzc2FnZQ==.c2ln".parse().unwrap());
        signed_in.insert("cookie", "obol_siwx=siwx1.x.y".parse().unwrap());
        assert!(copy_request_headers(&signed_in, None, Gate::Free).is_empty());

        headers.insert("x-api-key", "client-key".parse().unwrap());
        let named = UpstreamAuth::new("X-Api-Key", "sk-seller").unwrap();
        let out = copy_request_headers(&headers, Some(&named), Gate::Free);
        assert_eq!(out["x-api-key"], "sk-seller");
        assert_eq!(out.get_all("x-api-key").iter().count(), 1);
        assert_eq!(out[header::AUTHORIZATION], "Bearer client");
    }

    #[test]
    fn headers_named_in_connection_are_hop_by_hop_both_ways() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            "keep-alive, X-Internal-Token".parse().unwrap(),
        );
        headers.insert("x-internal-token", "secret".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        let out = copy_request_headers(&headers, None, Gate::Free);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept"]);
        let mut to = HeaderMap::new();
        copy_response_headers(&headers, &mut to);
        let names: Vec<&str> = to.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn upstream_auth_values_and_headers() {
        let value = |header: &str, secret: &str| {
            let mut out = HeaderMap::new();
            UpstreamAuth::new(header, secret).unwrap().apply(&mut out);
            out.values().next().unwrap().to_str().unwrap().to_owned()
        };
        assert_eq!(value("authorization", " sk-1 \n"), "Bearer sk-1");
        assert_eq!(
            value("Authorization", "Basic dXNlcjpwdw=="),
            "Basic dXNlcjpwdw=="
        );
        assert_eq!(value("X-Api-Key", "k 1"), "k 1");
        let auth = UpstreamAuth::new("X-Api-Key", "sk-secret").unwrap();
        assert_eq!(format!("{auth:?}"), "UpstreamAuth(x-api-key: ***)");
        for (header, secret, problem) in [
            ("Authorization", " \n", "empty"),
            ("Authorization", "a\u{7}b", "not a valid header value"),
            ("Authorization", "é", "not a valid header value"),
            ("bad header", "x", "not an HTTP header name"),
            ("Host", "x", "managed by the gateway"),
            ("X-Payment-Payer", "x", "managed by the gateway"),
            ("Payment-Signature", "x", "managed by the gateway"),
            ("Content-Length", "1", "managed by the gateway"),
        ] {
            let error = UpstreamAuth::new(header, secret).unwrap_err();
            assert!(error.contains(problem), "{header}: {error}");
        }
    }
}
