//! The paygate's paid streams: their headers, and their settlement (at the first content for
//! `exact`, [`super::stream::SettleOnEnd`]; at the end for metered payments,
//! [`super::metered::MeteredStream`]), the receipts sent as trailers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, header};
use obol_config::time::unix_now;

use super::metered;
use super::stream::{SettleFn, SettleFuture, SettleOnEnd, StreamState};
use super::{Paid, RECEIPT_LINK_HEADER, RECEIPTS_PATH, Shared, add_receipt, note_charge};
use crate::metering::Charge;

impl Shared {
    /// The headers of a paid stream (no length, the receipt's lookup link, the trailers
    /// announced) and how long it may run before its settlement must start.
    fn stream_parts(&self, headers: &mut HeaderMap, paid: &Paid, resource_url: &str) -> Duration {
        headers.remove(header::CONTENT_LENGTH);
        // For clients that do not ask for trailers (`TE: trailers`), nor relay them: where the
        // receipt can be read once the stream ended.
        if let Ok(url) = url::Url::parse(resource_url) {
            let at = format!(
                "{}{RECEIPTS_PATH}/{}",
                url.origin().ascii_serialization(),
                paid.ticket.id().nonce
            );
            if let Ok(value) = HeaderValue::from_str(&at) {
                headers.insert(RECEIPT_LINK_HEADER, value);
            }
        }
        headers.insert(
            header::TRAILER,
            HeaderValue::from_static("X-PAYMENT-RESPONSE, PAYMENT-RESPONSE"),
        );
        if paid.settle_before_stream && paid.metered.is_none() {
            return Duration::ZERO;
        }
        let settle_at = paid
            .expires_at
            .saturating_sub(self.config.stream_settle_margin.as_secs());
        Duration::from_secs(settle_at.saturating_sub(unix_now()))
    }

    /// Settles a streamed payment: its receipts as trailers, and whether it charged.
    async fn settle_trailers(
        &self,
        paid: Paid,
        delivered: bool,
        charge: Option<Charge>,
    ) -> (HeaderMap, bool) {
        let settled = self.settle(paid, delivered).await;
        let mut trailers = HeaderMap::new();
        let receipt = match settled {
            Ok((mut receipt, labels)) => {
                note_charge(&self.guard, &mut receipt, &labels, charge.as_ref()).await;
                add_receipt(&mut trailers, &receipt);
                return (trailers, true);
            }
            Err(refused) => refused.receipt().cloned(),
        };
        if let Some(receipt) = receipt {
            add_receipt(&mut trailers, &receipt);
        }
        (trailers, false)
    }

    pub(super) fn stream_then_settle(
        self: Arc<Self>,
        upstream: Response<Body>,
        paid: Paid,
        resource_url: &str,
    ) -> Response<Body> {
        let (mut parts, body) = upstream.into_parts();
        let deadline = self.stream_parts(&mut parts.headers, &paid, resource_url);
        let settle: SettleFn = Box::new(move |delivered| -> SettleFuture {
            Box::pin(async move { self.settle_trailers(paid, delivered, None).await })
        });
        let body = SettleOnEnd {
            inner: body,
            state: StreamState::Streaming {
                settle: Some(settle),
                bytes: 0,
                deadline: Some(Box::pin(tokio::time::sleep(deadline))),
                in_flight: None,
                trailers: None,
            },
        };
        Response::from_parts(parts, Body::new(body))
    }

    /// A metered stream: settled once it ended, for the usage it reported
    /// ([`metered::MeteredStream`]).
    pub(super) fn stream_metered(
        self: Arc<Self>,
        upstream: Response<Body>,
        paid: Paid,
        resource_url: &str,
    ) -> Response<Body> {
        let (mut parts, body) = upstream.into_parts();
        let deadline = self.stream_parts(&mut parts.headers, &paid, resource_url);
        let settle: metered::MeteredSettleFn = Box::new(move |ending| -> SettleFuture {
            Box::pin(async move {
                let mut paid = paid;
                let charge = match ending {
                    metered::Ending::Used(usage) => paid.charge_for(usage, false),
                    metered::Ending::Expiring => paid.charge_for(None, true),
                };
                self.settle_trailers(paid, true, charge).await
            })
        });
        let body = metered::MeteredStream::new(body, settle, deadline);
        Response::from_parts(parts, Body::new(body))
    }
}
