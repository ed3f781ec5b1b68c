//! A JSON-RPC proxy in front of a node that breaks the first `eth_sendRawTransaction`, for
//! tests of failover, retries and duplicate-send protection (feature `testing`).
//!
//! - [`Fault::LoseResponse`]: the node gets the transaction (it is mined) and the caller gets a
//!   502, as when an answer is lost on the way back;
//! - [`Fault::DropRequest`]: the caller gets a 502 and the node never sees the transaction.
//!
//! Every other request, and every later send, is forwarded as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::transports::http::reqwest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;

/// What happens to the first `eth_sendRawTransaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it, then answer 502: mined, but the sender does not know.
    LoseResponse,
    /// Answer 502 without forwarding it.
    DropRequest,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    fault: Fault,
    sends: Arc<AtomicUsize>,
    http: reqwest::Client,
}

/// Starts the proxy in front of `upstream` on a loopback port; returns its URL and the count of
/// `eth_sendRawTransaction` requests it has seen.
pub async fn faulty_rpc(
    upstream: String,
    fault: Fault,
) -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let sends = Arc::new(AtomicUsize::new(0));
    let state = Proxy {
        upstream,
        fault,
        sends: Arc::clone(&sends),
        http: reqwest::Client::new(),
    };
    let app = Router::new().route("/", post(handle)).with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, sends))
}

async fn handle(State(proxy): State<Proxy>, body: Bytes) -> Response {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let is_send = request["method"] == "eth_sendRawTransaction";
    let first = is_send && proxy.sends.fetch_add(1, Ordering::SeqCst) == 0;
    if first && proxy.fault == Fault::DropRequest {
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
        Ok(_) if first => (StatusCode::BAD_GATEWAY, "response lost").into_response(),
        Ok(answer) => ([("content-type", "application/json")], answer).into_response(),
    }
}
