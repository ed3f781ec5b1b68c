//! Paid metered (`upto`) calls against paid `exact` calls through the paygate, in the same run.
//!
//! `cargo bench -p obol-gateway --bench metered` (`BENCH_GUARD_MEMORY=1` keeps the double-serve
//! store in memory, as in the `gateway` bench).
//!
//! One inference offer carries both options: `exact` (0.001 USDC, EIP-3009) and metered `upto`
//! (Permit2, a ceiling of 4096 tokens at 0.6 USDC/MTok). Its upstream answers a small chat
//! completion with `usage`, or, for `stream: true`, an SSE stream whose last chunk carries the
//! usage when `stream_options.include_usage` asks for it. Every call POSTs the same small chat
//! body; the facilitator is stubbed (approves at once, no chain), payments are signed before
//! timing. The paid measures run in interleaved rounds so that drift (machine load, the guard's
//! file growing) falls on all of them alike. The plain proxy POSTing the same body is the
//! baseline for the paygate's own cost.
//!
//! `BENCH_NODELAY=1` serves with `TCP_NODELAY` (see `common::spawn`): without it the streamed
//! measures wait on Nagle's algorithm and delayed ACKs, not on the paygate.
//!
//! Load generator, gateway and upstream share the process and the machine's 2 cores.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{
    CONCURRENCY, Run, combined, exact_option, load, paygate, plain_proxy, presign, spawn,
};
use obol_gateway::metering::Metering;
use obol_gateway::paygate::RECEIPT_LINK_HEADER;
use obol_gateway::{Offer, OfferKind, PaymentOption, Route};
use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::metering::{NoUsage, TokenRates};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::primitives::U256;
use serde_json::{Value, json};

/// Paid requests per measure and round.
const PER_ROUND: usize = 2_500;
const ROUNDS: usize = 2;
/// Paid requests per measure before timing (connections, guard, allocator).
const WARM_UP: usize = 300;
/// 4096 tokens at 0.6 USDC/MTok = 2457.6 → 2458 atomic.
const CEILING: u64 = 2458;
const PATH: &str = "/services/chat/v1/chat/completions";

/// The chat completion's usage: 12 prompt and 20 completion tokens (14 atomic units metered).
fn usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 20})
}

/// A chat-completions upstream: JSON with usage, or SSE (usage in a final chunk when asked).
async fn model(axum::Json(request): axum::Json<Value>) -> Response {
    if request["stream"] == true {
        let mut events = vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        ];
        if request["stream_options"]["include_usage"] == true {
            events.push(json!({"choices": [], "usage": usage()}));
        }
        let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        text.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], text).into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello"}}],
        "usage": usage(),
    }))
    .into_response()
}

/// The metered option: `upto` over Permit2, the ceiling as its amount, per-token rates.
fn metered_option() -> PaymentOption {
    let mut option = exact_option();
    let requirements = &mut option.requirements;
    requirements.scheme = "upto".into();
    requirements.amount = U256::from(CEILING).into();
    let extra = requirements.extra.get_or_insert_default();
    extra.insert("assetTransferMethod".into(), "permit2".into());
    extra.insert(
        "facilitatorAddress".into(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
    );
    option.price = Price {
        unit: PriceUnit::PerMTok,
        amount: "0.6".parse().unwrap(),
    };
    option.metering = Some(Metering {
        rates: TokenRates {
            input: "0.15".parse().unwrap(),
            output: "0.6".parse().unwrap(),
        },
        decimals: 6,
        no_usage: NoUsage::Estimate,
    });
    option
}

/// The paid measures, in the order each round runs them.
#[derive(Clone, Copy)]
enum Measure {
    ExactJson,
    UptoJson,
    ExactSse,
    UptoSse,
}

const MEASURES: [Measure; 4] = [
    Measure::ExactJson,
    Measure::UptoJson,
    Measure::ExactSse,
    Measure::UptoSse,
];

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Self::ExactJson => "paid exact, JSON answer",
            Self::UptoJson => "paid upto (metered), JSON answer",
            Self::ExactSse => "paid exact, SSE answer (stream: true)",
            Self::UptoSse => "paid upto (metered), SSE answer + usage chunk",
        }
    }

    fn metered(self) -> bool {
        matches!(self, Self::UptoJson | Self::UptoSse)
    }

    fn body(self) -> Bytes {
        let mut body = json!({"model": "m", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."}
        ]});
        if matches!(self, Self::ExactSse | Self::UptoSse) {
            body["stream"] = true.into();
        }
        Bytes::from(body.to_string())
    }
}

/// One paid call, outside the timing: the metered amount its receipt says was charged (the
/// `PAYMENT-RESPONSE` header's `extensions.metering`, or for a stream the receipt lookup its
/// link header names), none for `exact`.
async fn charged(url: &str, payment: &str, body: Bytes) -> Option<String> {
    let client = reqwest::Client::new();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(PAYMENT_SIGNATURE, payment)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    response.bytes().await.unwrap();
    let amount = match headers.get(PAYMENT_RESPONSE) {
        Some(value) => {
            let receipt = header::decode_to_json(value.to_str().unwrap()).unwrap();
            let receipt: Value = serde_json::from_str(&receipt).unwrap();
            receipt.pointer("/extensions/metering/amount").cloned()
        }
        None => {
            let link = headers.get(RECEIPT_LINK_HEADER).unwrap().to_str().unwrap();
            let receipt: Value = client.get(link).send().await.unwrap().json().await.unwrap();
            receipt.get("amount").cloned()
        }
    };
    amount.and_then(|a| a.as_str().map(str::to_owned))
}

#[tokio::main]
async fn main() {
    let upstream = spawn(Router::new().route("/v1/chat/completions", post(model))).await;
    let offer = Arc::new(Offer::at_services(
        "chat",
        OfferKind::Inference,
        upstream.parse().unwrap(),
        vec![exact_option(), metered_option()],
    ));
    let dir = std::env::temp_dir().join(format!("obol-metered-bench-{}", std::process::id()));
    let gateway = paygate(
        vec![Route::paid("services/chat/*", offer.clone())],
        &dir.join("guard.sqlite"),
    )
    .await;
    let plain = plain_proxy(offer.clone()).await;
    let (gateway_url, plain_url) = (format!("{gateway}{PATH}"), format!("{plain}{PATH}"));

    // Signing is the buyer's cost: every payment is signed before timing.
    let per_measure = 1 + WARM_UP + ROUNDS * PER_ROUND;
    let mut exact = presign(&offer.options[0].requirements, 2 * per_measure);
    let mut upto = presign(&offer.options[1].requirements, 2 * per_measure);
    let mut take = |measure: Measure, n: usize| {
        let pool = if measure.metered() {
            &mut upto
        } else {
            &mut exact
        };
        Arc::new(pool.split_off(pool.len() - n))
    };

    // What each paid measure is charged: the metered ones their usage, not the ceiling.
    let mut header_bytes = [0; 2];
    for measure in MEASURES {
        let payment = take(measure, 1)[0].clone().unwrap();
        header_bytes[usize::from(measure.metered())] = payment.len();
        let amount = charged(&gateway_url, &payment, measure.body()).await;
        let expected = measure.metered().then(|| "14".to_owned());
        assert_eq!(amount, expected, "{}", measure.label());
    }
    println!(
        "checked: each metered call settles 14 atomic units (its usage), not the {CEILING} ceiling; \
         PAYMENT-SIGNATURE: exact {} bytes, upto {} bytes",
        header_bytes[0], header_bytes[1]
    );

    // Warm up, then the baseline, then the paid measures in interleaved rounds.
    let json_body = Some(MEASURES[0].body());
    let unpaid = Arc::new(vec![None; WARM_UP]);
    load(
        gateway_url.clone(),
        unpaid.clone(),
        json_body.clone(),
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    load(plain_url.clone(), unpaid, json_body.clone(), StatusCode::OK).await;
    for measure in MEASURES {
        let payments = take(measure, WARM_UP);
        let body = Some(measure.body());
        load(gateway_url.clone(), payments, body, StatusCode::OK).await;
    }
    let proxied = load(
        plain_url,
        Arc::new(vec![None; ROUNDS * PER_ROUND]),
        json_body,
        StatusCode::OK,
    )
    .await;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); MEASURES.len()];
    for _ in 0..ROUNDS {
        for (i, measure) in MEASURES.into_iter().enumerate() {
            let payments = take(measure, PER_ROUND);
            let body = Some(measure.body());
            runs[i].push(load(gateway_url.clone(), payments, body, StatusCode::OK).await);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let runs: Vec<Run> = runs.iter().map(|r| combined(r)).collect();

    println!(
        "metered bench, {CONCURRENCY} in flight, load generator and servers in one process, 2 cores; \
         {ROUNDS} interleaved rounds of {PER_ROUND} per paid measure"
    );
    println!(
        "{:48} {:>9} {:>13} {:>18}",
        "measure", "req/s", "CPU µs/req", "upto/exact"
    );
    println!(
        "{:48} {:>9.0} {:>13.0} {:>18}",
        "plain proxy, POST chat JSON (baseline)", proxied.per_second, proxied.cpu_us, ""
    );
    for (i, measure) in MEASURES.into_iter().enumerate() {
        let run = runs[i];
        let ratio = if measure.metered() {
            let exact = runs[i - 1];
            format!(
                "{:.3} rate, {:.3} CPU",
                run.per_second / exact.per_second,
                run.cpu_us / exact.cpu_us
            )
        } else {
            String::new()
        };
        println!(
            "{:48} {:>9.0} {:>13.0} {:>18}",
            measure.label(),
            run.per_second,
            run.cpu_us,
            ratio
        );
    }
    println!(
        "paygate CPU per paid JSON call beyond the plain proxy: exact {:.0} µs, upto {:.0} µs \
         (metering adds {:.0} µs); SSE: upto adds {:.0} µs to exact",
        runs[0].cpu_us - proxied.cpu_us,
        runs[1].cpu_us - proxied.cpu_us,
        runs[1].cpu_us - runs[0].cpu_us,
        runs[3].cpu_us - runs[2].cpu_us,
    );
}
