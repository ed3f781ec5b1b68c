//! The 402 answer.
//!
//! Body and `PAYMENT-REQUIRED` header carry the same v2 `PaymentRequired`. Each option is
//! listed with its CAIP-2 network only (x402 v2 §5.1.2); v1 `X-PAYMENT` payments naming the
//! legacy network keep working.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use obol_x402::header::{self as x402_header, PAYMENT_REQUIRED};
use obol_x402::network;
use obol_x402::wire::{X402Version, v2};
use serde_json::{Map, Value, json};

use crate::route::Offer;

/// The `error` of a first challenge.
pub const PAYMENT_REQUIRED_ERROR: &str = "Payment required for this resource";

/// Headers browsers may read from x402 answers.
pub const EXPOSE_HEADERS: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE";

/// Why a payment was refused, echoed in `extensions.paymentFailure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFailure {
    /// Machine reason (`no_matching_requirement`, `payment_invalid`, …).
    pub reason: &'static str,
    /// Specifics.
    pub detail: String,
    /// What to do about it.
    pub hint: Option<&'static str>,
}

/// The offer's `accepts`: each option under its CAIP-2 network. A v2 challenge names networks
/// only by CAIP-2 (x402 v2 §5.1.2); a v1 `X-PAYMENT` naming the legacy network (`base-sepolia`)
/// still matches its option (`matching`).
pub fn accepts(offer: &Offer) -> Vec<v2::PaymentRequirements> {
    offer
        .options
        .iter()
        .map(|option| {
            let mut requirement = option.requirements.clone();
            requirement.network = network::normalize(&requirement.network);
            requirement
        })
        .collect()
}

/// Builds the `PaymentRequired` for `offer` at `resource_url`.
pub fn payment_required(
    offer: &Offer,
    resource_url: String,
    failure: Option<&PaymentFailure>,
) -> v2::PaymentRequired {
    let mut extensions = Map::new();
    let discovery = offer.discovery.as_deref();
    if let Some(bazaar) = discovery.and_then(|d| d.bazaar.clone()) {
        extensions.insert("bazaar".into(), bazaar);
    }
    if offer.options.iter().any(|o| o.eip2612_gas_sponsoring) {
        extensions.insert("eip2612GasSponsoring".into(), eip2612_extension());
    }
    let error = match failure {
        None => PAYMENT_REQUIRED_ERROR.to_owned(),
        Some(failure) => {
            let mut entry = Map::new();
            entry.insert("reason".into(), failure.reason.into());
            entry.insert("detail".into(), failure.detail.clone().into());
            if let Some(hint) = failure.hint {
                entry.insert("hint".into(), hint.into());
            }
            extensions.insert("paymentFailure".into(), Value::Object(entry));
            match failure.hint {
                Some(hint) => format!("Payment invalid: {} — {hint}", failure.detail),
                None => format!("Payment invalid: {}", failure.detail),
            }
        }
    };
    let description = if offer.description.is_empty() {
        format!("Payment required for {}", offer.strip_prefix)
    } else {
        offer.description.clone()
    };
    v2::PaymentRequired {
        x402_version: X402Version,
        error: Some(error),
        resource: v2::ResourceInfo {
            url: resource_url,
            description: Some(description),
            mime_type: Some(offer.mime_type.clone()),
            service_name: discovery.and_then(|d| d.service_name.clone()),
            tags: discovery
                .map(|d| d.tags.clone())
                .filter(|tags| !tags.is_empty()),
            icon_url: discovery.and_then(|d| d.icon_url.clone()),
        },
        accepts: accepts(offer),
        extensions: (!extensions.is_empty()).then_some(extensions),
        facilitator: None,
    }
}

fn eip2612_extension() -> Value {
    json!({
        "info": {
            "description": "The facilitator can apply an EIP-2612 permit approving Permit2 in the settlement transaction, so no prior approval is needed.",
            "version": "1"
        },
        "schema": {
            "type": "object",
            "required": ["from", "asset", "spender", "amount", "nonce", "deadline", "signature", "version"],
            "properties": {
                "from": {"type": "string"}, "asset": {"type": "string"},
                "spender": {"type": "string", "description": "Permit2: 0x000000000022D473030F116dDEE9F6B43aC78BA3"},
                "amount": {"type": "string"}, "nonce": {"type": "string"}, "deadline": {"type": "string"},
                "signature": {"type": "string"}, "version": {"type": "string"}
            }
        }
    })
}

/// The 402 response: JSON body, `PAYMENT-REQUIRED`, a catalog `Link`, CORS exposure.
pub fn response(required: &v2::PaymentRequired) -> Response {
    Encoded::new(required).response()
}

/// A challenge encoded once: its JSON body and its `PAYMENT-REQUIRED` header value (both cheap
/// to clone: reference-counted bytes).
#[derive(Clone)]
struct Encoded {
    body: Bytes,
    header: Option<HeaderValue>,
}

impl Encoded {
    fn new(required: &v2::PaymentRequired) -> Self {
        let body = serde_json::to_vec(required).unwrap_or_default().into();
        let header = x402_header::encode(required)
            .ok()
            .and_then(|value| HeaderValue::from_str(&value).ok());
        Self { body, header }
    }

    fn response(self) -> Response {
        let mut response = (StatusCode::PAYMENT_REQUIRED, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(value) = self.header {
            headers.insert(PAYMENT_REQUIRED, value);
        }
        headers.insert(
            header::LINK,
            HeaderValue::from_static("</api/services.json>; rel=\"catalog\""),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        response
    }
}

/// The most first challenges [`Challenges`] keeps; it starts over when full.
pub const CHALLENGE_CACHE_CAPACITY: usize = 1024;

/// First challenges (no payment presented) encoded once per offer and resource URL: the same
/// bytes [`response`] builds, without the JSON and base64 work on every unpaid request. An entry
/// holds its offer, and is used only for that very offer (a route table reload brings new
/// offers, so a changed price is never answered from an old entry).
#[derive(Default)]
pub struct Challenges {
    by_url: Mutex<HashMap<String, (Arc<Offer>, Encoded)>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// The first challenge of `offer` at `resource_url`.
    pub fn response(&self, offer: &Arc<Offer>, resource_url: String) -> Response {
        let cached = {
            let by_url = self.by_url.lock().unwrap_or_else(PoisonError::into_inner);
            by_url
                .get(&resource_url)
                .filter(|(owner, _)| Arc::ptr_eq(owner, offer))
                .map(|(_, encoded)| encoded.clone())
        };
        if let Some(encoded) = cached {
            return encoded.response();
        }
        let encoded = Encoded::new(&payment_required(offer, resource_url.clone(), None));
        let mut by_url = self.by_url.lock().unwrap_or_else(PoisonError::into_inner);
        if by_url.len() >= CHALLENGE_CACHE_CAPACITY {
            by_url.clear();
        }
        by_url.insert(resource_url, (Arc::clone(offer), encoded.clone()));
        encoded.response()
    }
}

/// Whether the request is a browser page load: `Accept` names `text/html` and the user agent is
/// a `Mozilla`-family browser (the rule of the official SDKs' paywall).
pub fn is_browser(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    text(header::ACCEPT).contains("text/html") && text(header::USER_AGENT).contains("Mozilla")
}

/// The 402 for a browser: the same status and `PAYMENT-REQUIRED` header as [`response`], with
/// a readable page in place of the JSON body: what is sold, for how much, and how to pay.
pub fn html_response(offer: &Offer, required: &v2::PaymentRequired) -> Response {
    let mut response = response(required);
    let mut options = String::new();
    for option in &offer.options {
        let requirement = &option.requirements;
        let network = network::resolve(&requirement.network)
            .map_or(requirement.network.as_str(), |known| known.name);
        let _ = write!(
            options,
            "<li><b>{price}</b> on {network} — <code>{amount}</code> atomic units of <code>{asset}</code>, paid to <code>{pay_to}</code></li>",
            price = escape_html(&option.price.label(&option.asset_symbol)),
            network = escape_html(network),
            amount = escape_html(&requirement.amount.to_string()),
            asset = escape_html(&requirement.asset),
            pay_to = escape_html(&requirement.pay_to),
        );
    }
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Payment required</title>
<style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:40px auto;padding:0 20px;color:#1d1f24}} code{{word-break:break-all}} .note{{color:#5b606b}}</style>
</head><body>
<h1>402 — Payment required</h1>
<p>{description}</p>
<p>This resource is sold per use over <a href="https://x402.org">x402</a>. Accepted payments:</p>
<ul>{options}</ul>
<p class="note">Call <code>{url}</code> from an x402 client (for example <code>obol buy</code>, <code>@x402/fetch</code> or the <code>x402</code> Python package): it reads the <code>PAYMENT-REQUIRED</code> header of this answer, signs a payment and retries.</p>
<p><a href="/">All services</a> · <a href="/api/services.json">services.json</a> · <a href="/skill.md">skill.md</a></p>
</body></html>
"#,
        description = escape_html(required.resource.description.as_deref().unwrap_or("")),
        url = escape_html(&required.resource.url),
    );
    *response.body_mut() = page.into();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A host header value we are willing to echo into `resource.url`.
fn clean_host(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(value)
}

fn is_local(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(name, "localhost" | "127.0.0.1" | "[::1]" | "obol.stack")
        || name.ends_with(".localhost")
        || name.starts_with("127.")
}

/// The URL buyers paid for: `public_base` + path when a public URL is configured, otherwise
/// scheme and host from `X-Forwarded-Proto`/`X-Forwarded-Host`/`Host` (https unless the host is
/// local and nothing says https), path from `X-Forwarded-Uri` or the request.
pub fn resource_url(public_base: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = get("x-forwarded-uri")
        .filter(|p| p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' '))
        .map_or_else(
            || uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            str::to_owned,
        );
    if let Some(base) = public_base {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    let host = get("x-forwarded-host")
        .and_then(|h| clean_host(h.split(',').next().unwrap_or("").trim()))
        .or_else(|| get("host").and_then(clean_host))
        .unwrap_or("localhost");
    let scheme = match get("x-forwarded-proto").map(|p| p.split(',').next().unwrap_or("").trim()) {
        Some("https") => "https",
        Some("http") => "http",
        _ if is_local(host) => "http",
        _ => "https",
    };
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::route::PaymentOption;
    use crate::route::tests::offer;

    fn priced_offer() -> Offer {
        let requirements: v2::PaymentRequirements = serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}
        }))
        .unwrap();
        let mut offer = Arc::unwrap_or_clone(offer("foo", "/services/foo"));
        offer.options = vec![PaymentOption {
            requirements,
            price: obol_x402::pricing::Price {
                unit: obol_x402::pricing::PriceUnit::PerRequest,
                amount: "0.001".parse().unwrap(),
            },
            asset_symbol: "USDC".into(),
            eip2612_gas_sponsoring: false,
            metering: None,
        }];
        offer
    }

    #[test]
    fn browsers_are_told_apart_from_clients() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!is_browser(&headers), "no user agent");
        headers.insert(header::USER_AGENT, HeaderValue::from_static("Mozilla/5.0"));
        assert!(is_browser(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_browser(&headers), "asks for JSON");
    }

    #[tokio::test]
    async fn the_paywall_escapes_what_sellers_write() {
        let mut offer = priced_offer();
        offer.description = "<script>alert('x')</script> & more".into();
        let required = payment_required(&offer, "https://h/services/foo?a=<b>".into(), None);
        let response = html_response(&offer, &required);
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        assert!(response.headers().contains_key(PAYMENT_REQUIRED));
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(body.contains("?a=&lt;b&gt;"));
    }

    #[test]
    fn accepts_lists_caip2_networks_only() {
        let mut offer = priced_offer();
        let mut legacy = offer.options[0].clone();
        legacy.requirements.network = "base-sepolia".into();
        offer.options.push(legacy);
        let networks: Vec<String> = accepts(&offer).into_iter().map(|r| r.network).collect();
        assert_eq!(networks, ["eip155:84532", "eip155:84532"]);
    }

    async fn parts(response: Response) -> (HeaderMap, Bytes) {
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (headers, body)
    }

    /// A cached challenge is byte for byte the one built afresh; another offer at the same URL
    /// (a reloaded route table with a new price) gets its own, never the cached one.
    #[tokio::test]
    async fn cached_challenges_equal_fresh_ones_and_follow_the_offer() {
        let challenges = Challenges::default();
        let url = "https://seller.example/services/foo";
        let offer = Arc::new(priced_offer());
        let fresh = parts(response(&payment_required(&offer, url.into(), None))).await;
        for _ in 0..2 {
            assert_eq!(parts(challenges.response(&offer, url.into())).await, fresh);
        }
        let mut repriced = priced_offer();
        repriced.options[0].requirements.amount = 2000_u64.into();
        let repriced = Arc::new(repriced);
        let (headers, _) = parts(challenges.response(&repriced, url.into())).await;
        let decoded: v2::PaymentRequired =
            x402_header::decode(headers[PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
        assert_eq!(decoded.accepts[0].amount, 2000_u64.into());
        let (headers, _) = parts(challenges.response(&repriced, "https://other/x".into())).await;
        let decoded: v2::PaymentRequired =
            x402_header::decode(headers[PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
        assert_eq!(decoded.resource.url, "https://other/x");
    }

    #[test]
    fn challenge_body_and_header_agree() {
        let required = payment_required(
            &priced_offer(),
            "https://seller.example/services/foo".into(),
            None,
        );
        let response = response(&required);
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let header = response.headers()[PAYMENT_REQUIRED].to_str().unwrap();
        let decoded: v2::PaymentRequired = x402_header::decode(header).unwrap();
        assert_eq!(decoded, required);
        assert_eq!(decoded.error.as_deref(), Some(PAYMENT_REQUIRED_ERROR));
        assert!(
            response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("PAYMENT-RESPONSE")
        );
        assert!(required.extensions.is_none());

        let failure = PaymentFailure {
            reason: "no_matching_requirement",
            detail: "amount 999 ≠ 1000".into(),
            hint: Some("pay one of accepts[]"),
        };
        let again = payment_required(&priced_offer(), "u".into(), Some(&failure));
        assert_eq!(
            again.error.as_deref(),
            Some("Payment invalid: amount 999 ≠ 1000 — pay one of accepts[]")
        );
        assert_eq!(
            again.extensions.unwrap()["paymentFailure"]["reason"],
            "no_matching_requirement"
        );
    }

    #[test]
    fn resource_urls() {
        let uri: Uri = "/services/foo/v1/chat/completions?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, &uri),
            "http://127.0.0.1:8080/services/foo/v1/chat/completions?x=1"
        );
        headers.insert("host", "seller.example".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, &uri),
            "https://seller.example/services/foo/v1/chat/completions?x=1"
        );
        headers.insert(
            "x-forwarded-host",
            "tunnel.example, proxy.internal".parse().unwrap(),
        );
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-uri", "/services/foo/x".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, &uri),
            "https://tunnel.example/services/foo/x"
        );
        // A hostile forwarded host is ignored.
        headers.insert("x-forwarded-host", "evil.example/<script>".parse().unwrap());
        assert_eq!(
            resource_url(None, &headers, &uri),
            "https://seller.example/services/foo/x"
        );
        assert_eq!(
            resource_url(Some("https://public.example/"), &headers, &uri),
            "https://public.example/services/foo/x"
        );
    }
}
