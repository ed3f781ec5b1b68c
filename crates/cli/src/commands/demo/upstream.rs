//! The demo's upstreams, on one loopback listener: an OpenAI-compatible chat endpoint with
//! deterministic answers (plainly labelled as the demo model, not an LLM) and a small JSON
//! service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The model the demo sells.
pub(super) const MODEL: &str = "obol-demo";

const QUOTES: [&str; 4] = [
    "Pay for what you use, per request.",
    "An authorization signed ahead is spend bounded ahead.",
    "A 402 is an invitation, not a refusal.",
    "Settle after serving: a failed call costs nothing.",
];

#[derive(Default)]
struct Counters {
    chats: AtomicU64,
    quotes: AtomicU64,
}

/// Serves the upstreams on `listener` until the process ends; returns the base URL.
pub(super) fn spawn(listener: tokio::net::TcpListener) -> std::io::Result<String> {
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/chat/completions", post(chat))
        .route("/quote", get(quote))
        .with_state(Arc::new(Counters::default()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// The last user message, shortened for the echo.
fn prompt_of(body: &Value) -> String {
    let text = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    text.chars().take(120).collect()
}

async fn chat(State(counters): State<Arc<Counters>>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = counters.chats.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = format!(
        "[{MODEL} — a deterministic demo model, not an LLM] call {n}: you said {:?}",
        prompt_of(&body)
    );
    if body["stream"] == true {
        let chunk = |content: &str, finish: Value| {
            json!({"id": format!("demo-{n}"), "object": "chat.completion.chunk", "model": MODEL,
                   "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
        };
        let events = format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            chunk(&answer, Value::Null),
            chunk("", json!("stop"))
        );
        return ([(header::CONTENT_TYPE, "text/event-stream")], events).into_response();
    }
    Json(json!({
        "id": format!("demo-{n}"),
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }))
    .into_response()
}

async fn quote(State(counters): State<Arc<Counters>>) -> Json<Value> {
    let n = counters.quotes.fetch_add(1, Ordering::Relaxed);
    let index = usize::try_from(n).unwrap_or(0) % QUOTES.len();
    Json(json!({"service": "demo-quotes", "n": n + 1, "quote": QUOTES[index]}))
}
