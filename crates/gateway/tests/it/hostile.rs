//! A hostile buyer against the gateway, the embedded facilitator and anvil: free streams, path
//! escapes, payments charged but never served. Each test failed on the gateway before
//! [hardening].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::Uri;
use obol_gateway::{OfferKind, Route, RouteTable};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::primitives::{Address, U256};
use obol_x402::signer::ValidityWindow;
use obol_x402::wire::{PaymentPayload, SettleResponse, VerifyRequest};

use crate::{
    Fixture, PAY_TO, challenge_of, now, offer, paid_get, pay_for, sign, sign_window, spawn,
};

async fn settles_reach(fixture: &Fixture, n: usize) {
    for _ in 0..200 {
        if fixture.probe.settled() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn balance_moves(fixture: &Fixture, before: U256) -> U256 {
    for _ in 0..100 {
        let now = fixture.usdc(PAY_TO).await;
        if now != before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    before
}

async fn reason_of(response: reqwest::Response) -> String {
    let status = response.status();
    if status == 402 {
        let required = challenge_of(&response);
        return required.extensions.unwrap()["paymentFailure"]["reason"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let body: serde_json::Value = response.json().await.unwrap();
    body["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_authorization_expiring_before_the_advertised_window_is_refused() {
    let fixture = Fixture::start().await;
    let response = reqwest::get(format!("{}/services/echo/stream", fixture.gateway))
        .await
        .unwrap();
    let required = challenge_of(&response);
    let window = ValidityWindow {
        valid_after: 0,
        valid_before: now() + 8,
    };
    let payment = sign_window(&fixture.buyer(1), &required, 0, window);
    let response = paid_get(&fixture.gateway, "/services/echo/stream", &payment).await;
    assert_eq!(response.status(), 402);
    let required = challenge_of(&response);
    let failure = &required.extensions.unwrap()["paymentFailure"];
    assert_eq!(failure["reason"], "authorization_expires_too_soon");
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .contains("at least 270 s"),
        "{failure}"
    );
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0, "never served");
    assert_eq!(fixture.probe.verified(), 0);
}

/// Collects the rest of a stream after `first`.
async fn rest_of(mut response: reqwest::Response, first: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(first).into_owned();
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn a_stream_is_charged_as_its_first_content_goes_out_and_runs_on() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/slowstream", &fixture.buyer(3)).await;
    let before = fixture.usdc(PAY_TO).await;
    let mut response = paid_get(&fixture.gateway, "/services/echo/slowstream", &payment).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk 0"));
    // The settlement lands while the stream still runs (six events, 400 ms apart).
    settles_reach(&fixture, 1).await;
    let mid = balance_moves(&fixture, before).await;
    assert_eq!(mid, before + U256::from(1000), "charged mid-stream");
    let text = rest_of(response, &first).await;
    assert_eq!(text.matches("data: chunk").count(), 6, "{text}");
    assert_eq!(fixture.probe.settled(), 1, "once");
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
}

#[tokio::test]
async fn a_stream_without_content_as_its_authorization_nears_expiry_settles_first() {
    let fixture = Fixture::start().await;
    // Settle 298 s before expiry: one to two seconds in, before the first event (2.5 s).
    let gateway = Fixture::gateway_with(
        &fixture.routes,
        &fixture.probe,
        &fixture.guard_after_a_crash(),
        |config| config.paygate.stream_settle_margin = Duration::from_secs(298),
    )
    .await;
    let payment = pay_for(&fixture, "/services/echo/latestream", &fixture.buyer(4)).await;
    let before = fixture.usdc(PAY_TO).await;
    let mut response = paid_get(&gateway, "/services/echo/latestream", &payment).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "settled before the first event went out"
    );
    let text = rest_of(response, &first).await;
    assert_eq!(text.matches("data: late").count(), 2, "{text}");
    assert_eq!(fixture.probe.settled(), 1, "once");
}

#[tokio::test]
async fn a_stream_whose_settlement_fails_is_cut() {
    let fixture = Fixture::start().await;
    let gateway = fixture.gateway.clone();
    fixture.probe.reject_settles.store(true, Ordering::SeqCst);
    let payment = pay_for(&fixture, "/services/echo/slowstream", &fixture.buyer(1)).await;
    let mut response = paid_get(&gateway, "/services/echo/slowstream", &payment).await;
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let cut = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the stream ends in an error, not a clean end: {text}");
    assert!(
        text.matches("data: chunk").count() < 6,
        "the rest of the stream is not delivered: {text}"
    );
    // Content went out: the payment is never released for reuse as a new one; sent again, it
    // is only served if the facilitator now settles it.
    let calls = fixture.log.calls.load(Ordering::SeqCst);
    let again = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(again.status(), 402);
    assert_eq!(reason_of(again).await, "settlement_rejected");
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        calls,
        "not served"
    );
}

/// Moves exactly `amount` USDC from `from` to `to` through the embedded facilitator.
async fn fund(fixture: &Fixture, from: &LocalSigner, to: Address, amount: u64) {
    let response = reqwest::get(format!("{}/services/echo/echo", fixture.gateway))
        .await
        .unwrap();
    let mut required = challenge_of(&response);
    required.accepts[0].pay_to = to.to_checksum(None);
    required.accepts[0].amount = obol_x402::wire::DecimalU256(U256::from(amount));
    let payment = sign(from, &required, 0);
    let PaymentPayload::V2(payload) = header::decode::<PaymentPayload>(&payment).unwrap() else {
        panic!("v2 expected");
    };
    let request = VerifyRequest::V2 {
        payment_payload: payload,
        payment_requirements: required.accepts[0].clone(),
    };
    let receipt = fixture.probe.inner.settle(&request).await.unwrap();
    assert!(receipt.success, "{receipt:?}");
}

/// Three concurrent streams paid by a wallet holding exactly one payment: each outcome as
/// (status, what came of it), sorted; and the seller's balance change.
async fn three_streams_on_one_payment_of_funds(fixture: &Fixture) -> (Vec<(u16, String)>, U256) {
    let payer = LocalSigner::random();
    fund(fixture, &fixture.buyer(4), payer.address(), 1000).await;
    let mut payments = Vec::new();
    for _ in 0..3 {
        payments.push(pay_for(fixture, "/services/echo/stream", &payer).await);
    }
    let before = fixture.usdc(PAY_TO).await;
    let streams: Vec<_> = payments
        .into_iter()
        .map(|payment| {
            let gateway = fixture.gateway.clone();
            tokio::spawn(async move {
                let mut response = paid_get(&gateway, "/services/echo/stream", &payment).await;
                let status = response.status().as_u16();
                if status != 200 {
                    return (status, reason_of(response).await);
                }
                let mut text = String::new();
                let end = loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                        Ok(None) => break "complete",
                        Err(_) => break "cut",
                    }
                };
                (
                    status,
                    format!("{} events, {end}", text.matches("data: chunk").count()),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for stream in streams {
        outcomes.push(stream.await.unwrap());
    }
    outcomes.sort();
    settles_reach(fixture, 1).await;
    let moved = balance_moves(fixture, before).await - before;
    (outcomes, moved)
}

#[tokio::test]
async fn concurrent_streams_are_bounded_by_the_payers_balance() {
    let fixture = Fixture::start().await;
    let (outcomes, moved) = three_streams_on_one_payment_of_funds(&fixture).await;
    assert_eq!(
        outcomes,
        [
            (200, "5 events, complete".to_owned()),
            (402, "insufficient_funds".to_owned()),
            (402, "insufficient_funds".to_owned())
        ],
        "one stream served, the others refused before any content"
    );
    assert_eq!(moved, U256::from(1000));
}

#[tokio::test]
async fn without_a_readable_balance_every_stream_settles_before_its_first_byte() {
    let fixture = Fixture::start().await;
    fixture.probe.hide_balance.store(true, Ordering::SeqCst);
    let (outcomes, moved) = three_streams_on_one_payment_of_funds(&fixture).await;
    assert_eq!(outcomes.len(), 3);
    let complete = outcomes
        .iter()
        .filter(|o| *o == &(200, "5 events, complete".to_owned()))
        .count();
    // The others get nothing: cut before their first byte when their settlement fails, or
    // refused at verify when the first one's settlement already emptied the payer.
    let nothing = outcomes
        .iter()
        .filter(|(status, what)| {
            (*status == 200 && what == "0 events, cut")
                || (*status == 402 && (what == "payment_invalid" || what == "insufficient_funds"))
        })
        .count();
    assert_eq!((complete, nothing), (1, 2), "{outcomes:?}");
    assert_eq!(moved, U256::from(1000), "charged once, for the one served");
}

#[tokio::test]
async fn leaving_mid_stream_after_content_is_charged_and_the_payment_stays_used() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/stream", &fixture.buyer(5)).await;
    let before = fixture.usdc(PAY_TO).await;
    let mut response = paid_get(&fixture.gateway, "/services/echo/stream", &payment).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chunk 0"));
    drop(response);
    settles_reach(&fixture, 1).await;
    assert_eq!(
        balance_moves(&fixture, before).await,
        before + U256::from(1000),
        "content went out: charged"
    );
    // Neither the same stream nor another call is served with it again.
    let again = loop {
        let again = paid_get(&fixture.gateway, "/services/echo/stream", &payment).await;
        assert_eq!(again.status(), 402);
        let reason = reason_of(again).await;
        if reason != "payment_in_flight" {
            break reason;
        }
        // The settlement is still being recorded.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again, "payment_already_used");
    assert_eq!(fixture.probe.settled(), 1);
}

#[tokio::test]
async fn a_pending_settlement_is_served_when_the_same_payment_comes_back() {
    let fixture = Fixture::start().await;
    fixture.probe.pending_settles.store(1, Ordering::SeqCst);
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(6)).await;
    let before = fixture.usdc(PAY_TO).await;
    let first = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "2");
    let pending: SettleResponse =
        header::decode(first.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert_eq!(pending.error_reason.as_deref(), Some("settlement_pending"));
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["reason"], "settlement_pending");
    assert_eq!(body["retriable"], true);

    let retry = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(
        retry.status(),
        200,
        "the same payment is served once settled"
    );
    let receipt: SettleResponse =
        header::decode(retry.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.transaction, pending.transaction, "one transfer");
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));

    let third = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(third.status(), 402);
    assert_eq!(reason_of(third).await, "payment_already_used");
}

#[tokio::test]
async fn a_lost_settle_answer_keeps_the_payment_and_the_retry_is_served() {
    let fixture = Fixture::start().await;
    fixture.probe.lost_settles.store(1, Ordering::SeqCst);
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(7)).await;
    let before = fixture.usdc(PAY_TO).await;
    let first = paid_get(&fixture.gateway, "/services/echo/echo", &payment).await;
    assert_eq!(first.status(), 503);
    assert_eq!(reason_of(first).await, "settlement_pending");
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "moved"
    );

    // A gateway restart in between changes nothing: the state is durable.
    let restarted = Fixture::gateway(
        &fixture.routes,
        &fixture.probe,
        &fixture.guard_after_a_crash(),
    )
    .await;
    let retry = paid_get(&restarted, "/services/echo/echo", &payment).await;
    obol_testkit::x402::assert_paid(&retry);
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "once"
    );
}

/// A GET of `path` exactly as written, with a payment: (status, body).
async fn raw_get(base: &str, path: &str, payment: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{PAYMENT_SIGNATURE}: {payment}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn a_payment_settled_as_the_gateway_died_is_served_after_the_restart() {
    let fixture = Fixture::start().await;
    fixture
        .probe
        .hang_after_settle
        .store(true, Ordering::SeqCst);
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(7)).await;
    let before = fixture.usdc(PAY_TO).await;
    // The transfer lands, the answer never comes: the client gives up, the request dies.
    let lost = reqwest::Client::new()
        .get(format!("{}/services/echo/echo", fixture.gateway))
        .header(PAYMENT_SIGNATURE, &payment)
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    assert!(lost.is_err(), "no answer");
    assert_eq!(
        balance_moves(&fixture, before).await,
        before + U256::from(1000)
    );

    // A new gateway and a new facilitator (nothing remembered) on the same guard file.
    let probe = crate::Probe::over(&fixture.client, fixture.devnet.key(9));
    let restarted = Fixture::gateway(&fixture.routes, &probe, &fixture.guard_after_a_crash()).await;
    let retry = paid_get(&restarted, "/services/echo/echo", &payment).await;
    assert_eq!(retry.status(), 200, "served: its payment landed");
    let receipt: SettleResponse =
        header::decode(retry.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
    assert!(receipt.success);
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        before + U256::from(1000),
        "once"
    );
    assert_eq!(probe.verified(), 0, "asked to settle, not as new");
}

/// An upstream that records every path it is asked for.
async fn recording_upstream() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new().fallback(move |uri: Uri| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(uri.path().to_owned());
            "ok"
        }
    });
    (spawn(router).await, seen)
}

#[tokio::test]
async fn encoded_dot_segments_never_leave_the_offers_upstream_path() {
    let fixture = Fixture::start().await;
    let (upstream, seen) = recording_upstream().await;
    let mut routes: Vec<Route> = fixture.routes.load().routes().cloned().collect();
    routes.push(offer(
        "foo",
        &format!("{upstream}/api/foo"),
        OfferKind::Http,
        "USDC",
        "1000",
    ));
    fixture.routes.store(RouteTable::new(routes));
    let payment = pay_for(&fixture, "/services/foo/x", &fixture.buyer(8)).await;
    for path in [
        "/services/foo/%2e%2e/%2e%2e/admin",
        "/services/foo/%2E%2E/%2e%2E/admin",
        "/services/foo/.%2e/.%2e/admin",
        "/services/foo/%252e%252e/%252e%252e/admin",
        "/services/foo/..%2f..%2fadmin",
        "/services/foo/..%5c..%5cadmin",
    ] {
        // Sent as written: URL libraries (reqwest's included) would collapse the dots first.
        let (status, body) = raw_get(&fixture.gateway, path, &payment).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("\"reason\":\"invalid_path\""),
            "{path}: {body}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(fixture.probe.verified(), 0);
    // The same payment still buys a call under the offer's path.
    let response = paid_get(&fixture.gateway, "/services/foo/items/7", &payment).await;
    assert_eq!(response.status(), 200);
    assert_eq!(*seen.lock().unwrap(), ["/api/foo/items/7"]);
}

#[tokio::test]
async fn forward_auth_refuses_escaping_paths_like_the_gateway() {
    let fixture = Fixture::start().await;
    let response = reqwest::Client::new()
        .get(format!("{}/verify", fixture.internal))
        .header("x-forwarded-uri", "/services/echo/%2e%2e/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(reason_of(response).await, "invalid_path");
}

#[tokio::test]
async fn one_payment_replayed_concurrently_is_served_and_settled_once() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/echo", &fixture.buyer(1)).await;
    let before = fixture.usdc(PAY_TO).await;
    let served = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (gateway, payment, served) = (fixture.gateway.clone(), payment.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            if paid_get(&gateway, "/services/echo/echo", &payment)
                .await
                .status()
                == 200
            {
                served.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.probe.settled(), 1);
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
}

/// A flood of well-formed payments from keys that hold nothing (free to make) costs the
/// facilitator at most the client's budget of refused verifications (here 10 a second, bursts
/// of 20): past it, each is refused with 429 and `Retry-After` before any verification. Payments
/// that verify cost nothing of it.
#[tokio::test]
async fn a_flood_of_unfunded_payments_is_cut_at_the_clients_verify_budget() {
    let fixture = Fixture::start().await;
    let budget = |c: &mut obol_gateway::server::GatewayConfig| {
        c.paygate.verify_rate = std::num::NonZeroU32::new(10).zip(std::num::NonZeroU32::new(20));
    };
    let gateway = Fixture::gateway_with(
        &fixture.routes,
        &fixture.probe,
        &fixture.dir.path().join("flood.sqlite"),
        budget,
    )
    .await;
    let response = reqwest::get(format!("{gateway}/services/echo/echo"))
        .await
        .unwrap();
    let required = challenge_of(&response);
    // An honest buyer's payments cost nothing of the budget: 25 in a row, over the burst.
    for _ in 0..25 {
        let payment = sign(&fixture.buyer(1), &required, 0);
        let answer = paid_get(&gateway, "/services/echo/echo", &payment).await;
        assert_eq!(answer.status(), 200);
    }
    let honest = fixture.probe.verified();
    let started = std::time::Instant::now();
    let mut limited = 0;
    let mut refused_otherwise = 0;
    for _ in 0..60 {
        let broke = LocalSigner::random();
        let payment = sign(&broke, &required, 0);
        let answer = paid_get(&gateway, "/services/echo/echo", &payment).await;
        match answer.status().as_u16() {
            429 => {
                assert!(answer.headers().contains_key("retry-after"));
                limited += 1;
            }
            402 => refused_otherwise += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let verifies = fixture.probe.verified() - honest;
    // Burst 20, then 10 a second.
    let budget = 20 + (elapsed * 10.0).ceil() as usize;
    assert!(
        verifies <= budget,
        "{verifies} verifications in {elapsed:.2} s (budget {budget})"
    );
    assert_eq!(
        verifies, refused_otherwise,
        "each verified one was refused (unfunded)"
    );
    assert!(limited >= 60 - budget, "{limited} refused with 429");
    println!(
        "verify budget: 25 funded payments served; 60 unfunded → {verifies} verified, {limited} refused with 429, in {elapsed:.2} s"
    );
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        25,
        "only the honest calls served"
    );
}
