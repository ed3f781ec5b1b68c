//! Helpers shared by the concurrency soak benches (feature `testing`): `obol-gateway`'s `soak`
//! and `obol`'s `soak_restart`. Signing fresh authorizations, naming an answer's reason, a
//! counting upstream, and reading the devnet's USDC over JSON-RPC. Like the benches, they
//! panic on what should not happen.

#![allow(clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::transports::http::reqwest;
use axum::Router;
use axum::routing::any;
use obol_x402::LocalSigner;
use obol_x402::header;
use obol_x402::primitives::{Address, B256, U256};
use obol_x402::signer::{ValidityWindow, random_nonce, sign_payment};
use obol_x402::wire::v2;
use serde_json::{Value, json};

use crate::USDC;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// An upstream answering `{"ok": true}` on every path, and how many times it was called.
pub fn counting_upstream() -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        "/{*path}",
        any(move || {
            let calls = counter.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                axum::Json(json!({"ok": true}))
            }
        }),
    );
    (router, calls)
}

/// One signed authorization: who pays, its nonce, the payment and its `PAYMENT-SIGNATURE` value.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The payer.
    pub payer: Address,
    /// The authorization's nonce.
    pub nonce: B256,
    /// The `PAYMENT-SIGNATURE` header value.
    pub header: String,
    /// The signed payment.
    pub payload: v2::PaymentPayload,
}

/// One fresh authorization of `buyer` for `requirement`, valid for the next 300 s.
pub async fn sign(
    buyer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    resource: Option<v2::ResourceInfo>,
) -> Signed {
    let nonce = random_nonce();
    let window = ValidityWindow::for_request(now(), 300);
    let payload = sign_payment(buyer, requirement, resource, window, nonce)
        .await
        .expect("an exact payment");
    Signed {
        payer: buyer.address(),
        nonce,
        header: header::encode(&payload).expect("an encodable payment"),
        payload,
    }
}

/// The machine reason of an answer: `ok`, the 402's `paymentFailure.reason` (with the
/// facilitator's reason for `payment_invalid`), or the error body's `reason`.
pub fn reason_of(status: u16, body: &[u8]) -> String {
    if status == 200 {
        return "ok".into();
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(failure) = value.pointer("/extensions/paymentFailure") {
        let reason = failure["reason"].as_str().unwrap_or("?");
        let detail = failure["detail"].as_str().unwrap_or("");
        return match reason {
            "payment_invalid" => format!("{reason}({})", detail.split(':').next().unwrap_or("")),
            "settlement_rejected" => format!("{reason}({detail})"),
            _ => reason.to_owned(),
        };
    }
    match value["reason"].as_str() {
        Some(reason) => format!("{status} {reason}"),
        None => format!("http {status}"),
    }
}

/// Whether an answer asks for the same payment to be sent again (`503 settlement_pending`).
pub fn is_settlement_pending(status: u16, reason: &str) -> bool {
    status == 503 && reason.ends_with("settlement_pending")
}

/// Runs each future as its own task and returns their outputs in order.
pub async fn join_all<F: Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a task that does not panic"));
    }
    out
}

/// Lower-case hex without `0x`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The call data of `balanceOf(owner)`.
pub fn balance_of_data(owner: Address) -> String {
    format!("0x70a08231{:0>64}", hex(owner.as_slice()))
}

/// A JSON-RPC endpoint with a kept-alive client.
#[derive(Debug, Clone)]
pub struct Rpc {
    http: reqwest::Client,
    endpoint: String,
}

impl Rpc {
    /// A client for `endpoint`.
    pub fn new(endpoint: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.to_owned(),
        }
    }

    /// The whole JSON-RPC answer to `method(params)`.
    pub async fn answer(&self, method: &str, params: &Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let body = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .expect("a JSON-RPC answer")
            .bytes()
            .await
            .expect("a JSON-RPC body");
        serde_json::from_slice(&body).expect("a JSON-RPC answer in JSON")
    }

    /// The result of `method(params)`; panics on an error answer.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let answer = self.answer(method, &params).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// `eth_call` of the devnet's USDC with `data`, at the latest block: the hex result.
    pub async fn call_usdc(&self, data: String) -> String {
        let to = USDC.to_checksum(None);
        let result = self
            .call("eth_call", json!([{"to": to, "data": data}, "latest"]))
            .await;
        result
            .as_str()
            .unwrap_or_else(|| panic!("eth_call: {result}"))
            .to_owned()
    }

    /// `authorizationState(payer, nonce)` of USDC: whether the transfer happened.
    pub async fn nonce_used(&self, payer: Address, nonce: B256) -> bool {
        let data = format!(
            "0xe94a0102{:0>64}{}",
            hex(payer.as_slice()),
            hex(nonce.as_slice())
        );
        self.call_usdc(data).await.ends_with('1')
    }

    /// `owner`'s USDC balance.
    pub async fn usdc_balance(&self, owner: Address) -> U256 {
        let result = self.call_usdc(balance_of_data(owner)).await;
        U256::from_str_radix(result.trim_start_matches("0x"), 16).expect("a hex balance")
    }

    /// Which of `payments` (payer, nonce) moved money on-chain, 16 reads at a time.
    pub async fn used_nonces(&self, payments: &[(Address, B256)]) -> Vec<bool> {
        let mut used = Vec::with_capacity(payments.len());
        for chunk in payments.chunks(16) {
            let reads = chunk.iter().map(|&(payer, nonce)| {
                let rpc = self.clone();
                async move { rpc.nonce_used(payer, nonce).await }
            });
            used.extend(join_all(reads).await);
        }
        used
    }
}
