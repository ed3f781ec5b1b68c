//! The buyer proxy in front of a real gateway: unpaid first, pay on 402, stream through.

use std::sync::Arc;

use obol_buyer::{AuthPool, BuyerProxy, PresignOptions, Purchase, presign};
use obol_gateway::RouteTable;
use obol_x402::LocalSigner;
use obol_x402::primitives::U256;
use serde_json::{Value, json};

use crate::{PAY_TO, Seller, now, route, spawn};

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
    (status, obol_testkit::json::error_message(&body).to_owned())
}

/// The proxy's answer when no pre-signed authorization is left: 402, saying so.
async fn assert_exhausted(response: reqwest::Response) {
    let (status, message) = error_of(response).await;
    assert_eq!(status, 402);
    assert!(
        message.contains("pre-signed auth pool exhausted"),
        "{message}"
    );
}

#[tokio::test]
async fn five_paid_calls_then_exhaustion_and_a_status_page() {
    let seller = Seller::start().await;
    let (proxy, buyer) = proxy_for(&seller, 3, 5, "counted").await;
    let before = seller.usdc(buyer.address()).await;
    // Model names match whatever their case; the seller gets the name bought.
    for model in [
        "paid/counted",
        "paid/openai/counted",
        "counted",
        "paid/Counted",
        "PAID/COUNTED",
    ] {
        let response = ask(&proxy, prompt(model, "hello")).await;
        assert_eq!(response.status(), 200, "{model}");
        assert!(response.headers().contains_key("payment-response"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
    }
    assert_exhausted(ask(&proxy, prompt("paid/counted", "hello")).await).await;
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(5000)
    );
    assert_eq!(
        seller.usdc(PAY_TO.parse().unwrap()).await,
        U256::from(5000) + initial_balance(&seller).await
    );

    let status: Value = obol_testkit::http::get_json(format!("{proxy}/status")).await;
    assert_eq!(status["llm"]["remaining"], 0);
    assert_eq!(status["llm"]["spent"], 5);
    assert_eq!(status["llm"]["public_model"], "paid/counted");
    assert_eq!(status["llm"]["network"], "base-sepolia");

    let models: Value = obol_testkit::http::get_json(format!("{proxy}/v1/models")).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "paid/counted");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["remaining"], 0);

    let metrics = obol_testkit::http::get_text(format!("{proxy}/metrics")).await;
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
    let link = response.headers()["x-payment-receipt"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&seller.gateway),
        "the seller's own URL: {link}"
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
    // The relayed link reads the stream's receipt at the seller.
    let receipt: Value = obol_testkit::http::get_json(&link).await;
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["payer"], buyer.address().to_checksum(None));
}

#[tokio::test]
async fn a_model_bought_under_an_openai_name_is_found_under_it() {
    let seller = Seller::start().await;
    let (proxy, _) = proxy_for(&seller, 6, 2, "openai/gpt-oss").await;
    for asked in ["paid/openai/gpt-oss", "openai/gpt-oss"] {
        assert_eq!(
            ask(&proxy, prompt(asked, "hi")).await.status(),
            200,
            "{asked}"
        );
    }
}

#[tokio::test]
async fn the_per_upstream_route_pays_any_path_as_is() {
    let seller = Seller::start().await;
    let (proxy, buyer) = proxy_for(&seller, 7, 2, "compat").await;
    let before = seller.usdc(buyer.address()).await;
    let client = reqwest::Client::new();
    // The body goes as it is: no model rewriting, no JSON requirement.
    // A page's <img> or link: no Origin, but no X-Obol-Buyer either (and Sec-Fetch-Site).
    for (name, value) in [("accept", "image/*"), ("sec-fetch-site", "cross-site")] {
        let refused = client
            .get(format!("{proxy}/upstream/llm/v1/models"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{name}");
    }
    assert_eq!(seller.usdc(buyer.address()).await, before, "nothing spent");
    let response = client
        .post(format!("{proxy}/upstream/llm/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-obol-buyer", "1")
        .body(r#"{"model":"whatever","messages":[]}"#)
        .send()
        .await
        .unwrap();
    obol_testkit::x402::assert_paid(&response);
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(1000)
    );
    let unknown = client
        .post(format!("{proxy}/upstream/nope/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-obol-buyer", "1")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, message) = error_of(unknown).await;
    assert_eq!(status, 404);
    assert!(message.contains("upstream nope"), "{message}");
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
    assert_exhausted(refused).await;
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

/// A proxy with one purchase (`Qwen3`, a seller that is never reached) and no seller behind it.
async fn bare_proxy() -> (Arc<BuyerProxy>, String) {
    let pool = AuthPool::in_memory().unwrap();
    let proxy = BuyerProxy::new(pool, None, obol_facilitator::http::metrics_handle()).unwrap();
    proxy.set_purchases(vec![Purchase {
        model: "Qwen3".into(),
        pool: "none".into(),
        base: "http://127.0.0.1:9/services/llm".into(),
        chain: "base-sepolia".into(),
    }]);
    let url = spawn(proxy.router()).await;
    (proxy, url)
}

async fn error_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn browsers_and_foreign_hosts_are_refused() {
    let (proxy, url) = bare_proxy().await;
    let http = reqwest::Client::new();
    let chat = format!("{url}/v1/chat/completions");
    let body = prompt("paid/nope", "hi").to_string();

    // A web page's cross-origin POST carries an Origin: refused before anything else.
    for path in ["/v1/chat/completions", "/chat/completions", "/v1/responses"] {
        let (status, error) = error_body(
            http.post(format!("{url}{path}"))
                .header("origin", "https://evil.example")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(error["error"]["type"], "permission_error");
        assert_eq!(error["error"]["code"], 403);
        assert!(
            obol_testkit::json::error_message(&error).contains("Origin"),
            "{error}"
        );
    }
    let status = http
        .get(format!("{url}/status"))
        .header("origin", "null")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "GETs too: /status names the purchases");

    // A form or "simple" request: not JSON.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = http.post(&chat).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, error) = error_body(request.send().await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }

    // DNS rebinding: the page's name, resolved to 127.0.0.1, is the Host.
    let (status, error) = error_body(
        http.get(format!("{url}/healthz"))
            .header("host", "evil.example:8402")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        obol_testkit::json::error_message(&error).contains("evil.example"),
        "{error}"
    );
    let refused = http
        .post(&chat)
        .header("host", "attacker.test")
        .json(&prompt("paid/qwen3", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Loopback names pass, with JSON (parameters allowed): the unknown model is the answer.
    let port = url.rsplit(':').next().unwrap();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.8.9.10".to_owned(),
        format!("[::1]:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        let (status, error) = error_body(
            http.post(&chat)
                .header("host", &host)
                .header("content-type", "application/json; charset=utf-8")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 404, "{host}: {error}");
    }
    let via_localhost = url.replace("127.0.0.1", "localhost");
    assert_eq!(
        reqwest::get(format!("{via_localhost}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Listening elsewhere, the daemon lifts the Host check; Origin stays refused.
    proxy.loopback_only(false);
    let response = http
        .get(format!("{url}/healthz"))
        .header("host", "buyer.internal:8402")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .get(format!("{url}/healthz"))
        .header("host", "buyer.internal:8402")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn healthz_and_case_insensitive_models() {
    let (_proxy, url) = bare_proxy().await;
    let response = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));

    // `Qwen3` was bought; every spelling finds it (the seller at port 9 is unreachable: 502).
    for model in [
        "paid/qwen3",
        "paid/QWEN3",
        "Paid/Qwen3",
        "qwen3",
        "paid/openai/qwen3",
    ] {
        let (status, message) = error_of(ask(&url, prompt(model, "hi")).await).await;
        assert_eq!(status, 502, "{model}: {message}");
    }
    let (status, message) = error_of(ask(&url, prompt("paid/qwen4", "hi")).await).await;
    assert_eq!(status, 404);
    assert!(message.contains("\"qwen4\""), "{message}");
}

#[tokio::test]
async fn a_price_change_refuses_the_up_front_payment_and_only_the_new_price_is_charged() {
    let seller = Seller::start().await;
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(4)).unwrap();
    let pool = seller.buy(&buyer, 2).await;
    // Two more signed for the price the seller will ask.
    let offered = seller.probe().await;
    let mut dearer = offered.accepts[0].clone();
    dearer.amount = "2000".parse().unwrap();
    let options = PresignOptions {
        count: 2,
        ttl_secs: 3600,
        now: now(),
    };
    let signed = presign(&buyer, &dearer, Some(&offered.resource), options, &|_| {}).unwrap();
    assert_eq!(pool.add("llm", &signed).unwrap(), 2);
    let proxy =
        BuyerProxy::new(pool.clone(), None, obol_facilitator::http::metrics_handle()).unwrap();
    proxy.set_purchases(vec![Purchase {
        model: "qwen".into(),
        pool: "llm".into(),
        base: format!("{}/services/llm", seller.gateway),
        chain: "base-sepolia".into(),
    }]);
    let proxy = spawn(proxy.router()).await;
    let before = seller.usdc(buyer.address()).await;
    let counts = || {
        let c = pool.counts("llm").unwrap();
        (c.available, c.spent, c.burned, c.held)
    };

    assert_eq!(ask(&proxy, prompt("paid/qwen", "one")).await.status(), 200);
    seller
        .routes
        .store(RouteTable::new(vec![route(&seller.upstream, 2000)]));
    // Sent up front at 1000, refused by the gateway before any settlement: burned, never
    // charged; the new price is paid with a row signed for it.
    let response = ask(&proxy, prompt("paid/qwen", "two")).await;
    obol_testkit::x402::assert_paid(&response);
    assert_eq!(counts(), (1, 2, 1, 0));
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(1000 + 2000),
        "the refused authorization was not charged"
    );
    // Up front at the new price.
    assert_eq!(
        ask(&proxy, prompt("paid/qwen", "three")).await.status(),
        200
    );
    assert_eq!(counts(), (0, 3, 1, 0));
    assert_exhausted(ask(&proxy, prompt("paid/qwen", "four")).await).await;
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(1000 + 2000 + 2000)
    );
}
