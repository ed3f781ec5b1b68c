//! What a metered stream relayed by the proxy was charged: the seller's receipt link, read
//! once the stream is done with, and recorded for the authorization that paid it.

use crate::pool::Spent;

/// How long after a metered stream ended its receipt is looked for.
const STREAMED_RECEIPT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads what a metered stream was charged from the seller's receipt `link` (asked again while
/// the seller answers 202, its settlement under way) and records it for `spent`. Without an
/// answer the authorization counts at its ceiling, as before.
pub(super) async fn streamed_charge(
    http: reqwest::Client,
    link: reqwest::Url,
    spent: Spent,
    pool: String,
) {
    let deadline = tokio::time::Instant::now() + STREAMED_RECEIPT_WAIT;
    let mut pause = std::time::Duration::from_millis(100);
    let amount = loop {
        let answer = http.get(link.clone()).send().await;
        match answer {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                let receipt: Option<serde_json::Value> = r.json().await.ok();
                break receipt
                    .as_ref()
                    .and_then(|r| r["amount"].as_str())
                    .and_then(|a| a.parse::<obol_x402::primitives::U256>().ok());
            }
            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {}
            _ => break None,
        }
        if tokio::time::Instant::now() + pause > deadline {
            break None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    };
    let Some(amount) = amount else {
        tracing::info!(%pool, "no charge read for a metered stream; it counts at its ceiling");
        return;
    };
    match tokio::task::spawn_blocking(move || spent.charged(amount)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%pool, %error, "could not record a metered stream's charge")
        }
        Err(error) => tracing::warn!(%pool, %error, "could not record a metered stream's charge"),
    }
}
