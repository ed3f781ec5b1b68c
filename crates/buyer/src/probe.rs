//! Probing a seller: call it unpaid and read what it asks for.
//!
//! v2 sellers put the `PaymentRequired` in the `PAYMENT-REQUIRED` header (the body may repeat
//! it); v1 sellers put it in the JSON body, with `maxAmountRequired` for the amount. Both come
//! out as v2 requirements with CAIP-2 networks. Redirects are not followed
//! ([`crate::seller::send`]).

use std::time::Duration;

use obol_x402::header::{
    self as x402_header, HeaderError, PAYMENT_REQUIRED, PAYMENT_SIGNATURE, X_PAYMENT,
};
use obol_x402::network;
use obol_x402::wire::{PaymentRequired, X402Version, v1, v2};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::seller::{self, SellerError};

/// The default `User-Agent`: some sellers sit behind WAFs that block library defaults.
pub const DEFAULT_USER_AGENT: &str = concat!("obol-buyer/", env!("CARGO_PKG_VERSION"));

/// The body of the chat-completions probe (obol-stack.md §3.3): the cheapest valid request.
pub const CHAT_PROBE_BODY: &str =
    r#"{"model":"probe","messages":[{"role":"user","content":"probe"}],"max_tokens":1}"#;

/// Bodies larger than this are not read (a 402 is small).
const MAX_BODY: usize = 256 * 1024;

/// What a seller asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Offered {
    /// The protocol version the seller spoke.
    pub version: u8,
    /// The resource being sold (v2; the URL alone for v1).
    pub resource: v2::ResourceInfo,
    /// Every accepted payment, networks in CAIP-2.
    pub accepts: Vec<v2::PaymentRequirements>,
}

/// Why a probe did not yield payment requirements.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The seller could not be reached, did not answer in time, or redirected the probe.
    #[error("probe failed: {0}")]
    Seller(#[from] SellerError),
    /// The seller answered something other than 402.
    #[error("not payment gated: expected 402, got {0}")]
    NotPaymentGated(u16),
    /// A 402 without any payment option.
    #[error("invalid pricing: the 402 lists no accepted payment")]
    NoAccepts,
    /// A 402 whose requirements cannot be read.
    #[error("invalid pricing: {0}")]
    Malformed(String),
}

/// Reads the requirements out of a seller's answer.
pub fn parse_402(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    url: &str,
) -> Result<Offered, ProbeError> {
    if status != StatusCode::PAYMENT_REQUIRED {
        return Err(ProbeError::NotPaymentGated(status.as_u16()));
    }
    let required: PaymentRequired = match headers.get(PAYMENT_REQUIRED) {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ProbeError::Malformed("PAYMENT-REQUIRED is not ASCII".into()))?;
            x402_header::decode(text)
                .map_err(|e| ProbeError::Malformed(format!("PAYMENT-REQUIRED: {e}")))?
        }
        None => serde_json::from_slice(body)
            .map_err(|e| ProbeError::Malformed(format!("402 body: {e}")))?,
    };
    let (version, resource) = match &required {
        PaymentRequired::V2(inner) => (2, inner.resource.clone()),
        PaymentRequired::V1(_) => (1, v2::ResourceInfo::new(url)),
    };
    let mut accepts = required.accepts_v2();
    if accepts.is_empty() {
        return Err(ProbeError::NoAccepts);
    }
    for requirement in &mut accepts {
        if let Ok(known) = network::resolve(&requirement.network) {
            known.caip2.clone_into(&mut requirement.network);
        }
    }
    // The gateway lists each option twice (CAIP-2, then legacy); once normalised they repeat.
    let mut unique: Vec<v2::PaymentRequirements> = Vec::with_capacity(accepts.len());
    for requirement in accepts {
        if !unique.contains(&requirement) {
            unique.push(requirement);
        }
    }
    Ok(Offered {
        version,
        resource,
        accepts: unique,
    })
}

/// The header carrying `payment` to a seller that spoke `version`: `PAYMENT-SIGNATURE` with the
/// v2 payload, or `X-PAYMENT` with the v1 shape (scheme and legacy network name repeated).
pub fn payment_header(
    version: u8,
    payment: &v2::PaymentPayload,
) -> Result<(&'static str, String), HeaderError> {
    if version == 1 {
        let accepted = &payment.accepted;
        let legacy = network::legacy_name(&accepted.network);
        let v1 = v1::PaymentPayload {
            x402_version: X402Version,
            scheme: accepted.scheme.clone(),
            network: legacy,
            payload: payment.payload.clone(),
        };
        Ok((X_PAYMENT, x402_header::encode(&v1)?))
    } else {
        Ok((PAYMENT_SIGNATURE, x402_header::encode(payment)?))
    }
}

/// An HTTP client for probing sellers.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    /// A prober with `user_agent` (default [`DEFAULT_USER_AGENT`]) and a per-probe `timeout`.
    ///
    /// # Errors
    ///
    /// [`ProbeError::Seller`] when the client cannot be built (a `user_agent` that is not a
    /// valid header value).
    pub fn new(user_agent: Option<&str>, timeout: Duration) -> Result<Self, ProbeError> {
        let client = seller::client(user_agent, |builder| builder.timeout(timeout))?;
        Ok(Self { client })
    }

    /// Probes `url` with a GET.
    pub async fn get(&self, url: &str) -> Result<Offered, ProbeError> {
        self.read(url, self.client.get(url)).await
    }

    /// Probes a chat-completions `url` with the one-token probe request.
    pub async fn chat(&self, url: &str) -> Result<Offered, ProbeError> {
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(CHAT_PROBE_BODY);
        self.read(url, request).await
    }

    async fn read(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Offered, ProbeError> {
        read_offer(seller::send(request).await?, url).await
    }
}

/// Reads a seller's answer (a 402 body is read up to 256 KiB) into what it asks for.
pub async fn read_offer(mut response: reqwest::Response, url: &str) -> Result<Offered, ProbeError> {
    let status = response.status();
    let body = if status == StatusCode::PAYMENT_REQUIRED {
        seller::read_body(&mut response, MAX_BODY)
            .await?
            .ok_or_else(|| {
                ProbeError::Malformed(format!("402 body larger than {MAX_BODY} bytes"))
            })?
    } else {
        Vec::new()
    };
    parse_402(status, response.headers(), &body, url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// The v2 `PAYMENT-REQUIRED` vector of x402.md §8 (shared with the x402 crate's tests).
    const V2_HEADER: &str = include_str!("../../x402/tests/vectors/v2-payment-required.b64");

    #[test]
    fn v2_header_and_v1_body() {
        let mut headers = HeaderMap::new();
        headers.insert(PAYMENT_REQUIRED, V2_HEADER.trim().parse().unwrap());
        let offered = parse_402(StatusCode::PAYMENT_REQUIRED, &headers, b"", "http://s/x").unwrap();
        assert_eq!(offered.version, 2);
        assert!(
            offered
                .accepts
                .iter()
                .all(|r| r.network.starts_with("eip155:"))
        );

        let body = serde_json::json!({
            "x402Version": 1, "error": "X-PAYMENT header is required",
            "accepts": [{
                "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
                "resource": "http://s/x", "description": "", "mimeType": "application/json",
                "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 60,
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "extra": {"name": "USDC", "version": "2"}
            }]
        });
        let offered = parse_402(
            StatusCode::PAYMENT_REQUIRED,
            &HeaderMap::new(),
            body.to_string().as_bytes(),
            "http://s/x",
        )
        .unwrap();
        assert_eq!(offered.version, 1);
        assert_eq!(offered.accepts[0].network, "eip155:84532");
        assert_eq!(offered.accepts[0].amount.to_string(), "10000");
        assert_eq!(offered.resource.url, "http://s/x");
    }

    #[test]
    fn v1_sellers_get_x_payment_in_the_v1_shape() {
        let payment: obol_x402::wire::PaymentPayload = x402_header::decode(
            include_str!("../../x402/tests/vectors/v2-payment-signature.b64").trim(),
        )
        .unwrap();
        let obol_x402::wire::PaymentPayload::V2(payment) = payment else {
            panic!("a v2 vector");
        };
        let (name, value) = payment_header(1, &payment).unwrap();
        assert_eq!(name, X_PAYMENT);
        let v1: v1::PaymentPayload = x402_header::decode(&value).unwrap();
        assert_eq!(v1.network, "base-sepolia");
        assert_eq!(v1.payload, payment.payload);
        let (name, value) = payment_header(2, &payment).unwrap();
        assert_eq!(name, PAYMENT_SIGNATURE);
        assert_eq!(
            x402_header::decode::<v2::PaymentPayload>(&value).unwrap(),
            payment
        );
    }

    #[test]
    fn failures_are_classified() {
        let none = HeaderMap::new();
        let cases: [(StatusCode, &[u8], &str); 4] = [
            (StatusCode::OK, b"{}", "expected 402, got 200"),
            (
                StatusCode::PAYMENT_REQUIRED,
                br#"{"x402Version":2,"resource":{"url":"u"},"accepts":[]}"#,
                "lists no accepted payment",
            ),
            (
                StatusCode::PAYMENT_REQUIRED,
                b"<html>pay</html>",
                "402 body",
            ),
            (
                StatusCode::PAYMENT_REQUIRED,
                br#"{"x402Version":7,"accepts":[]}"#,
                "unsupported x402Version 7",
            ),
        ];
        for (status, body, wanted) in cases {
            let error = parse_402(status, &none, body, "u").unwrap_err();
            assert!(error.to_string().contains(wanted), "{error} ∌ {wanted}");
        }
        let mut garbage = HeaderMap::new();
        garbage.insert(PAYMENT_REQUIRED, HeaderValue::from_static("%%%"));
        let error = parse_402(StatusCode::PAYMENT_REQUIRED, &garbage, b"", "u").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid pricing: PAYMENT-REQUIRED"),
            "{error}"
        );
    }
}
