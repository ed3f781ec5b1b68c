//! The buyer proxy against scripted sellers (no chain): a redirect is never followed,
//! `/upstream/<name>/…` never leaves the purchase, and a settlement the seller reports pending
//! is retried with the same payment, never paid again with another authorization.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Json, Response};
use obol_buyer::{AuthPool, BuyerProxy, PreSigned, PresignOptions, Purchase, presign};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::wire::v2;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{now, requirement, spawn};

/// One request a scripted server received.
#[derive(Debug, Clone)]
struct Seen {
    method: axum::http::Method,
    /// Path and query, as sent.
    target: String,
    payment: Option<String>,
    body: Bytes,
    at: Instant,
}

/// How a scripted server answers: given the request and, for a paid one, how many times this
/// same payment header has arrived (1 the first time; 0 when unpaid).
type Script = Arc<dyn Fn(&Seen, usize) -> Response + Send + Sync>;

#[derive(Clone)]
struct Scripted {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
}

async fn answer(State(server): State<Scripted>, request: Request) -> Response {
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let payment = [PAYMENT_SIGNATURE, "x-payment"]
        .iter()
        .find_map(|name| request.headers().get(*name))
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let seen = Seen {
        method,
        target,
        payment,
        body,
        at: Instant::now(),
    };
    let attempt = {
        let mut all = server.seen.lock().unwrap();
        all.push(seen.clone());
        seen.payment.as_ref().map_or(0, |payment| {
            all.iter()
                .filter(|s| s.payment.as_ref() == Some(payment))
                .count()
        })
    };
    (server.script)(&seen, attempt)
}

/// A router answering every method and path with `script`; what it received.
fn scripted_router(script: Script) -> (Router, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new().fallback(answer).with_state(Scripted {
        seen: seen.clone(),
        script,
    });
    (router, seen)
}

/// A loopback server answering every method and path with `script`; what it received.
async fn scripted(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let (router, seen) = scripted_router(script);
    (spawn(router).await, seen)
}

/// The 402 every scripted seller sends to an unpaid call: 0.001 USDC, the pool's terms.
fn challenge() -> Response {
    challenge_at(1000)
}

/// A 402 asking `amount` atomic USDC, otherwise the pool's terms.
fn challenge_at(amount: u64) -> Response {
    let body = json!({
        "x402Version": 2, "error": "payment required",
        "resource": {"url": "http://seller.test/"}, "accepts": [requirement(amount)],
    });
    (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response()
}

const TX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// `response` with a `PAYMENT-RESPONSE` receipt.
fn with_receipt(mut response: Response, success: bool) -> Response {
    let mut receipt = json!({"success": success, "transaction": TX, "network": "eip155:84532"});
    if !success {
        receipt["errorReason"] = json!("settlement_pending");
    }
    let value = header::encode(&receipt).unwrap();
    response
        .headers_mut()
        .insert(PAYMENT_RESPONSE, HeaderValue::from_str(&value).unwrap());
    response
}

/// The gateway's 503 for a settlement not finished: `reason`, `retriable`, `Retry-After`.
fn unsettled(reason: &str, retriable: bool, retry_after: &str) -> Response {
    let body = json!({"error": "Payment settlement pending", "reason": reason,
                      "retriable": retriable});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_str(retry_after).unwrap());
    with_receipt(response, false)
}

fn served() -> Response {
    with_receipt(Json(json!({"ok": true})).into_response(), true)
}

/// `count` authorizations paying `amount` atomic USDC to `seller`.
fn signed(seller: &str, amount: u64, count: usize) -> Vec<PreSigned> {
    let signer = LocalSigner::from_private_key_hex(obol_devnet::DEV_KEYS[3]).unwrap();
    presign(
        &signer,
        &requirement(amount),
        Some(&v2::ResourceInfo::new(seller)),
        PresignOptions {
            count,
            ttl_secs: 3600,
            now: now(),
        },
        &|_| {},
    )
    .unwrap()
}

/// The purchase `fake`: model `fake`, pool `fake`, at `<seller>/services/fake`.
fn purchase(seller: &str) -> Purchase {
    Purchase {
        model: "fake".into(),
        pool: "fake".into(),
        base: format!("{seller}/services/fake"),
        chain: "base-sepolia".into(),
    }
}

/// A buyer proxy whose purchase `fake` pays `seller` from a pool of `count` authorizations of
/// 0.001 USDC; the proxy itself, its URL and its pool.
async fn proxy_with(seller: &str, count: usize) -> (Arc<BuyerProxy>, String, Arc<AuthPool>) {
    let pool = AuthPool::in_memory().unwrap();
    assert_eq!(
        pool.add("fake", &signed(seller, 1000, count)).unwrap(),
        count
    );
    let proxy =
        BuyerProxy::new(pool.clone(), None, obol_facilitator::http::metrics_handle()).unwrap();
    proxy.set_purchases(vec![purchase(seller)]);
    let url = spawn(proxy.router()).await;
    (proxy, url, pool)
}

/// [`proxy_with`]'s URL and pool.
async fn proxy_over(seller: &str, count: usize) -> (String, Arc<AuthPool>) {
    let (_, url, pool) = proxy_with(seller, count).await;
    (url, pool)
}

async fn chat(proxy: &str) -> (u16, Value, Option<String>) {
    let response = reqwest::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .json(&json!({"model": "paid/fake", "messages": [{"role": "user", "content": "secret"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let receipt = response
        .headers()
        .get(PAYMENT_RESPONSE)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), receipt)
}

fn paid(seen: &Mutex<Vec<Seen>>) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.payment.is_some())
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_seller_redirect_is_refused_and_its_target_receives_nothing() {
    let (elsewhere, stolen) = scripted(Arc::new(|_, _| "thanks".into_response())).await;
    // The Location carries a right-to-left override: shown escaped, never raw.
    let location = format!("{elsewhere}/steal\u{202e}");
    let redirect = move |_: &Seen, _| {
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        response.headers_mut().insert(
            "location",
            HeaderValue::from_bytes(location.as_bytes()).unwrap(),
        );
        response
    };
    let shown = format!("{elsewhere}/steal\\u{{202e}}");

    // Redirected before any payment: the agent's body stays here.
    let (seller, _) = scripted(Arc::new(redirect.clone())).await;
    let (proxy, pool) = proxy_over(&seller, 2).await;
    let (status, body, _) = chat(&proxy).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["reason"], "seller_redirected", "{body}");
    assert_eq!(body["location"], shown.as_str(), "{body}");
    assert!(
        obol_testkit::json::error_message(&body).contains("redirect"),
        "{body}"
    );
    assert_eq!(pool.counts("fake").unwrap().available, 2, "nothing taken");

    // Redirected once paid: the payment header stays here too, and the authorization, which
    // the seller saw, is never handed out again.
    let (seller, seen) = scripted(Arc::new(move |request: &Seen, attempt| {
        if request.payment.is_none() {
            challenge()
        } else {
            redirect(request, attempt)
        }
    }))
    .await;
    let (proxy, pool) = proxy_over(&seller, 2).await;
    let (status, body, _) = chat(&proxy).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["reason"], "seller_redirected", "{body}");
    assert_eq!(paid(&seen).len(), 1);
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.burned), (1, 1));

    assert!(
        stolen.lock().unwrap().is_empty(),
        "the redirect's target received {:?}",
        stolen.lock().unwrap()
    );
}

/// Sends `GET <target>` to the proxy byte for byte (a client would normalise dot segments and
/// escapes first), over HTTP/1.0 so that the body comes unchunked; the status and body.
async fn raw_get(proxy: &str, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(proxy.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nx-obol-buyer: 1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn upstream_paths_never_leave_the_purchase() {
    let (seller, seen) = scripted(Arc::new(|_, _| "free".into_response())).await;
    let (proxy, _) = proxy_over(&seller, 1).await;
    for target in [
        "/upstream/fake/../x",
        "/upstream/fake/a/../../x",
        "/upstream/fake/./x",
        "/upstream/fake/%2e%2e/x",
        "/upstream/fake/a/%2E./%2e%2E/x",
        "/upstream/fake/a/.%2e/x",
        "/upstream/fake/a/%2e/x",
        "/upstream/fake/a/%252e%252e/%252e%252e/x",
        "/upstream/fake/a/%25252e%25252E/x",
        "/upstream/fake/..%2fx",
        "/upstream/fake/a%2fb",
        "/upstream/fake/a%2Fb",
        "/upstream/fake/a%252fb",
        "/upstream/fake/a\\..\\..\\x",
        "/upstream/fake/a%5c..%5cx",
        "/upstream/fake/a%5C..",
        "/upstream/fake/a%255c..%255cx",
        "/upstream/fake/a%00b",
        "/upstream/fake/a%2500b",
    ] {
        let (status, body) = raw_get(&proxy, target).await;
        assert_eq!(status, 400, "{target}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["reason"], "invalid_path", "{target}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("the path has"), "{target}: {message}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    // Dots inside names and escapes of ordinary characters go through, as they are.
    let (status, body) = raw_get(&proxy, "/upstream/fake/v1/a..b/.well/%41?q=%2e%2e").await;
    assert_eq!((status, body.as_str()), (200, "free"));
    let targets: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(targets, ["/services/fake/v1/a..b/.well/%41?q=%2e%2e"]);
}

#[tokio::test]
async fn a_pending_settlement_is_retried_with_the_same_payment_until_served() {
    // Paid: pending (wait 1 s), then failed before broadcasting (retriable), then served.
    let (seller, seen) = scripted(Arc::new(|request: &Seen, attempt| {
        match (request.payment.is_some(), attempt) {
            (false, _) => challenge(),
            (true, 1) => unsettled("settlement_pending", true, "1"),
            (true, 2) => unsettled("settlement_failed", true, "0"),
            (true, _) => served(),
        }
    }))
    .await;
    let (proxy, pool) = proxy_over(&seller, 3).await;
    let (status, body, receipt) = chat(&proxy).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert!(receipt.is_some(), "the receipt is relayed");

    let paid = paid(&seen);
    assert_eq!(paid.len(), 3, "one payment, sent three times");
    assert!(
        paid.iter().all(|s| s.payment == paid[0].payment),
        "the same payment header every time"
    );
    assert!(
        paid.iter()
            .all(|s| s.body.as_ref() == paid[0].body.as_ref() && !s.body.is_empty()),
        "the same body every time"
    );
    assert!(
        paid[1].at.duration_since(paid[0].at) >= Duration::from_secs(1),
        "Retry-After: 1 is honoured"
    );
    let counts = pool.counts("fake").unwrap();
    assert_eq!(
        (counts.available, counts.spent, counts.burned),
        (2, 1, 0),
        "exactly one authorization consumed"
    );
}

#[tokio::test]
async fn a_settlement_that_stays_pending_is_counted_spent_and_never_reused() {
    let (seller, seen) = scripted(Arc::new(|request: &Seen, _| {
        if request.payment.is_some() {
            unsettled("settlement_pending", true, "0")
        } else {
            challenge()
        }
    }))
    .await;
    let (proxy, pool) = proxy_over(&seller, 3).await;

    let (status, body, receipt) = chat(&proxy).await;
    assert_eq!(
        status, 424,
        "not a 5xx an agent's client retries on its own: {body}"
    );
    assert_eq!(body["reason"], "settlement_pending", "{body}");
    assert_eq!(body["transaction"], TX, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(TX) && message.contains("may still"),
        "{message}"
    );
    assert!(receipt.is_some(), "the seller's receipt is relayed");
    let first = paid(&seen);
    assert_eq!(first.len(), 6, "sent once, retried five times");
    assert!(first.iter().all(|s| s.payment == first[0].payment));
    let counts = pool.counts("fake").unwrap();
    assert_eq!(
        (counts.available, counts.spent, counts.burned),
        (2, 1, 0),
        "counted as spent: the transfer may land"
    );

    // The next call pays with another authorization, never the pending one, up front (the
    // seller accepted these terms) and retried the same way.
    let (status, _, _) = chat(&proxy).await;
    assert_eq!(status, 424);
    let all = paid(&seen);
    assert_eq!(all.len(), 12);
    assert_eq!(seen.lock().unwrap().len(), 13, "one unpaid call in all");
    assert!(all[6..].iter().all(|s| s.payment == all[6].payment));
    assert_ne!(all[6].payment, first[0].payment, "not reused");
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.spent), (1, 2));
}

#[tokio::test]
async fn a_served_call_whose_settlement_is_pending_is_relayed_and_spent() {
    let (seller, seen) = scripted(Arc::new(|request: &Seen, _| {
        if request.payment.is_some() {
            with_receipt(Json(json!({"ok": true})).into_response(), false)
        } else {
            challenge()
        }
    }))
    .await;
    let (proxy, pool) = proxy_over(&seller, 2).await;
    let (status, body, receipt) = chat(&proxy).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert!(receipt.is_some());
    assert_eq!(paid(&seen).len(), 1, "served: nothing to retry");
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.spent), (1, 1));
}

/// The payment's amount, read from a `PAYMENT-SIGNATURE` header.
fn amount_of(payment: &str) -> u64 {
    let payload: v2::PaymentPayload = header::decode(payment).unwrap();
    payload.accepted.amount.to_string().parse().unwrap()
}

/// A seller asking `price` (changeable): unpaid calls and payments of another amount get its
/// 402 (no receipt), payments of the price are served.
fn priced(price: &Arc<AtomicU64>) -> Script {
    let price = price.clone();
    Arc::new(move |request: &Seen, _| {
        let asked = price.load(Ordering::SeqCst);
        match &request.payment {
            Some(payment) if amount_of(payment) == asked => served(),
            _ => challenge_at(asked),
        }
    })
}

/// What the seller received from index `from` on: method, target and payment amount.
fn received(seen: &Mutex<Vec<Seen>>, from: usize) -> Vec<(String, String, Option<u64>)> {
    seen.lock().unwrap()[from..]
        .iter()
        .map(|s| {
            (
                s.method.to_string(),
                s.target.clone(),
                s.payment.as_deref().map(amount_of),
            )
        })
        .collect()
}

const CHAT: &str = "/services/fake/v1/chat/completions";

#[tokio::test]
async fn a_known_seller_is_paid_with_the_first_request_only_where_it_was_paid_before() {
    let price = Arc::new(AtomicU64::new(1000));
    let (seller, seen) = scripted(priced(&price)).await;
    let (proxy, url, pool) = proxy_with(&seller, 10).await;
    let post = |target: &str, amount: Option<u64>| ("POST".to_owned(), target.to_owned(), amount);
    for _ in 0..3 {
        assert_eq!(chat(&url).await.0, 200);
    }
    assert_eq!(
        received(&seen, 0),
        [
            post(CHAT, None),
            post(CHAT, Some(1000)),
            post(CHAT, Some(1000)),
            post(CHAT, Some(1000)),
        ],
        "unpaid and paid once, then one round trip per call"
    );
    let paid_now = paid(&seen);
    let distinct: std::collections::HashSet<_> = paid_now.iter().map(|s| &s.payment).collect();
    assert_eq!(distinct.len(), 3, "a new authorization per call");

    // Another method, path or query of the same purchase: unpaid first, as before.
    let http = reqwest::Client::new();
    let get = http
        .get(format!("{url}/upstream/fake/v1/chat/completions"))
        .header("x-obol-buyer", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let query = http
        .post(format!("{url}/upstream/fake/v1/chat/completions?x=1"))
        .header("x-obol-buyer", "1")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let with_query = format!("{CHAT}?x=1");
    assert_eq!(
        received(&seen, 4),
        [
            ("GET".to_owned(), CHAT.to_owned(), None),
            ("GET".to_owned(), CHAT.to_owned(), Some(1000)),
            post(&with_query, None),
            post(&with_query, Some(1000)),
        ]
    );

    // New purchases (even the same ones): every seller's terms are forgotten.
    proxy.set_purchases(vec![purchase(&seller)]);
    assert_eq!(chat(&url).await.0, 200);
    assert_eq!(
        received(&seen, 8),
        [post(CHAT, None), post(CHAT, Some(1000))]
    );
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.spent, counts.burned), (4, 6, 0));
}

#[tokio::test]
async fn an_up_front_payment_refused_402_is_burned_and_the_new_terms_are_paid_once() {
    let price = Arc::new(AtomicU64::new(1000));
    let (seller, seen) = scripted(priced(&price)).await;
    let (_, url, pool) = proxy_with(&seller, 2).await;
    assert_eq!(pool.add("fake", &signed(&seller, 2000, 2)).unwrap(), 2);
    assert_eq!(chat(&url).await.0, 200);

    // The seller doubles its price: the payment sent up front at 1000 is refused; the call goes
    // on from that 402 and pays 2000 with another authorization.
    price.store(2000, Ordering::SeqCst);
    let (status, body, receipt) = chat(&url).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert!(receipt.is_some());
    let post = |amount| ("POST".to_owned(), CHAT.to_owned(), Some(amount));
    assert_eq!(received(&seen, 2), [post(1000), post(2000)]);
    let counts = pool.counts("fake").unwrap();
    assert_eq!(
        (counts.available, counts.spent, counts.burned, counts.held),
        (1, 2, 1, 0),
        "the refused authorization is burned, never back in the queue"
    );

    // Now the new terms are known: one round trip, never the refused authorization again.
    assert_eq!(chat(&url).await.0, 200);
    assert_eq!(received(&seen, 4), [post(2000)]);
    let payments: Vec<_> = paid(&seen).into_iter().map(|s| s.payment).collect();
    let distinct: std::collections::HashSet<_> = payments.iter().collect();
    assert_eq!(distinct.len(), payments.len(), "no payment sent twice");

    // Nothing left: the known terms cannot be paid, so the call goes unpaid and gets today's
    // answer, nothing sent.
    let (status, body, _) = chat(&url).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    assert_eq!(
        received(&seen, 5),
        [("POST".to_owned(), CHAT.to_owned(), None)]
    );
}

#[tokio::test]
async fn known_terms_the_pool_no_longer_pays_are_ignored() {
    let price = Arc::new(AtomicU64::new(1000));
    let (seller, seen) = scripted(priced(&price)).await;
    let (_, url, pool) = proxy_with(&seller, 2).await;
    assert_eq!(chat(&url).await.0, 200);
    // The purchase is re-signed at the seller's new price under the same pool (the proxy's
    // purchases unchanged): the remembered 1000 matches no row, so nothing goes up front.
    assert_eq!(pool.remove("fake").unwrap(), 1);
    assert_eq!(pool.add("fake", &signed(&seller, 2000, 2)).unwrap(), 2);
    price.store(2000, Ordering::SeqCst);
    assert_eq!(chat(&url).await.0, 200);
    assert_eq!(
        received(&seen, 2),
        [
            ("POST".to_owned(), CHAT.to_owned(), None),
            ("POST".to_owned(), CHAT.to_owned(), Some(2000)),
        ]
    );
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.spent, counts.burned), (1, 1, 0));
}

#[tokio::test]
async fn a_pending_settlement_of_an_up_front_payment_is_retried_with_the_same_payment() {
    let (seller, seen) = scripted(Arc::new(|request: &Seen, attempt| {
        match (request.payment.is_some(), attempt) {
            (false, _) => challenge(),
            (true, 1) => unsettled("settlement_pending", true, "0"),
            (true, _) => served(),
        }
    }))
    .await;
    let (url, pool) = proxy_over(&seller, 3).await;
    for _ in 0..2 {
        assert_eq!(chat(&url).await.0, 200);
    }
    let all = seen.lock().unwrap().clone();
    let payments: Vec<_> = all.iter().map(|s| s.payment.clone()).collect();
    assert_eq!(payments.len(), 5, "{payments:?}");
    assert_eq!(payments[0], None);
    assert!(payments[1].is_some() && payments[1] == payments[2]);
    assert!(payments[3].is_some() && payments[3] == payments[4]);
    assert_ne!(payments[1], payments[3]);
    let counts = pool.counts("fake").unwrap();
    assert_eq!((counts.available, counts.spent, counts.burned), (1, 2, 0));
}

#[tokio::test]
async fn an_up_front_payment_that_never_reached_the_seller_is_released() {
    // Connections close after each answer, so once the server stops nothing reaches it.
    let (router, seen) = scripted_router(Arc::new(|request: &Seen, _| {
        let mut response = if request.payment.is_some() {
            served()
        } else {
            challenge()
        };
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        response
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seller = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(obol_gateway::server::serve(listener, router, async {
        stopped.await.ok();
    }));
    let (url, pool) = proxy_over(&seller, 3).await;
    assert_eq!(chat(&url).await.0, 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let (status, body, _) = chat(&url).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    let counts = pool.counts("fake").unwrap();
    assert_eq!(
        (counts.available, counts.spent, counts.burned, counts.held),
        (2, 1, 0, 0),
        "released, not burned: the seller never saw it"
    );
}
