//! The buyer proxy in front of a real gateway: unpaid first, pay on 402, stream through.

use obol_buyer::{BuyerProxy, Purchase};
use obol_gateway::RouteTable;
use obol_x402::LocalSigner;
use obol_x402::primitives::U256;
use serde_json::{Value, json};

use crate::{PAY_TO, Seller, route, spawn};

/// A buyer proxy over `seller` with `count` authorizations for `model`.
async fn proxy_for(
    seller: &Seller,
    key: usize,
    count: usize,
    model: &str,
) -> (String, LocalSigner) {
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(key)).unwrap();
    let pool = seller.buy(&buyer, count).await;
    let proxy = BuyerProxy::new(pool, None, obol_facilitator::http::metrics_handle()).unwrap();
    proxy.set_purchases(vec![Purchase {
        model: model.into(),
        pool: "llm".into(),
        base: format!("{}/services/llm", seller.gateway),
        chain: "base-sepolia".into(),
    }]);
    (spawn(proxy.router()).await, buyer)
}

async fn ask(proxy: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn prompt(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn five_paid_calls_then_exhaustion_and_a_status_page() {
    let seller = Seller::start().await;
    let (proxy, buyer) = proxy_for(&seller, 3, 5, "counted").await;
    let before = seller.usdc(buyer.address()).await;
    for model in [
        "paid/counted",
        "paid/openai/counted",
        "counted",
        "paid/counted",
        "paid/counted",
    ] {
        let response = ask(&proxy, prompt(model, "hello")).await;
        assert_eq!(response.status(), 200, "{model}");
        assert!(response.headers().contains_key("payment-response"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
    }
    let (status, message) = error_of(ask(&proxy, prompt("paid/counted", "hello")).await).await;
    assert_eq!(status, 402);
    assert!(
        message.contains("pre-signed auth pool exhausted"),
        "{message}"
    );
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(5000)
    );
    assert_eq!(
        seller.usdc(PAY_TO.parse().unwrap()).await,
        U256::from(5000) + initial_balance(&seller).await
    );

    let status: Value = reqwest::get(format!("{proxy}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["purchases"][0]["remaining"], 0);
    assert_eq!(status["purchases"][0]["spent"], 5);

    let metrics = reqwest::get(format!("{proxy}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |family: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(family) && l.contains("remote_model=\"counted\""))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{family} missing:\n{metrics}"))
            .to_owned()
    };
    // The model name is this test's own, so the counts are too (even when tests share a process).
    for (family, expected) in [
        ("obol_x402_buyer_requests_total", "6"),
        ("obol_x402_buyer_payment_attempts_total", "6"),
        ("obol_x402_buyer_payment_success_total", "5"),
        ("obol_x402_buyer_payment_failure_total", "1"),
        ("obol_x402_buyer_auth_remaining", "0"),
        ("obol_x402_buyer_auth_spent", "5"),
        ("obol_x402_buyer_active_model_mappings", "1"),
    ] {
        assert_eq!(value(family), expected, "{family}");
    }
    assert!(metrics.contains("chain=\"base-sepolia\""));
}

/// PAY_TO's devnet balance before any payment (every dev account starts equal).
async fn initial_balance(seller: &Seller) -> U256 {
    let untouched = LocalSigner::from_private_key_hex(seller.devnet.key(8)).unwrap();
    seller.usdc(untouched.address()).await
}

#[tokio::test]
async fn streams_pass_through_and_failures_are_not_paid() {
    let seller = Seller::start().await;
    let (proxy, buyer) = proxy_for(&seller, 4, 1, "qwen").await;
    let before = seller.usdc(buyer.address()).await;

    // The seller fails: relayed, authorization released.
    let response = ask(&proxy, prompt("paid/qwen", "fail")).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "model crashed");

    // A stream: every event arrives; the released authorization pays for it.
    let mut body = prompt("paid/qwen", "hello");
    body["stream"] = json!(true);
    let response = ask(&proxy, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"{"n":1}"#) && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(1000)
    );
}

#[tokio::test]
async fn one_authorization_two_concurrent_calls_one_success() {
    let seller = Seller::start().await;
    let (proxy, _) = proxy_for(&seller, 5, 1, "qwen").await;
    let (a, b) = tokio::join!(
        ask(&proxy, prompt("paid/qwen", "one")),
        ask(&proxy, prompt("paid/qwen", "two"))
    );
    let (ok, refused) = if a.status() == 200 { (a, b) } else { (b, a) };
    assert_eq!(ok.status(), 200);
    let (status, message) = error_of(refused).await;
    assert_eq!(status, 402);
    assert!(
        message.contains("pre-signed auth pool exhausted"),
        "{message}"
    );
}

#[tokio::test]
async fn bad_requests_unknown_models_and_price_changes() {
    let seller = Seller::start().await;
    let (proxy, buyer) = proxy_for(&seller, 6, 2, "qwen").await;

    let (status, message) = error_of(ask(&proxy, prompt("paid/nope", "hi")).await).await;
    assert_eq!(status, 404);
    assert!(
        message.contains("no purchased upstream mapped for requested model"),
        "{message}"
    );

    let (status, _) = error_of(ask(&proxy, json!(["not", "an", "object"])).await).await;
    assert_eq!(status, 400);
    let huge = json!({"model": "paid/qwen", "pad": "x".repeat(5 * 1024 * 1024)});
    assert_eq!(ask(&proxy, huge).await.status(), 413);

    seller
        .routes
        .store(RouteTable::new(vec![route(&seller.upstream, 2000)]));
    let before = seller.usdc(buyer.address()).await;
    let (status, message) = error_of(ask(&proxy, prompt("paid/qwen", "hi")).await).await;
    assert_eq!(status, 402);
    assert!(
        message.contains("amount is 2000, the pool signed 1000"),
        "{message}"
    );
    assert_eq!(seller.usdc(buyer.address()).await, before, "nothing paid");
}
