//! x402.md §8.7 G-10 (browser paywall) and G-11 (settle-before-serve).

use std::sync::atomic::Ordering;

use obol_x402::header::{self, PAYMENT_RESPONSE};
use obol_x402::primitives::U256;
use obol_x402::wire::SettleResponse;

use crate::{Fixture, PAY_TO, challenge_of, paid_get, pay_for};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

async fn browse(base: &str, path: &str, user_agent: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap()
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn g10_browsers_get_a_paywall_page_and_clients_get_json() {
    let fixture = Fixture::start().await;
    let page = browse(&fixture.gateway, "/services/echo/echo", FIREFOX).await;
    assert_eq!(page.status(), 402);
    assert!(content_type(&page).starts_with("text/html"));
    let required = challenge_of(&page);
    assert_eq!(required.accepts[0].amount.to_string(), "1000");
    let html = page.text().await.unwrap();
    for wanted in [
        "402 — Payment required",
        "test offer echo",
        "0.001 USDC/request",
        "base-sepolia",
        PAY_TO,
        "/services/echo/echo",
    ] {
        assert!(html.contains(wanted), "{wanted} missing from the paywall");
    }

    // A non-browser client asking for HTML still gets the JSON challenge.
    let client = browse(&fixture.gateway, "/services/echo/echo", "curl/8.5.0").await;
    assert_eq!(client.status(), 402);
    assert_eq!(content_type(&client), "application/json");
    let body: serde_json::Value = client.json().await.unwrap();
    assert_eq!(body["accepts"][0]["amount"], "1000");

    // Configurable: with the paywall off, browsers get JSON too.
    let plain = Fixture::gateway_with(
        &fixture.routes,
        &fixture.probe,
        &fixture.guard_path.with_extension("plain"),
        |config| config.paygate.html_paywall = false,
    )
    .await;
    let page = browse(&plain, "/services/echo/echo", FIREFOX).await;
    assert_eq!(page.status(), 402);
    assert_eq!(content_type(&page), "application/json");
}

#[tokio::test]
async fn g11_settle_first_charges_before_the_upstream_runs() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(6);
    let payment = pay_for(&fixture, "/services/first/echo", &buyer).await;
    let before = fixture.usdc(PAY_TO).await;

    // A rejected settlement: the upstream is never called and the body is a 402.
    fixture.probe.reject_settles.store(true, Ordering::SeqCst);
    let refused = paid_get(&fixture.gateway, "/services/first/echo", &payment).await;
    assert_eq!(refused.status(), 402);
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        0,
        "upstream not run"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["extensions"]["paymentFailure"]["reason"],
        "settlement_rejected"
    );

    // Accepted: charged first, then served, with the receipt.
    fixture.probe.reject_settles.store(false, Ordering::SeqCst);
    let served = paid_get(&fixture.gateway, "/services/first/echo", &payment).await;
    assert_eq!(served.status(), 200);
    let receipt: SettleResponse =
        header::decode(served.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success);
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));

    // The same payment again: refused as already used, upstream not run.
    let replay = paid_get(&fixture.gateway, "/services/first/echo", &payment).await;
    assert_eq!(replay.status(), 402);
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn g11_upstream_failure_after_a_settle_first_charge_is_a_refund_owed() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/first/fail", &fixture.buyer(7)).await;
    let before = fixture.usdc(PAY_TO).await;
    let response = paid_get(&fixture.gateway, "/services/first/fail", &payment).await;
    assert_eq!(response.status(), 500, "the upstream's answer is relayed");
    let receipt: SettleResponse =
        header::decode(response.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success, "the buyer learns it was charged");
    assert_eq!(response.text().await.unwrap(), "upstream broke");
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
    let metrics = fixture.metrics().await;
    let owed = metrics
        .lines()
        .find(|l| {
            l.starts_with("obol_x402_verifier_refund_owed_total")
                && l.contains("offer_name=\"first\"")
        })
        .expect("refund_owed counted");
    assert!(owed.ends_with(" 1"), "{owed}");
}
