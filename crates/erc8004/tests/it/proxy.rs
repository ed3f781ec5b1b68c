//! A JSON-RPC proxy in front of anvil that breaks the first `eth_sendRawTransaction`: either
//! the node gets it and the answer is lost (502 after forwarding), or it never arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward the first send, then answer 502: mined, but the sender does not know.
    LoseResponse,
    /// Answer the first send with 502 without forwarding it.
    DropRequest,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    fault: Fault,
    sends: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// Starts the proxy; returns its URL and the count of send attempts it saw.
pub async fn start(upstream: String, fault: Fault) -> (String, Arc<AtomicUsize>) {
    let sends = Arc::new(AtomicUsize::new(0));
    let state = Proxy {
        upstream,
        fault,
        sends: Arc::clone(&sends),
        http: reqwest::Client::new(),
    };
    let app = Router::new().route("/", post(handle)).with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, sends)
}

async fn handle(State(proxy): State<Proxy>, body: Bytes) -> Response {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let is_send = request["method"] == "eth_sendRawTransaction";
    let first = is_send && proxy.sends.fetch_add(1, Ordering::SeqCst) == 0;
    if first && proxy.fault == Fault::DropRequest {
        return (StatusCode::BAD_GATEWAY, "upstream hiccup").into_response();
    }
    let answer = proxy
        .http
        .post(&proxy.upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    if first {
        return (StatusCode::BAD_GATEWAY, "response lost").into_response();
    }
    ([("content-type", "application/json")], answer).into_response()
}
