//! The paid SSE body of a metered (`upto`) payment: the usage is read as the stream passes
//! (the upstream was asked for it in its final chunk) and the payment settles once, when the
//! stream ends, for what was used; the receipts follow as trailers.
//!
//! Unlike an `exact` stream (settled as its first content goes out), the amount is only known at
//! the end. A stream still running when its authorization nears expiry is settled then for the
//! ceiling (the most the buyer agreed to) and runs on; a stream that delivered nothing is free.
//! A buyer that leaves after content went out (the body is dropped before its end) is charged
//! what was read so far, or, with no usage read yet, as an answer reporting none (the offer's
//! `noUsage` rule): leaving early never makes an answer free.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt as _;
use obol_x402::metering::Usage;

use super::Metered;
use super::charge::Refused;
use super::stream::{SettleFuture, StreamCut, finished};
use crate::challenge::PaymentFailure;
use crate::error::GatewayError;
use crate::metering::UsageScanner;

/// How a metered stream ended, for its settlement.
pub(super) enum Ending {
    /// With this usage (none reported: the offer's `noUsage` rule).
    Used(Option<Usage>),
    /// The authorization nears expiry before the end: charge the ceiling.
    Expiring,
}

pub(super) type MeteredSettleFn = Box<dyn FnOnce(Ending) -> SettleFuture + Send>;
type SettleTask = tokio::task::JoinHandle<(HeaderMap, bool)>;

/// An SSE body that settles its metered payment at the end (see the module docs).
pub(super) struct MeteredStream {
    inner: Body,
    scanner: UsageScanner,
    bytes: u64,
    /// `None` once handed to a task (or dropped: nothing delivered, nothing charged).
    settle: Option<MeteredSettleFn>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// A settlement started (at the deadline while streaming, or at the end).
    task: Option<SettleTask>,
    /// The receipts of a finished settlement, sent at the end.
    trailers: Option<HeaderMap>,
    /// The upstream ended (cleanly or not).
    ended: bool,
    /// The upstream ended in an error after content: end in the same error once settled.
    error: Option<axum::Error>,
    done: bool,
}

impl MeteredStream {
    pub(super) fn new(inner: Body, settle: MeteredSettleFn, deadline: std::time::Duration) -> Self {
        Self {
            inner,
            scanner: UsageScanner::default(),
            bytes: 0,
            settle: Some(settle),
            deadline: Box::pin(tokio::time::sleep(deadline)),
            task: None,
            trailers: None,
            ended: false,
            error: None,
            done: false,
        }
    }

    fn start(&mut self, ending: Ending) {
        if let Some(run) = self.settle.take() {
            self.task = Some(tokio::spawn(run(ending)));
        }
    }
}

impl http_body::Body for MeteredStream {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(task) = &mut this.task
                && let Poll::Ready(outcome) = Pin::new(task).poll(cx)
            {
                this.task = None;
                match finished(outcome) {
                    Some(receipts) => this.trailers = Some(receipts),
                    None => {
                        // Content went out and the payment did not: never a clean end.
                        this.done = true;
                        return Poll::Ready(Some(Err(axum::Error::new(StreamCut))));
                    }
                }
            }
            if this.ended {
                if this.task.is_some() {
                    return Poll::Pending;
                }
                this.done = true;
                if let Some(error) = this.error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                return match this.trailers.take().filter(|t| !t.is_empty()) {
                    Some(receipts) => Poll::Ready(Some(Ok(Frame::trailers(receipts)))),
                    None => Poll::Ready(None),
                };
            }
            if this.settle.is_some() && this.deadline.as_mut().poll(cx).is_ready() {
                this.start(Ending::Expiring);
                continue;
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Upstream trailers are not forwarded: ours take their place.
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    this.bytes += data.len() as u64;
                    this.scanner.feed(data);
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(end) => {
                    this.ended = true;
                    if let Some(Err(error)) = end {
                        this.error = Some(error);
                    }
                    if this.bytes == 0 {
                        // Nothing delivered: free (dropping the settlement frees the claim).
                        this.settle = None;
                    } else {
                        let usage = this.scanner.usage();
                        this.start(Ending::Used(usage));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // Dropped before its end with content delivered: the buyer left (see the module docs).
        if self.bytes > 0
            && let Some(run) = self.settle.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run(Ending::Used(self.scanner.usage())));
        }
    }
}

/// The largest request body of a metered call (it is read whole to fit under the ceiling).
const MAX_METERED_REQUEST: usize = 8 << 20;

/// Fits a metered request under its payment's ceiling ([`Metering::fit`]), or why not.
pub(super) async fn fit_metered(
    request: Request<Body>,
    metered: Metered,
) -> Result<Request<Body>, Refused> {
    let (mut parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_METERED_REQUEST);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(Refused::Error(GatewayError::body_too_large(
                MAX_METERED_REQUEST,
            )));
        }
    };
    let body = match metered.metering.fit(&bytes, metered.ceiling) {
        Ok(Some(fitted)) => {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, fitted.len().into());
            Body::from(fitted)
        }
        Ok(None) => Body::from(bytes),
        Err(crate::metering::OverCeiling(detail)) => {
            return Err(Refused::Rechallenge {
                failure: PaymentFailure {
                    reason: "ceiling_too_low",
                    detail,
                    hint: Some("ask for fewer max_tokens, or pay with another option of the 402"),
                },
                status: StatusCode::PAYMENT_REQUIRED,
            });
        }
    };
    Ok(Request::from_parts(parts, body))
}
