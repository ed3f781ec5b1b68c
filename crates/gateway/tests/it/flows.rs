//! x402.md §8.7 seller cases, the double-serve guard, and bad input.

use std::sync::atomic::Ordering;

use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT, X_PAYMENT_RESPONSE};
use obol_x402::primitives::U256;
use obol_x402::wire::{PaymentPayload, SettleResponse, v1};

use crate::{Fixture, PAY_TO, challenge_of, paid_get, pay_for, sign};

#[tokio::test]
async fn g1_unpaid_requests_get_the_challenge() {
    let fixture = Fixture::start().await;
    let response = reqwest::get(format!("{}/services/echo/echo?q=1", fixture.gateway))
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    let expose = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        expose.contains("PAYMENT-REQUIRED") && expose.contains("PAYMENT-RESPONSE"),
        "G-12"
    );
    assert_eq!(
        response.headers()["link"],
        "</api/services.json>; rel=\"catalog\""
    );
    let required = challenge_of(&response);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::to_value(&required).unwrap(),
        "body and header agree"
    );
    let networks: Vec<&str> = required
        .accepts
        .iter()
        .map(|a| a.network.as_str())
        .collect();
    assert_eq!(
        networks,
        ["eip155:84532"],
        "v2 challenges name CAIP-2 networks only"
    );
    assert_eq!(required.accepts[0].amount(), U256::from(1000));
    assert!(
        required.resource.url.ends_with("/services/echo/echo?q=1"),
        "{}",
        required.resource.url
    );
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        0,
        "the upstream is not called unpaid"
    );

    // Unknown paths are 404; nothing is ever served free.
    let response = reqwest::get(format!("{}/elsewhere", fixture.gateway))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn g2_paid_request_is_proxied_then_settled() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(1);
    let payment = pay_for(&fixture, "/services/echo/echo", &buyer).await;
    let before = fixture.usdc(PAY_TO).await;
    let response = reqwest::Client::new()
        .get(format!("{}/services/echo/echo", fixture.gateway))
        .header(PAYMENT_SIGNATURE, &payment)
        .header("origin", "https://evil.example")
        .header("x-verified-wallet", "0xspoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: SettleResponse =
        header::decode(response.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(
        response.headers()[X_PAYMENT_RESPONSE],
        response.headers()[PAYMENT_RESPONSE]
    );
    let seen: serde_json::Value = response.json().await.unwrap();
    let headers = &seen["headers"];
    assert!(
        headers.get("payment-signature").is_none() && headers.get("x-payment").is_none(),
        "no x402 headers upstream"
    );
    assert!(headers.get("origin").is_none(), "Origin dropped");
    assert_eq!(
        headers["authorization"], "Bearer upstream-secret",
        "upstream auth injected"
    );
    assert_eq!(
        headers["x-payment-payer"],
        buyer.address().to_checksum(None),
        "the verified payer, not the spoofed one"
    );
    assert!(headers.get("x-verified-wallet").is_none());
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "settled exactly the price"
    );

    // The same payment again: refused, not served, not charged.
    let again = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(again.status(), 402);
    let required = challenge_of(&again);
    assert_eq!(
        required.extensions.unwrap()["paymentFailure"]["reason"],
        "payment_already_used"
    );
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        1,
        "the upstream ran once"
    );
}

#[tokio::test]
async fn g3_a_different_amount_is_not_matched_and_not_verified() {
    let fixture = Fixture::start().await;
    let response = reqwest::get(format!("{}/services/echo/echo", fixture.gateway))
        .await
        .unwrap();
    let mut required = challenge_of(&response);
    required.accepts[0].amount = U256::from(999).into();
    let payment = sign(&fixture.buyer(1), &required, 0);
    let response = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(response.status(), 402);
    let failure = challenge_of(&response).extensions.unwrap()["paymentFailure"].clone();
    assert_eq!(failure["reason"], "no_matching_requirement");
    assert_eq!(fixture.probe.verified(), 0, "the facilitator is not called");
}

#[tokio::test]
async fn g4_upstream_failure_is_relayed_uncharged_and_frees_the_payment() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(3);
    let payment = pay_for(&fixture, "/services/echo/fail", &buyer).await;
    let before = fixture.usdc(PAY_TO).await;
    let response = paid_get(&fixture.gateway, "/services/echo/fail", &payment).await;
    assert_eq!(response.status(), 500);
    assert!(response.headers().get(PAYMENT_RESPONSE).is_none());
    assert_eq!(response.text().await.unwrap(), "upstream broke");
    assert_eq!(fixture.probe.settled(), 0, "no settle call");
    assert_eq!(fixture.usdc(PAY_TO).await, before);
    // The authorization was not consumed: it buys a working call afterwards.
    let response = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(response.status(), 200);
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
}

#[tokio::test]
async fn g5_rejected_settlement_withholds_the_body() {
    let fixture = Fixture::start().await;
    fixture.probe.reject_settles.store(true, Ordering::SeqCst);
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(4)).await;
    let response = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(response.status(), 402);
    let receipt: SettleResponse =
        header::decode(response.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(!receipt.success);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body.get("headers").is_none(),
        "the upstream body is not released"
    );
    assert_eq!(
        body["extensions"]["paymentFailure"]["reason"],
        "settlement_rejected"
    );
}

#[tokio::test]
async fn g6_replays_in_flight_are_refused_and_one_of_many_wins() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/slow", &fixture.buyer(5)).await;
    let before = fixture.usdc(PAY_TO).await;
    let client = reqwest::Client::new();
    let sends = (0..100).map(|_| {
        client
            .get(format!("{}/services/echo/slow", fixture.gateway))
            .header(PAYMENT_SIGNATURE, &payment)
            .send()
    });
    let statuses: Vec<u16> = obol_testkit::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 99);
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        1,
        "the upstream ran once"
    );
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "one transfer"
    );
}

#[tokio::test]
async fn g7_missing_permit2_allowance_is_412() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/obol/echo", &fixture.buyer(6)).await;
    let response = paid_get(&fixture.gateway, "/services/obol/echo", &payment).await;
    assert_eq!(response.status(), 412);
    let required = challenge_of(&response);
    let failure = &required.extensions.unwrap()["paymentFailure"];
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .starts_with("permit2_allowance_required"),
        "{failure}"
    );
}

#[tokio::test]
async fn g8_v1_payments_on_x_payment() {
    let fixture = Fixture::start().await;
    let header_value = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(7)).await;
    let PaymentPayload::V2(v2_payload) = header::decode::<PaymentPayload>(&header_value).unwrap()
    else {
        unreachable!()
    };
    let v1_payload = v1::PaymentPayload {
        x402_version: Default::default(),
        scheme: "exact".into(),
        network: "base-sepolia".into(),
        payload: v2_payload.payload,
    };
    let response = reqwest::Client::new()
        .get(format!("{}/services/echo/echo", fixture.gateway))
        .header(X_PAYMENT, header::encode(&v1_payload).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receipt: SettleResponse =
        header::decode(response.headers()[X_PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success);
    assert_eq!(
        receipt.network, "base-sepolia",
        "v1 answers in the legacy network name"
    );
}

#[tokio::test]
async fn g9_a_stalled_facilitator_never_fails_open() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(8)).await;
    fixture.probe.stall_verify.store(true, Ordering::SeqCst);
    let response = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "facilitator_unreachable");
    assert_eq!(body["retriable"], true);
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_payment_headers_are_400() {
    let fixture = Fixture::start().await;
    let cases = [
        "!!!",
        "eyJh-In0=",
        "e30=",
        "eyJ4NDAyVmVyc2lvbiI6OX0=",
        &"A".repeat(40_000),
    ];
    for value in cases {
        let response = paid_get(&fixture.gateway, "/services/echo/echo", value).await;
        assert_eq!(response.status(), 400, "{}", &value[..value.len().min(20)]);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["reason"], "invalid_payment_header");
        assert_eq!(body["retriable"], false);
    }
    assert_eq!(fixture.probe.verified(), 0);
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_replay_after_restart_is_refused() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(1)).await;
    let client = reqwest::Client::new();
    let first = client
        .get(format!("{}/services/echo/echo", fixture.gateway))
        .header(PAYMENT_SIGNATURE, &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // A new gateway process over the store the old one left.
    let restarted = Fixture::gateway(
        &fixture.routes,
        &fixture.probe,
        &fixture.guard_after_a_crash(),
    )
    .await;
    let replay = client
        .get(format!("{restarted}/services/echo/echo"))
        .header(PAYMENT_SIGNATURE, &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 402);
    assert_eq!(
        challenge_of(&replay).extensions.unwrap()["paymentFailure"]["reason"],
        "payment_already_used"
    );
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn inference_offers_normalise_the_chat_path_and_metrics_count() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/llm", &fixture.buyer(1)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/services/llm/chat/completions", fixture.gateway))
        .header(PAYMENT_SIGNATURE, payment)
        .json(&serde_json::json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "routed to the upstream's /v1/chat/completions"
    );
    let metrics = fixture.metrics().await;
    for name in [
        "obol_x402_verifier_requests_total",
        "obol_x402_verifier_payment_required_total",
        "obol_x402_verifier_charged_requests_total",
        "obol_x402_verifier_last_payment_success_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert!(metrics.contains("offer_name=\"llm\""));
    let ready: serde_json::Value =
        obol_testkit::http::get_json(format!("{}/readyz", fixture.gateway)).await;
    assert_eq!(ready["status"], "ready");
}
