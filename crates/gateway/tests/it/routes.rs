//! Declared routes (free and paid gates, per-route prices, methods, an exhaustive table) and
//! offers paid in several currencies or limited in concurrency and rate.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use obol_chain::Sender;
use obol_devnet::{OBOL, USDC};
use obol_gateway::limits::Limits;
use obol_gateway::proxy::UpstreamAuth;
use obol_gateway::{Gate, Methods, OfferKind, Route, RouteTable};
use obol_x402::header::{PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::primitives::U256;
use obol_x402::token::PERMIT2;

use crate::{Fixture, PAY_TO, challenge_of, offer, option, paid_get, sign};

/// The fixture's upstream sold as `api` with declared routes: everything readable for free,
/// `POST /echo` paid at 0.002 USDC, `/slow` paid at the offer's price.
fn declared(fixture: &Fixture) -> String {
    let base = offer("api", &fixture.upstream, OfferKind::Http, "USDC", "1000").offer;
    let mut dearer = (*base).clone();
    dearer.options = vec![option("USDC", "2000")];
    let route = |pattern: &str, methods: &[&str], gate, offer| Route {
        pattern: pattern.into(),
        methods: Methods::parse(methods.iter().copied()).unwrap(),
        gate,
        offer,
        free_quota: None,
    };
    fixture.routes.store(RouteTable::new(vec![
        route("/services/api/*", &["GET"], Gate::Free, base.clone()),
        route(
            "/services/api/echo",
            &["POST"],
            Gate::Paid,
            Arc::new(dearer),
        ),
        route("/services/api/slow", &[], Gate::Paid, base),
    ]));
    format!("{}/services/api", fixture.gateway)
}

#[tokio::test]
async fn a_free_route_is_served_without_payment_and_without_a_payer() {
    let fixture = Fixture::start().await;
    let api = declared(&fixture);
    let response = reqwest::Client::new()
        .get(format!("{api}/echo"))
        .header("x-payment-payer", "0xforged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key(PAYMENT_RESPONSE));
    let seen: serde_json::Value = response.json().await.unwrap();
    assert!(seen["headers"].get("x-payment-payer").is_none(), "{seen}");
    assert_eq!(seen["headers"]["authorization"], "Bearer upstream-secret");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.probe.verified(), 0);
}

#[tokio::test]
async fn a_paid_route_charges_its_own_price() {
    let fixture = Fixture::start().await;
    let api = declared(&fixture);
    let client = reqwest::Client::new();
    let unpaid = client.post(format!("{api}/echo")).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let required = challenge_of(&unpaid);
    assert_eq!(required.accepts[0].amount.0, U256::from(2000));
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);

    let before = fixture.usdc(PAY_TO).await;
    let paid = client
        .post(format!("{api}/echo"))
        .header(PAYMENT_SIGNATURE, sign(&fixture.buyer(1), &required, 0))
        .send()
        .await
        .unwrap();
    obol_testkit::x402::assert_paid(&paid);
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(2000));
    // The offer's own price where the route sets none.
    let slow = client.get(format!("{api}/slow")).send().await.unwrap();
    assert_eq!(challenge_of(&slow).accepts[0].amount.0, U256::from(1000));
}

#[tokio::test]
async fn a_method_no_route_answers_is_405_and_never_reaches_the_upstream() {
    let fixture = Fixture::start().await;
    let api = declared(&fixture);
    let response = reqwest::Client::new()
        .put(format!("{api}/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "method_not_allowed");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_path_no_declared_route_covers_is_refused_not_served() {
    let fixture = Fixture::start().await;
    let base = offer("api", &fixture.upstream, OfferKind::Http, "USDC", "1000").offer;
    fixture.routes.store(RouteTable::new(vec![Route {
        pattern: "/services/api/v1/*".into(),
        methods: Methods::ANY,
        gate: Gate::Free,
        offer: base,
        free_quota: None,
    }]));
    for path in [
        "/services/api/echo",
        "/services/api",
        "/services/api/v2/echo",
    ] {
        let response = reqwest::get(format!("{}{path}", fixture.gateway))
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["reason"], "paid_route_not_found", "{path}");
    }
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
}

/// ForwardAuth answers a free route with 200 and blank identity headers, a paid one with 402.
#[tokio::test]
async fn forward_auth_follows_the_declared_routes() {
    let fixture = Fixture::start().await;
    declared(&fixture);
    let verify = |method: &'static str, uri: &'static str| {
        reqwest::Client::new()
            .get(format!("{}/verify", fixture.internal))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-payment-payer", "0xforged")
            .send()
    };
    let free = verify("GET", "/services/api/echo").await.unwrap();
    assert_eq!(free.status(), 200);
    assert_eq!(free.headers()["x-payment-payer"], "");
    assert_eq!(free.headers()["authorization"], "Bearer upstream-secret");
    let paid = verify("POST", "/services/api/echo").await.unwrap();
    assert_eq!(paid.status(), 402);
    let refused = verify("DELETE", "/services/api/echo").await.unwrap();
    assert_eq!(refused.status(), 405);
}

/// An offer paid in USDC or OBOL: the 402 lists both in order, a payment in the second settles
/// in that token with exact deltas, and a payment in terms not offered is refused before the
/// upstream is called.
#[tokio::test]
async fn a_payment_in_the_second_currency_settles_in_that_currency() {
    let fixture = Fixture::start().await;
    let mut multi =
        (*offer("multi", &fixture.upstream, OfferKind::Http, "USDC", "1000").offer).clone();
    multi.options.push(option("OBOL", "1000000000000000"));
    fixture
        .routes
        .store(RouteTable::new(vec![Route::below_prefix(multi)]));
    let url = format!("{}/services/multi/echo", fixture.gateway);
    let unpaid = reqwest::get(&url).await.unwrap();
    let required = challenge_of(&unpaid);
    let assets: Vec<&str> = required.accepts.iter().map(|a| a.asset.as_str()).collect();
    assert_eq!(
        assets,
        [USDC.to_checksum(None), OBOL.to_checksum(None)],
        "both, in the offer's order"
    );

    // OBOL moves through Permit2: the buyer approves it once.
    let buyer = fixture.buyer(5);
    let approval = Sender::new(&fixture.client, &buyer)
        .approve(OBOL, PERMIT2, U256::MAX)
        .await
        .unwrap();
    let (_, mined) = Sender::new(&fixture.client, &buyer)
        .wait_receipt(approval, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(mined, Ok(Some(true)));
    let pay_to = PAY_TO.parse().unwrap();
    let balances = || async {
        (
            fixture.client.token_balance(USDC, pay_to).await.unwrap(),
            fixture.client.token_balance(OBOL, pay_to).await.unwrap(),
        )
    };
    let before = balances().await;
    let paid = paid_get(
        &fixture.gateway,
        "/services/multi/echo",
        &sign(&buyer, &required, 1),
    )
    .await;
    assert_eq!(paid.status(), 200);
    assert_eq!(
        balances().await,
        (before.0, before.1 + U256::from(1_000_000_000_000_000_u64)),
        "paid in OBOL only"
    );
    let calls = fixture.log.calls.load(Ordering::SeqCst);

    // Terms nobody offered (the USDC amount in OBOL): refused, the upstream never called.
    let mut wrong = required.clone();
    wrong.accepts[0].asset = OBOL.to_checksum(None);
    let refused = paid_get(
        &fixture.gateway,
        "/services/multi/echo",
        &sign(&buyer, &wrong, 0),
    )
    .await;
    assert_eq!(refused.status(), 402);
    assert_eq!(
        challenge_of(&refused).extensions.unwrap()["paymentFailure"]["reason"],
        "no_matching_requirement"
    );
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), calls);
    assert_eq!(
        balances().await.1,
        before.1 + U256::from(1_000_000_000_000_000_u64)
    );
}

/// The fixture's upstream sold as `capped`, free for every path, with `limits`.
fn capped(fixture: &Fixture, max_in_flight: u32, rps: u32) -> String {
    let mut offer =
        (*offer("capped", &fixture.upstream, OfferKind::Http, "USDC", "1000").offer).clone();
    offer.limits = Limits {
        max_in_flight: NonZeroU32::new(max_in_flight),
        rps: NonZeroU32::new(rps),
    };
    fixture.routes.store(RouteTable::new(vec![Route {
        pattern: "/services/capped/*".into(),
        methods: Methods::ANY,
        gate: Gate::Free,
        offer: Arc::new(offer),
        free_quota: None,
    }]));
    format!("{}/services/capped", fixture.gateway)
}

#[tokio::test]
async fn one_call_beyond_max_in_flight_is_429_and_the_slot_frees_when_done() {
    let fixture = Fixture::start().await;
    let url = capped(&fixture, 2, 0);
    let client = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let call = client.get(format!("{url}/slow")).send();
        calls.spawn(async move { call.await.unwrap().status().as_u16() });
    }
    let statuses: Vec<u16> = calls.join_all().await;
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 200, 429], "{statuses:?}");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 2);
    let again = client.get(format!("{url}/slow")).send().await.unwrap();
    assert_eq!(again.status(), 200, "slots freed");
}

#[tokio::test]
async fn beyond_the_rate_is_429_with_retry_after_even_across_a_table_swap() {
    let fixture = Fixture::start().await;
    let url = capped(&fixture, 0, 1);
    let client = reqwest::Client::new();
    for i in 0..2 {
        let response = client.get(format!("{url}/echo")).send().await.unwrap();
        assert_eq!(response.status(), 200, "burst of 2 × rps, call {i}");
    }
    // A new table with the same offer and limits keeps the spent bucket.
    capped(&fixture, 0, 1);
    let refused = client.get(format!("{url}/echo")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        (body["reason"].as_str(), body["retriable"].as_bool()),
        (Some("rate_limited"), Some(true))
    );
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 2);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let later = client.get(format!("{url}/echo")).send().await.unwrap();
    assert_eq!(later.status(), 200, "refilled");
}

/// Bring your own key: the seller's secret goes upstream under its own header and replaces the
/// buyer's copy; a paying buyer's `Authorization` never reaches the upstream, a free route's
/// does when the offer sends no `Authorization` of its own.
#[tokio::test]
async fn the_sellers_key_replaces_the_buyers_and_a_buyers_authorization_stays_out() {
    let fixture = Fixture::start().await;
    let mut keyed =
        (*offer("api", &fixture.upstream, OfferKind::Http, "USDC", "1000").offer).clone();
    keyed.upstream_auth = Some(UpstreamAuth::new("X-Api-Key", "sk-seller").unwrap());
    let keyed = Arc::new(keyed);
    let route = |method: &str, gate| Route {
        pattern: "/services/api/echo".into(),
        methods: Methods::parse([method]).unwrap(),
        gate,
        offer: keyed.clone(),
        free_quota: None,
    };
    fixture.routes.store(RouteTable::new(vec![
        route("GET", Gate::Free),
        route("POST", Gate::Paid),
    ]));
    let echo = format!("{}/services/api/echo", fixture.gateway);
    let client = reqwest::Client::new();
    let seen = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        let seen: serde_json::Value = response.json().await.unwrap();
        seen["headers"].clone()
    };
    let buyer_headers = |request: reqwest::RequestBuilder| {
        request
            .header("authorization", "Bearer buyer-token")
            .header("x-api-key", "buyer-key")
    };

    let free = seen(buyer_headers(client.get(&echo)).send().await.unwrap()).await;
    assert_eq!(free["x-api-key"], "sk-seller");
    assert_eq!(free["authorization"], "Bearer buyer-token");

    let unpaid = client.post(&echo).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let payment = sign(&fixture.buyer(0), &challenge_of(&unpaid), 0);
    let paid = seen(
        buyer_headers(client.post(&echo).header(PAYMENT_SIGNATURE, payment))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(paid["x-api-key"], "sk-seller");
    assert!(paid.get("authorization").is_none(), "{paid}");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 2);
}
