//! ForwardAuth, limits, and metric pruning.

use std::sync::Arc;
use std::time::Duration;

use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, app};
use obol_gateway::{Route, RouteTable};
use obol_x402::header::PAYMENT_SIGNATURE;

use crate::{Fixture, PAY_TO, pay_for, spawn};

#[tokio::test]
async fn forward_auth_verifies_and_never_settles() {
    let fixture = Fixture::start().await;
    let client = reqwest::Client::new();
    let verify = format!("{}/verify", fixture.internal);
    for internal in ["/verify", "/metrics"] {
        let public = client
            .get(format!("{}{internal}", fixture.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{internal} is not public");
    }

    let response = client.get(&verify).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        "forbidden: missing forwarded URI"
    );

    let response = client
        .get(&verify)
        .header("x-forwarded-uri", "/public/page")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "not ours: Traefik may serve it");

    let response = client
        .get(&verify)
        .header("x-forwarded-uri", "/services/echo/echo?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);

    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(1)).await;
    let before = fixture.usdc(PAY_TO).await;
    let response = client
        .get(&verify)
        .header("x-forwarded-uri", "/services/echo/echo")
        .header("x-forwarded-host", "seller.example")
        .header(PAYMENT_SIGNATURE, &payment)
        .header("x-verified-wallet", "0xspoof")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["authorization"],
        "Bearer upstream-secret"
    );
    assert_eq!(
        response.headers()["x-payment-payer"],
        fixture.buyer(1).address().to_checksum(None)
    );
    assert_eq!(response.headers()["x-verified-wallet"], "");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before,
        "ForwardAuth never settles"
    );
    assert_eq!(fixture.probe.settled(), 0);
}

#[tokio::test]
async fn oversized_bodies_and_slow_upstreams_get_clear_answers() {
    let fixture = Fixture::start().await;
    let config = GatewayConfig {
        body_limit: 1024 * 1024,
        upstream_timeout: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let guard = Arc::new(ReplayGuard::in_memory().unwrap());
    let gateway =
        spawn(app(fixture.routes.clone(), fixture.probe.clone(), guard, config).unwrap()).await;
    let client = reqwest::Client::new();

    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(3)).await;
    let response = client
        .post(format!("{gateway}/services/echo/echo"))
        .header(PAYMENT_SIGNATURE, &payment)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "body_too_large");

    let response = client
        .get(format!("{gateway}/services/echo/slow"))
        .header(PAYMENT_SIGNATURE, &payment)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_unavailable");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{body}"
    );
    assert_eq!(fixture.probe.settled(), 0, "nothing charged");
}

#[tokio::test]
async fn removed_offers_disappear_from_metrics() {
    let fixture = Fixture::start().await;
    reqwest::get(format!("{}/services/obol/x", fixture.gateway))
        .await
        .unwrap();
    let metrics = fixture.metrics().await;
    assert!(metrics.contains("offer_name=\"obol\""));
    let kept: Vec<Route> = fixture
        .routes
        .load()
        .routes()
        .filter(|r| r.offer.name != "obol")
        .cloned()
        .collect();
    fixture.routes.store(RouteTable::new(kept));
    let metrics = fixture.metrics().await;
    assert!(
        !metrics.contains("offer_name=\"obol\""),
        "pruned after the offer left the table"
    );
    let response = reqwest::get(format!("{}/services/obol/x", fixture.gateway))
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "and no longer served");
}
