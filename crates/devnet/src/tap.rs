//! A recording JSON-RPC proxy in front of a node, for tests (feature `testing`): it logs the
//! method of every call that goes through, so tests can assert how many RPCs an operation
//! makes, and it can break sends for tests of failover, retries and duplicate-send protection:
//!
//! - [`Fault::LoseResponse`]: the first send reaches the node (it is mined) and the caller gets
//!   a 502, as when an answer is lost on the way back;
//! - [`Fault::DropRequest`]: the caller gets a 502 and the node never sees the first send;
//! - [`Fault::Unsupported`]: every call of one method is answered "method not found", as by a
//!   node that does not implement it.
//!
//! A send is `eth_sendRawTransaction` or `eth_sendRawTransactionSync`. Everything else is
//! forwarded as it is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use alloy::transports::http::reqwest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the tap breaks calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward the first send, then answer 502: mined, but the sender does not know.
    LoseResponse,
    /// Answer 502 to the first send without forwarding it.
    DropRequest,
    /// Answer every call of this method with JSON-RPC error -32601 "method not found".
    Unsupported(&'static str),
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    fault: Option<Fault>,
    sends: Arc<AtomicUsize>,
    methods: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// A running tap: its URL, and what went through it.
#[derive(Clone)]
pub struct RpcTap {
    url: String,
    sends: Arc<AtomicUsize>,
    methods: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for RpcTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTap").field("url", &self.url).finish()
    }
}

impl RpcTap {
    /// Starts a tap in front of `upstream` on a loopback port.
    pub async fn start(upstream: String, fault: Option<Fault>) -> std::io::Result<Self> {
        let sends = Arc::new(AtomicUsize::new(0));
        let methods = Arc::new(Mutex::new(Vec::new()));
        let state = Proxy {
            upstream,
            fault,
            sends: Arc::clone(&sends),
            methods: Arc::clone(&methods),
            http: reqwest::Client::new(),
        };
        let app = Router::new().route("/", post(handle)).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            sends,
            methods,
        })
    }

    /// The tap's URL (use it as the chain endpoint).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many sends came through (both send methods, broken ones included).
    pub fn sends(&self) -> usize {
        self.sends.load(Ordering::SeqCst)
    }

    /// The methods called since the last `take_methods`, in order (batches flattened).
    pub fn take_methods(&self) -> Vec<String> {
        std::mem::take(&mut *self.methods.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn is_send(method: &str) -> bool {
    matches!(
        method,
        "eth_sendRawTransaction" | "eth_sendRawTransactionSync"
    )
}

async fn handle(State(proxy): State<Proxy>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let calls: Vec<&Value> = match &request {
        Value::Array(batch) => batch.iter().collect(),
        single => vec![single],
    };
    let methods: Vec<String> = calls
        .iter()
        .map(|call| call["method"].as_str().unwrap_or_default().to_owned())
        .collect();
    proxy
        .methods
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(methods.iter().cloned());
    if let (Some(Fault::Unsupported(refused)), Value::Object(_)) = (proxy.fault, &request)
        && methods.first().is_some_and(|m| m == refused)
    {
        let answer = json!({
            "jsonrpc": "2.0",
            "id": request["id"],
            "error": {"code": -32601, "message": format!("Method not found: {refused}")},
        });
        return axum::Json(answer).into_response();
    }
    let sends = methods.iter().filter(|m| is_send(m)).count();
    let first = sends > 0 && proxy.sends.fetch_add(sends, Ordering::SeqCst) == 0;
    if first && proxy.fault == Some(Fault::DropRequest) {
        return (StatusCode::BAD_GATEWAY, "upstream hiccup").into_response();
    }
    let forwarded = proxy
        .http
        .post(&proxy.upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let answer = match forwarded {
        Ok(response) => response.bytes().await,
        Err(e) => Err(e),
    };
    match answer {
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        Ok(_) if first && proxy.fault == Some(Fault::LoseResponse) => {
            (StatusCode::BAD_GATEWAY, "response lost").into_response()
        }
        Ok(answer) => ([("content-type", "application/json")], answer).into_response(),
    }
}
