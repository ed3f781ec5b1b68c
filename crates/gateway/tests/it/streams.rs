//! SSE: settle once after the stream completes (leaving, expiry and exposure: `hostile`).

use std::time::Duration;

use axum::response::sse::{Event, Sse};
use futures_lite_stream::events;
use obol_x402::primitives::U256;

use crate::{Fixture, PAY_TO, paid_get, pay_for};

/// Five events, 100 ms apart.
pub(crate) async fn sse_upstream()
-> Sse<impl futures_core::Stream<Item = Result<Event, std::convert::Infallible>>> {
    Sse::new(events(
        5,
        Duration::from_millis(100),
        Duration::from_millis(100),
        "chunk",
    ))
}

/// Six events, 400 ms apart.
pub(crate) async fn slow_sse_upstream()
-> Sse<impl futures_core::Stream<Item = Result<Event, std::convert::Infallible>>> {
    Sse::new(events(
        6,
        Duration::from_millis(400),
        Duration::from_millis(400),
        "chunk",
    ))
}

/// Two events, the first after 2.5 s.
pub(crate) async fn late_sse_upstream()
-> Sse<impl futures_core::Stream<Item = Result<Event, std::convert::Infallible>>> {
    Sse::new(events(
        2,
        Duration::from_millis(2500),
        Duration::ZERO,
        "late",
    ))
}

mod futures_lite_stream {
    use std::time::Duration;

    use axum::response::sse::Event;

    /// `n` events `{label} {i}`, the first after `first`, then spaced by `gap`, without a
    /// stream-utility dependency.
    pub(crate) fn events(
        n: usize,
        first: Duration,
        gap: Duration,
        label: &'static str,
    ) -> impl futures_core::Stream<Item = Result<Event, std::convert::Infallible>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..n {
                tokio::time::sleep(if i == 0 { first } else { gap }).await;
                if tx
                    .send(Ok(Event::default().data(format!("{label} {i}"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        ReceiverStream(rx)
    }

    struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_core::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[tokio::test]
async fn a_complete_stream_settles_once() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/stream", &fixture.buyer(1)).await;
    let before = fixture.usdc(PAY_TO).await;
    let response = paid_get(&fixture.gateway, "/services/echo/stream", &payment).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["trailer"],
        "X-PAYMENT-RESPONSE, PAYMENT-RESPONSE"
    );
    let text = response.text().await.unwrap();
    assert_eq!(text.matches("data: chunk").count(), 5, "{text}");
    // Settlement runs after the last event; give the chain a moment.
    for _ in 0..100 {
        if fixture.usdc(PAY_TO).await != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
    assert_eq!(fixture.probe.settled(), 1);
}

/// A client that never asks for trailers (reqwest does not) reads a streamed answer's receipt
/// where the stream's headers point: `X-Payment-Receipt`, by the authorization's nonce.
#[tokio::test]
async fn a_streamed_receipt_is_readable_without_trailers() {
    let fixture = Fixture::start().await;
    let payment = pay_for(&fixture, "/services/echo/stream", &fixture.buyer(4)).await;
    let before = fixture.usdc(PAY_TO).await;
    let payload: obol_x402::wire::PaymentPayload = obol_x402::header::decode(&payment).unwrap();
    let nonce = match payload.evm_payload().unwrap() {
        obol_x402::wire::EvmPayload::Eip3009 { authorization, .. } => {
            authorization.nonce.to_string()
        }
        other => panic!("{other:?}"),
    };
    let unknown = reqwest::get(format!(
        "{}/.well-known/x402/receipts/{nonce}",
        fixture.gateway
    ))
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404, "not paid yet");

    let response = paid_get(&fixture.gateway, "/services/echo/stream", &payment).await;
    assert_eq!(response.status(), 200);
    let link = response.headers()["x-payment-receipt"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        link,
        format!("{}/.well-known/x402/receipts/{nonce}", fixture.gateway)
    );
    let text = response.text().await.unwrap();
    assert_eq!(text.matches("data: chunk").count(), 5);
    let mut receipt = serde_json::Value::Null;
    for _ in 0..100 {
        let answer = reqwest::get(&link).await.unwrap();
        if answer.status() == 200 {
            receipt = answer.json().await.unwrap();
            break;
        }
        assert_eq!(answer.status(), 202, "under way");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["network"], "eip155:84532");
    assert_eq!(
        receipt["payer"],
        fixture.buyer(4).address().to_checksum(None)
    );
    let tx = receipt["transaction"].as_str().unwrap();
    assert!(tx.len() == 66 && tx.starts_with("0x"), "{tx}");
    for _ in 0..100 {
        if fixture.usdc(PAY_TO).await != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
    let junk = reqwest::get(format!("{}/.well-known/x402/receipts/zz", fixture.gateway))
        .await
        .unwrap();
    assert_eq!(junk.status(), 404);
}
