//! Metered inference (`upto`) end to end on the devnet: the buyer signs a ceiling, the gateway
//! serves and settles exactly what the answer's usage costs — buffered and streamed — sends no
//! transaction for nothing used, refuses a request the ceiling cannot cover before the upstream
//! runs, and charges nothing when the upstream fails. One payment sent twice at once serves one
//! call; a buyer that leaves a stream after content went out is still charged.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::IntoResponse as _;
use axum::routing::post;
use obol_chain::Sender;
use obol_devnet::USDC;
use obol_gateway::metering::Metering;
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable};
use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::metering::{NoUsage, TokenRates};
use obol_x402::primitives::{Address, U256};
use obol_x402::token::PERMIT2;
use obol_x402::wire::{SettleResponse, v2};
use serde_json::{Value, json};

use crate::{Fixture, PAY_TO, challenge_of, option, sign, spawn};

/// 0.15 USDC per million prompt tokens, 0.60 per million completion tokens.
fn rates() -> TokenRates {
    TokenRates {
        input: "0.15".parse().unwrap(),
        output: "0.6".parse().unwrap(),
    }
}

/// 4096 tokens at 0.6 USDC/MTok = 2457.6 → 2458 atomic.
const CEILING: u64 = 2458;

/// The last request body the test model received.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A chat-completions upstream whose answers report the usage the caller asks for in
/// `x-test-usage: <prompt>,<completion>` (`none`: no usage at all); `stream: true` answers in
/// SSE, the usage in a final chunk when `stream_options.include_usage` asks for it.
async fn model(seen: Seen) -> String {
    let answer = move |headers: HeaderMap, body: axum::Json<Value>| {
        let seen = seen.clone();
        async move {
            let request = body.0;
            seen.lock().unwrap().push(request.clone());
            let usage = match headers.get("x-test-usage").and_then(|v| v.to_str().ok()) {
                Some("none") | None => Value::Null,
                Some(pair) => {
                    let (p, c) = pair.split_once(',').unwrap();
                    json!({"prompt_tokens": p.parse::<u64>().unwrap(),
                           "completion_tokens": c.parse::<u64>().unwrap()})
                }
            };
            if headers.contains_key("x-test-hang") {
                // One chunk, then nothing more until the buyer leaves.
                let first = Bytes::from_static(
                    b"data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\n",
                );
                let body = axum::body::Body::from_stream(OneThenHang(Some(first)));
                return ([("content-type", "text/event-stream")], body).into_response();
            }
            if request["stream"] == true {
                let mut events = vec![
                    json!({"choices": [{"delta": {"content": "hel"}}]}),
                    json!({"choices": [{"delta": {"content": "lo"}}]}),
                ];
                if request["stream_options"]["include_usage"] == true && !usage.is_null() {
                    events.push(json!({"choices": [], "usage": usage}));
                }
                let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
                text.push_str("data: [DONE]\n\n");
                return ([("content-type", "text/event-stream")], text).into_response();
            }
            let mut body =
                json!({"choices": [{"message": {"role": "assistant", "content": "hello"}}]});
            if !usage.is_null() {
                body["usage"] = usage;
            }
            axum::Json(body).into_response()
        }
    };
    let broken =
        || async { (axum::http::StatusCode::BAD_GATEWAY, "model crashed").into_response() };
    spawn(
        Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/broken/v1/chat/completions", post(broken)),
    )
    .await
}

/// A stream of one chunk that then never ends.
struct OneThenHang(Option<Bytes>);

impl futures_core::Stream for OneThenHang {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.take() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(chunk))),
            None => std::task::Poll::Pending,
        }
    }
}

/// The metered option: upto, the ceiling as its amount, settled by the facilitator's key.
fn metered_option(settler: Address) -> PaymentOption {
    let mut base = option("USDC", &CEILING.to_string());
    base.requirements.scheme = "upto".into();
    let extra = base.requirements.extra.get_or_insert_default();
    extra.insert("assetTransferMethod".into(), "permit2".into());
    extra.insert(
        "facilitatorAddress".into(),
        settler.to_checksum(None).into(),
    );
    base.metering = Some(Metering {
        rates: rates(),
        decimals: 6,
        no_usage: NoUsage::Estimate,
    });
    base
}

struct Metered {
    fixture: Fixture,
    seen: Seen,
}

impl Metered {
    async fn start() -> Self {
        let fixture = Fixture::start().await;
        let seen = Seen::default();
        let model = model(seen.clone()).await;
        let settler = fixture.devnet.key(9);
        let settler = obol_x402::LocalSigner::from_private_key_hex(settler)
            .unwrap()
            .address();
        let offer = |name: &str, upstream: String| {
            Route::below_prefix(Offer::at_services(
                name,
                OfferKind::Inference,
                upstream.parse().unwrap(),
                vec![option("USDC", "600"), metered_option(settler)],
            ))
        };
        fixture.routes.store(RouteTable::new(vec![
            offer("metered", model.clone()),
            offer("broken", format!("{model}/broken")),
        ]));
        Self { fixture, seen }
    }

    fn url(&self, offer: &str) -> String {
        format!(
            "{}/services/{offer}/v1/chat/completions",
            self.fixture.gateway
        )
    }

    /// An unpaid call's challenge.
    async fn challenge(&self, offer: &str) -> v2::PaymentRequired {
        let unpaid = reqwest::Client::new()
            .post(self.url(offer))
            .json(&json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(unpaid.status(), 402);
        challenge_of(&unpaid)
    }

    /// A buyer that approved Permit2 on USDC.
    async fn buyer(&self, index: usize) -> obol_x402::LocalSigner {
        let buyer = self.fixture.buyer(index);
        let sender = Sender::new(&self.fixture.client, &buyer);
        let hash = sender.approve(USDC, PERMIT2, U256::MAX).await.unwrap();
        let (_, mined) = sender
            .wait_receipt(hash, std::time::Duration::from_secs(10))
            .await;
        assert_eq!(mined, Ok(Some(true)));
        buyer
    }

    async fn call(
        &self,
        offer: &str,
        payment: &str,
        usage: &str,
        body: Value,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(offer))
            .header(PAYMENT_SIGNATURE, payment)
            .header("x-test-usage", usage)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn balances(&self, buyer: &obol_x402::LocalSigner) -> (U256, U256) {
        (
            self.fixture.usdc(&buyer.address().to_string()).await,
            self.fixture.usdc(PAY_TO).await,
        )
    }

    /// The last request the model saw.
    fn last_request(&self) -> Value {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

fn receipt(response: &reqwest::Response) -> SettleResponse {
    header::decode(response.headers()[PAYMENT_RESPONSE].to_str().unwrap()).unwrap()
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

#[tokio::test]
async fn a_metered_call_is_charged_exactly_for_its_usage() {
    let m = Metered::start().await;
    let required = m.challenge("metered").await;
    let schemes: Vec<&str> = required.accepts.iter().map(|a| a.scheme.as_str()).collect();
    assert_eq!(schemes, ["exact", "upto"]);
    assert_eq!(required.accepts[1].amount(), U256::from(CEILING));
    let buyer = m.buyer(4).await;
    let before = m.balances(&buyer).await;

    // 12 prompt + 34 completion tokens: 1.8 + 20.4 = 22.2 → 23 atomic.
    let paid = m
        .call("metered", &sign(&buyer, &required, 1), "12,34", chat(false))
        .await;
    assert_eq!(paid.status(), 200);
    let settled = receipt(&paid);
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount.map(|a| a.get()), Some(U256::from(23)));
    let metering = &settled.extensions.as_ref().unwrap()["metering"];
    assert_eq!(
        metering,
        &json!({"measured": "usage", "amount": "23", "promptTokens": 12, "completionTokens": 34})
    );
    let after = m.balances(&buyer).await;
    assert_eq!(after.0, before.0 - U256::from(23));
    assert_eq!(after.1, before.1 + U256::from(23));
    let metrics = m.fixture.metrics().await;
    for (name, value) in [
        ("obol_x402_metered_prompt_tokens_total", " 12"),
        ("obol_x402_metered_completion_tokens_total", " 34"),
        ("obol_x402_metered_charged_atomic_total", " 23"),
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)
                && l.contains("offer_name=\"metered\"")
                && l.ends_with(value)),
            "{name}: {metrics}"
        );
    }
    // The request was fitted under the ceiling: a max_tokens the ceiling covers.
    let max_tokens = m.last_request()["max_tokens"].as_u64().unwrap();
    assert!((1..4096).contains(&max_tokens), "{max_tokens}");

    // Streamed: the usage of the final chunk, settled once the stream ended.
    let streamed = m
        .call(
            "metered",
            &sign(&buyer, &required, 1),
            "100,200",
            chat(true),
        )
        .await;
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(text.contains("\"lo\""), "{text}");
    assert_eq!(m.last_request()["stream_options"]["include_usage"], true);
    // 100 × 0.15 + 200 × 0.6 = 15 + 120 = 135 atomic.
    let charged = async || after.0 - m.balances(&buyer).await.0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while charged().await.is_zero() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(charged().await, U256::from(135));
    assert_eq!(m.balances(&buyer).await.1, after.1 + U256::from(135));
}

#[tokio::test]
async fn nothing_used_sends_nothing_and_no_usage_costs_the_estimate() {
    let m = Metered::start().await;
    let required = m.challenge("metered").await;
    let buyer = m.buyer(5).await;
    let before = m.balances(&buyer).await;
    let settles = m.fixture.probe.settled();

    let zero = m
        .call("metered", &sign(&buyer, &required, 1), "0,0", chat(false))
        .await;
    assert_eq!(zero.status(), 200);
    let settled = receipt(&zero);
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, "", "no transaction for nothing");
    assert_eq!(settled.amount.map(|a| a.get()), Some(U256::ZERO));
    assert_eq!(m.balances(&buyer).await, before);
    assert_eq!(m.fixture.probe.settled(), settles + 1);

    // No usage reported: the documented estimate, 1000 completion tokens = 600 atomic.
    let unmeasured = m
        .call("metered", &sign(&buyer, &required, 1), "none", chat(false))
        .await;
    let settled = receipt(&unmeasured);
    assert_eq!(settled.amount.map(|a| a.get()), Some(U256::from(600)));
    assert_eq!(
        settled.extensions.as_ref().unwrap()["metering"]["measured"],
        "estimate"
    );
    assert_eq!(m.balances(&buyer).await.0, before.0 - U256::from(600));
}

#[tokio::test]
async fn a_ceiling_too_low_is_refused_before_the_upstream_and_failures_cost_nothing() {
    let m = Metered::start().await;
    let required = m.challenge("metered").await;
    let buyer = m.buyer(6).await;
    let before = m.balances(&buyer).await;
    let calls = m.seen.lock().unwrap().len();

    let payment = sign(&buyer, &required, 1);
    let mut greedy = chat(false);
    greedy["max_tokens"] = 100_000.into();
    let refused = m.call("metered", &payment, "1,1", greedy).await;
    assert_eq!(refused.status(), 402);
    let failure = challenge_of(&refused).extensions.unwrap()["paymentFailure"].clone();
    assert_eq!(failure["reason"], "ceiling_too_low", "{failure}");
    assert!(
        failure["detail"]
            .as_str()
            .unwrap()
            .contains("max_tokens 100000 may cost more"),
        "{failure}"
    );
    assert_eq!(m.seen.lock().unwrap().len(), calls, "the model never ran");

    // The same payment, freed, pays a request that fits — once.
    let fits = m.call("metered", &payment, "1,1", chat(false)).await;
    assert_eq!(fits.status(), 200);
    assert_eq!(m.balances(&buyer).await.0, before.0 - U256::from(1));
    let replayed = m.call("metered", &payment, "1,1", chat(false)).await;
    assert_eq!(replayed.status(), 402);
    assert_eq!(
        challenge_of(&replayed).extensions.unwrap()["paymentFailure"]["reason"],
        "payment_already_used"
    );
    assert_eq!(m.balances(&buyer).await.0, before.0 - U256::from(1));

    // The model fails: nothing charged.
    let broken = m.challenge("broken").await;
    let failed = m
        .call("broken", &sign(&buyer, &broken, 1), "5,5", chat(false))
        .await;
    assert_eq!(failed.status(), 502);
    assert_eq!(m.balances(&buyer).await.0, before.0 - U256::from(1));
}

/// Waits (up to 10 s) until the buyer's balance fell below `from`; returns what it paid.
async fn paid_since(m: &Metered, buyer: &obol_x402::LocalSigner, from: U256) -> U256 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let paid = from - m.balances(buyer).await.0;
        if !paid.is_zero() || std::time::Instant::now() >= deadline {
            return paid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_metered_payment_sent_twice_at_once_serves_and_charges_once() {
    let m = Metered::start().await;
    let required = m.challenge("metered").await;
    let buyer = m.buyer(7).await;
    let before = m.balances(&buyer).await;
    let payment = sign(&buyer, &required, 1);
    let (a, b) = tokio::join!(
        m.call("metered", &payment, "12,34", chat(false)),
        m.call("metered", &payment, "12,34", chat(false)),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402], "one call served");
    let refused = if a.status() == 402 { a } else { b };
    let reason = challenge_of(&refused).extensions.unwrap()["paymentFailure"]["reason"].clone();
    assert!(
        reason == "payment_in_flight" || reason == "payment_already_used",
        "{reason}"
    );
    assert_eq!(paid_since(&m, &buyer, before.0).await, U256::from(23));
    assert_eq!(m.balances(&buyer).await.1, before.1 + U256::from(23));
}

#[tokio::test]
async fn a_buyer_leaving_a_metered_stream_after_content_is_still_charged() {
    let m = Metered::start().await;
    let required = m.challenge("metered").await;
    let buyer = m.buyer(8).await;
    let before = m.balances(&buyer).await;
    let payment = sign(&buyer, &required, 1);
    let mut streamed = reqwest::Client::new()
        .post(m.url("metered"))
        .header(PAYMENT_SIGNATURE, &payment)
        .header("x-test-hang", "1")
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let first = streamed.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("hel"));
    drop(streamed);

    // No usage read before the buyer left: the offer's noUsage rule, the 600-atomic estimate.
    assert_eq!(paid_since(&m, &buyer, before.0).await, U256::from(600));
    assert_eq!(m.balances(&buyer).await.1, before.1 + U256::from(600));
    let replayed = m.call("metered", &payment, "1,1", chat(false)).await;
    assert_eq!(replayed.status(), 402);
    assert_eq!(
        challenge_of(&replayed).extensions.unwrap()["paymentFailure"]["reason"],
        "payment_already_used"
    );
}
