//! Buying metered inference (`upto`) with the CLI on a devnet stack: `buy pay --metered` and a
//! `buy inference --metered` pool sign ceilings, the seller charges the tokens used, and the
//! buyer's status counts what was charged, not the ceilings.

use axum::Router;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::buy::chat;
use crate::stack::{DevnetStackGuard, PAY_TO, gateway, sell_from_json};
use crate::{assert_contains, balance, json_of, obol_in, stderr, succeeded};

const BUYER_KEY: &str = obol_devnet::DEV_KEYS[6];

/// A model whose every answer used 12 prompt and 34 completion tokens: 23 atomic USDC at
/// 0.15 / 0.60 per million (1.8 + 20.4 = 22.2, rounded up). Asked to stream, it answers in SSE
/// with the usage in a final chunk when `stream_options.include_usage` asks for it.
pub(crate) async fn metered_model() -> String {
    // Any content type: `obol buy pay -d` sends none.
    let answer = |body: axum::body::Bytes| async move {
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let usage = json!({"prompt_tokens": 12, "completion_tokens": 34});
        if request["stream"] == true {
            let mut events = vec![json!({"choices": [{"delta": {"content": "hello"}}]})];
            if request["stream_options"]["include_usage"] == true {
                events.push(json!({"choices": [], "usage": usage}));
            }
            let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            text.push_str("data: [DONE]\n\n");
            return ([("content-type", "text/event-stream")], text).into_response();
        }
        axum::Json(json!({
            "choices": [{"message": {"role": "assistant", "content": "hello"}}],
            "usage": usage
        }))
        .into_response()
    };
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// A metered inference offer of model `m` (the chat model [`crate::buy::MODEL`]) at
/// 0.15 / 0.60 USDC per million tokens, `exact` beside it.
pub(crate) fn metered_offer(upstream: &str) -> Value {
    json!({
        "apiVersion": "obol.org/v1alpha1", "kind": "ServiceOffer",
        "metadata": {"name": "llm", "namespace": "default"},
        "spec": {
            "type": "inference",
            "model": {"name": crate::buy::MODEL},
            "upstream": {"url": upstream, "healthPath": "/health"},
            "payment": {
                "scheme": "exact", "network": "base-sepolia", "payTo": PAY_TO,
                "maxTimeoutSeconds": 300,
                "price": {"perMTokInput": "0.15", "perMTokOutput": "0.6"},
                "upto": {}
            }
        }
    })
}

fn usdc(dir: &std::path::Path, key: &str) -> u128 {
    balance(dir, "devnet", key, "USDC")
}

// Multi-threaded: the model must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metered_calls_are_paid_per_token_and_counted_as_charged() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let model = metered_model().await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = DevnetStackGuard(dir);
    crate::stack_up(dir, None, true);
    sell_from_json(dir, "llm", &metered_offer(&model)).await;
    let seller = gateway(dir);
    let url = format!("{seller}/services/llm/v1/chat/completions");
    let buy = |args: &[&str]| obol_in(dir, args, &[("OBOL_PRIVATE_KEY", BUYER_KEY)], None);
    let (buyer_start, seller_start) = (usdc(dir, BUYER_KEY), usdc(dir, obol_devnet::DEV_KEYS[2]));

    let pay_metered = |max: &str| {
        let body = r#"{"model":"m","messages":[]}"#;
        buy(&[
            "buy",
            "pay",
            &url,
            "-d",
            body,
            "--max-amount",
            max,
            "--metered",
            "--yes",
        ])
    };

    // --metered pays the upto option only, its ceiling capped by --max-amount.
    let out = pay_metered("0.001");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "0.002458 USDC on base-sepolia exceeds --max-amount 0.001",
    );
    let out = pay_metered("0.01");
    succeeded(&out);
    assert!(
        stderr(&out).contains("approved Permit2 for USDC"),
        "a metered payment moves through Permit2: {}",
        stderr(&out)
    );
    assert_contains(
        &stderr(&out),
        "paid 0.000023 USDC of up to 0.002458 USDC on base-sepolia",
    );
    assert_eq!(usdc(dir, BUYER_KEY), buyer_start - 23);

    // A pool of metered authorizations: its budget is ceilings, its spend what was charged.
    let out = buy(&[
        "buy",
        "inference",
        &seller,
        "--metered",
        "--count",
        "3",
        "--yes",
    ]);
    succeeded(&out);
    assert_contains(
        &stderr(&out),
        "price:   up to 0.002458 USDC per call, charged per token",
    );
    assert_contains(&stderr(&out), "buy:     3 calls = up to 0.007374 USDC");
    for _ in 0..2 {
        let (status, body) = chat(dir).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(usdc(dir, BUYER_KEY), buyer_start - 3 * 23);
    assert_eq!(usdc(dir, obol_devnet::DEV_KEYS[2]), seller_start + 3 * 23);
    let list = json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None));
    let name = list[0]["name"].as_str().unwrap().to_owned();
    let status = json_of(&obol_in(
        dir,
        &["--json", "buy", "status", &name],
        &[],
        None,
    ));
    assert_eq!(status["status"]["totalSpent"], "0.000046 USDC", "{status}");
    assert_eq!(status["status"]["remaining"], 1);

    // Streamed through the buyer proxy: no receipt before the stream ends, so the proxy reads
    // the charge from the seller's receipt link afterwards; the ceiling never counts as spent.
    let streamed = reqwest::Client::new()
        .post(format!(
            "{}/v1/chat/completions",
            crate::buy::buyer_url(dir)
        ))
        .json(
            &json!({"model": format!("paid/{}", crate::buy::MODEL), "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(streamed.headers().contains_key("x-payment-receipt"));
    let text = streamed.text().await.unwrap();
    assert!(text.contains("hello"), "{text}");
    let spent = || {
        let status = json_of(&obol_in(
            dir,
            &["--json", "buy", "status", &name],
            &[],
            None,
        ));
        status["status"]["totalSpent"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while spent() != "0.000069 USDC" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        spent(),
        "0.000069 USDC",
        "23 atomic charged, not the 2458 ceiling"
    );
    assert_eq!(usdc(dir, BUYER_KEY), buyer_start - 4 * 23);

    // The seller's side: what its metered calls used and were charged.
    let sold = json_of(&obol_in(
        dir,
        &["--json", "sell", "status", "llm"],
        &[],
        None,
    ));
    assert_eq!(
        sold["status"]["usage"],
        json!({"requests": 4, "promptTokens": 48, "completionTokens": 136,
               "totalTokens": 184, "charged": "0.000092 USDC"}),
        "{sold}"
    );
    let text = crate::stdout(&obol_in(dir, &["sell", "status", "llm"], &[], None));
    assert!(
        text.contains(
            "Usage:    4 metered calls, 48 prompt + 136 completion tokens, charged 0.000092 USDC"
        ),
        "{text}"
    );
    assert!(
        text.contains("Price:    0.15 USDC/MTok prompt, 0.6 USDC/MTok completion"),
        "{text}"
    );
}
