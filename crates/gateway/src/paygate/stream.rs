//! The paid SSE body of an `exact` payment: charges for content as it goes out (see
//! [`SettleOnEnd`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use http_body::Frame;

/// A stream's settlement: given whether content went out, the trailers and whether it charged.
pub(super) type SettleFuture = Pin<Box<dyn Future<Output = (HeaderMap, bool)> + Send>>;
pub(super) type SettleFn = Box<dyn FnOnce(bool) -> SettleFuture + Send>;
type SettleTask = tokio::task::JoinHandle<(HeaderMap, bool)>;

pub(super) enum StreamState {
    Streaming {
        /// `None` once handed to a task.
        settle: Option<SettleFn>,
        bytes: u64,
        /// When to settle if no content went out before the authorization nears expiry.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        /// The settlement started when the first content went out; the stream runs on while
        /// it is in flight and is cut if it fails.
        in_flight: Option<SettleTask>,
        /// The receipts of a finished settlement, sent at the end.
        trailers: Option<HeaderMap>,
    },
    /// Settling before any content, as the authorization nears expiry (or at once, when the
    /// payer's balance cannot be read); the stream waits, and is cut if it fails.
    SettlingFirst(SettleTask),
    /// The upstream ended; waiting for the settlement to send its receipts as trailers.
    Settling(SettleTask),
    Done,
}

/// An SSE body that charges for content as it goes out: the settlement starts (as its own
/// task, so a client that leaves cannot cancel it) when the first content is sent, the stream
/// runs on meanwhile and is cut if the settlement fails, and the receipts follow as trailers.
/// A stream with no content yet settles first when its authorization nears expiry. Only a
/// stream that delivered nothing is free.
pub(super) struct SettleOnEnd {
    pub(super) inner: Body,
    pub(super) state: StreamState,
}

/// Why a stream was cut.
#[derive(Debug, thiserror::Error)]
#[error("the payment for this stream could not be settled; stream cut")]
pub(super) struct StreamCut;

/// A settlement's outcome, once finished: `Some(trailers)` when it charged, `None` to cut.
pub(super) fn finished(
    outcome: Result<(HeaderMap, bool), tokio::task::JoinError>,
) -> Option<HeaderMap> {
    match outcome {
        Ok((trailers, true)) => Some(trailers),
        Ok((_, false)) | Err(_) => None,
    }
}

impl http_body::Body for SettleOnEnd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                StreamState::Streaming {
                    settle,
                    bytes,
                    deadline,
                    in_flight,
                    trailers,
                } => {
                    if let Some(task) = in_flight
                        && let Poll::Ready(outcome) = Pin::new(task).poll(cx)
                    {
                        *in_flight = None;
                        match finished(outcome) {
                            Some(receipts) => *trailers = Some(receipts),
                            None => {
                                this.state = StreamState::Done;
                                return Poll::Ready(Some(Err(axum::Error::new(StreamCut))));
                            }
                        }
                    }
                    if settle.is_some()
                        && deadline
                            .as_mut()
                            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
                        && let Some(run) = settle.take()
                    {
                        this.state = StreamState::SettlingFirst(tokio::spawn(run(false)));
                        continue;
                    }
                    match Pin::new(&mut this.inner).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => {
                            // Upstream trailers are not forwarded: ours take their place.
                            let Some(data) = frame.data_ref() else {
                                continue;
                            };
                            *bytes += data.len() as u64;
                            if *bytes > 0
                                && let Some(run) = settle.take()
                            {
                                *in_flight = Some(tokio::spawn(run(true)));
                            }
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        Poll::Ready(Some(Err(error))) => {
                            // Content already delivered is being charged (in flight); nothing
                            // delivered is free.
                            this.state = StreamState::Done;
                            return Poll::Ready(Some(Err(error)));
                        }
                        Poll::Ready(None) => {
                            let receipts = trailers.take();
                            this.state = match in_flight.take() {
                                Some(task) => StreamState::Settling(task),
                                None => StreamState::Done,
                            };
                            if let Some(receipts) = receipts.filter(|t| !t.is_empty()) {
                                return Poll::Ready(Some(Ok(Frame::trailers(receipts))));
                            }
                        }
                    }
                }
                StreamState::SettlingFirst(task) => {
                    let Poll::Ready(outcome) = Pin::new(task).poll(cx) else {
                        return Poll::Pending;
                    };
                    let Some(receipts) = finished(outcome) else {
                        this.state = StreamState::Done;
                        return Poll::Ready(Some(Err(axum::Error::new(StreamCut))));
                    };
                    this.state = StreamState::Streaming {
                        settle: None,
                        bytes: 0,
                        deadline: None,
                        in_flight: None,
                        trailers: Some(receipts),
                    };
                }
                StreamState::Settling(task) => {
                    let Poll::Ready(outcome) = Pin::new(task).poll(cx) else {
                        return Poll::Pending;
                    };
                    this.state = StreamState::Done;
                    match finished(outcome) {
                        Some(receipts) if !receipts.is_empty() => {
                            return Poll::Ready(Some(Ok(Frame::trailers(receipts))));
                        }
                        Some(_) => {}
                        // The content went out, the payment did not: end in an error, not a
                        // clean end the client could take for a paid answer.
                        None => return Poll::Ready(Some(Err(axum::Error::new(StreamCut)))),
                    }
                }
                StreamState::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, StreamState::Done)
    }
}
