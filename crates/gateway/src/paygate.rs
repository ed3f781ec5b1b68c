//! The paygate: a tower [`Layer`]/[`Service`] around the upstream proxy.
//!
//! Unpaid → 402. Paid → decode, match, claim the payment identity, verify, call the inner
//! service (the proxy; it finds the offer in the request extensions), and settle only when the
//! upstream answered below 400: before the status is committed for buffered responses, after
//! the last event for SSE streams (receipts in trailers). A client that goes away first is not
//! charged: dropping the response drops the pending settlement and frees the claim.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use http_body::Frame;
use http_body_util::BodyExt as _;
use obol_facilitator::{Facilitator, PaymentIdentity};
use obol_x402::header::{self as x402_header, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use obol_x402::wire::{SettleResponse, VerifyRequest};
use tower::{Layer, Service, ServiceExt as _};

use crate::challenge::{self, PaymentFailure};
use crate::error::GatewayError;
use crate::guard::{Refusal, ReplayGuard, Ticket};
use crate::matching;
use crate::metrics::{Counter, Labels};
use crate::proxy::is_event_stream;
use crate::route::{Lookup, Offer, Routes, SettleMode};

/// Identity headers only the gateway may set; stripped from every client request.
pub const IDENTITY_HEADERS: [&str; 2] = ["x-verified-wallet", "x-payment-payer"];

/// The verified payer, as told to the upstream.
pub const PAYER_HEADER: &str = "x-payment-payer";

/// Tunables of the paygate.
#[derive(Debug, Clone)]
pub struct PaygateConfig {
    /// The public base URL for `resource.url` (else derived from forwarded headers).
    pub public_url: Option<String>,
    /// Budget of a facilitator verify.
    pub verify_timeout: Duration,
    /// Budget of a facilitator settle.
    pub settle_timeout: Duration,
    /// The largest upstream response buffered before settling.
    pub max_buffered_response: usize,
    /// Whether browsers (`Accept: text/html`, `Mozilla` user agent) get a readable 402 page
    /// instead of the JSON body; the `PAYMENT-REQUIRED` header is sent either way.
    pub html_paywall: bool,
}

impl Default for PaygateConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            verify_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(60),
            max_buffered_response: 64 * 1024 * 1024,
            html_paywall: true,
        }
    }
}

struct Shared {
    routes: Arc<Routes>,
    facilitator: Arc<dyn Facilitator>,
    guard: Arc<ReplayGuard>,
    config: PaygateConfig,
}

/// Wraps an upstream service in the paygate.
#[derive(Clone)]
pub struct PaygateLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PaygateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaygateLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl PaygateLayer {
    /// A paygate over `routes`, verifying and settling through `facilitator`.
    pub fn new(
        routes: Arc<Routes>,
        facilitator: Arc<dyn Facilitator>,
        guard: Arc<ReplayGuard>,
        config: PaygateConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                routes,
                facilitator,
                guard,
                config,
            }),
        }
    }
}

impl PaygateLayer {
    /// Traefik ForwardAuth (`/verify`): decides on the forwarded request and **never settles**
    /// (the auth hop cannot see the upstream's status, so settling there would charge for
    /// failed calls). 200 lets Traefik forward, with `Authorization` (the upstream's) and
    /// `X-Payment-Payer`; 402/403 refuse.
    pub async fn forward_auth(&self, headers: HeaderMap) -> Response<Body> {
        self.shared.forward_auth(headers).await
    }
}

impl<S> Layer<S> for PaygateLayer {
    type Service = Paygate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Paygate {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The paygate service around an inner upstream service `S`.
#[derive(Clone)]
pub struct Paygate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Paygate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paygate").finish_non_exhaustive()
    }
}

impl<S> Service<Request<Body>> for Paygate<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let inner = self.inner.clone();
        Box::pin(async move { Ok(shared.handle(request, inner).await) })
    }
}

/// A paid request on its way: what settlement needs after the upstream answered.
struct Paid {
    verify: VerifyRequest,
    ticket: Ticket,
    expires_at: u64,
    labels: Labels,
}

impl Shared {
    async fn handle<S>(self: Arc<Self>, mut request: Request<Body>, inner: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        for name in IDENTITY_HEADERS {
            request.headers_mut().remove(name);
        }
        let offer = match self.routes.load().lookup(request.uri().path()) {
            Lookup::Offer(offer) => offer,
            Lookup::FailClosed => return GatewayError::fail_closed().into_response(),
            Lookup::NotFound => return GatewayError::not_found().into_response(),
        };
        let unpaid_labels = Labels::new(&offer, None);
        unpaid_labels.count(Counter::Requests);
        let resource_url = challenge::resource_url(
            self.config.public_url.as_deref(),
            request.headers(),
            request.uri(),
        );
        let presented = match matching::extract(request.headers()) {
            None => {
                unpaid_labels.count(Counter::PaymentRequired);
                let required = challenge::payment_required(&offer, resource_url, None);
                if self.config.html_paywall && challenge::is_browser(request.headers()) {
                    return challenge::html_response(&offer, &required);
                }
                return challenge::response(&required);
            }
            Some(Err(error)) => {
                unpaid_labels.failure("invalid_payment_header");
                return error.into_response();
            }
            Some(Ok(presented)) => presented,
        };
        let paid = match self.admit(&offer, &presented, &resource_url).await {
            Ok(paid) => paid,
            Err(response) => return *response,
        };
        if let Ok(payer) = HeaderValue::from_str(&paid.payer()) {
            request.headers_mut().insert(PAYER_HEADER, payer);
        }
        request.extensions_mut().insert(offer.clone());
        if offer.settle == SettleMode::SettleFirst {
            return self
                .settle_then_serve(request, inner, paid, &offer, resource_url)
                .await;
        }
        let upstream = match inner.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if upstream.status().as_u16() >= 400 {
            paid.labels.count(Counter::UpstreamFailedAfterVerify);
            // Not charged: dropping `paid` frees the claim so the buyer can retry with it.
            return upstream;
        }
        paid.labels.count(Counter::PaymentVerified);
        if is_event_stream(upstream.headers()) {
            self.stream_then_settle(upstream, paid)
        } else {
            self.settle_then_respond(upstream, paid, &offer, resource_url)
                .await
        }
    }

    /// Match, claim, verify. `Err` is the finished answer.
    async fn admit(
        &self,
        offer: &Arc<Offer>,
        presented: &matching::Presented,
        resource_url: &str,
    ) -> Result<Paid, Box<Response<Body>>> {
        let rechallenge = |failure: &PaymentFailure, labels: &Labels| {
            labels.failure(failure.reason);
            let required =
                challenge::payment_required(offer, resource_url.to_owned(), Some(failure));
            Box::new(challenge::response(&required))
        };
        let (option, verify) = match matching::match_payment(offer, presented, resource_url) {
            Ok(found) => found,
            Err(failure) => return Err(rechallenge(&failure, &Labels::new(offer, None))),
        };
        let index = offer.options.iter().position(|o| std::ptr::eq(o, option));
        let labels = Labels::new(offer, index);
        let (identity, expires_at) = match identity(&verify, option) {
            Ok(found) => found,
            Err(failure) => return Err(rechallenge(&failure, &labels)),
        };
        let ticket = match self.guard.claim(identity) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                let failure = match refusal {
                    Refusal::InFlight => PaymentFailure {
                        reason: "payment_in_flight",
                        detail: "this payment is already being used by another request".into(),
                        hint: Some("sign a new authorization for each request"),
                    },
                    Refusal::Settled(tx) => PaymentFailure {
                        reason: "payment_already_used",
                        detail: format!("this payment was already settled (transaction {tx})"),
                        hint: Some("sign a new authorization for each request"),
                    },
                };
                return Err(rechallenge(&failure, &labels));
            }
        };
        let verdict =
            tokio::time::timeout(self.config.verify_timeout, self.facilitator.verify(&verify))
                .await;
        match verdict {
            Err(_) => {
                labels.failure("facilitator_unreachable");
                Err(Box::new(
                    GatewayError::facilitator_unreachable(format!(
                        "no verify answer within {:?}",
                        self.config.verify_timeout
                    ))
                    .into_response(),
                ))
            }
            Ok(Err(error)) => {
                let reason = if error.retriable() {
                    "facilitator_unreachable"
                } else {
                    "facilitator_error"
                };
                labels.failure(reason);
                tracing::warn!(offer = %offer.name, reason, "facilitator verify failed");
                let response = if error.retriable() {
                    GatewayError::facilitator_unreachable(error.to_string())
                } else {
                    GatewayError::facilitator_error(error.to_string(), false)
                };
                Err(Box::new(response.into_response()))
            }
            Ok(Ok(verdict)) if !verdict.is_valid => {
                let reason = verdict.invalid_reason.unwrap_or_else(|| "unknown".into());
                let failure = PaymentFailure {
                    reason: "payment_invalid",
                    detail: match verdict.invalid_message {
                        Some(message) => format!("{reason}: {message}"),
                        None => reason.clone(),
                    },
                    hint: Some(
                        "sign the EIP-712 domain advertised in accepts[].extra (name, version)",
                    ),
                };
                let mut response = rechallenge(&failure, &labels);
                if reason == obol_facilitator::Reason::Permit2AllowanceRequired.as_str() {
                    *response.status_mut() = StatusCode::PRECONDITION_FAILED;
                }
                Err(response)
            }
            Ok(Ok(_)) => Ok(Paid {
                verify,
                ticket,
                expires_at,
                labels,
            }),
        }
    }

    /// Settles a verified payment. `Ok` is a confirmed receipt (recorded, counted as charged);
    /// `Err` is the finished answer: 503 `settlement_failed` (retriable only when a transaction
    /// is pending) or 402 `settlement_rejected`, with the receipt when there is one.
    async fn settle(
        &self,
        paid: Paid,
        offer: &Offer,
        resource_url: String,
    ) -> Result<(SettleResponse, Labels), Box<Response<Body>>> {
        let settled = tokio::time::timeout(
            self.config.settle_timeout,
            self.facilitator.settle(&paid.verify),
        )
        .await;
        let receipt = match settled {
            Err(_) => {
                paid.labels.failure("settlement_failed");
                let detail = format!("no settle answer within {:?}", self.config.settle_timeout);
                return Err(Box::new(
                    GatewayError::settlement_failed(detail, false).into_response(),
                ));
            }
            Ok(Err(error)) => {
                paid.labels.failure("settlement_failed");
                return Err(Box::new(
                    GatewayError::settlement_failed(error.to_string(), false).into_response(),
                ));
            }
            Ok(Ok(receipt)) => receipt,
        };
        if receipt.success {
            paid.labels.charged();
            record(paid.ticket, &receipt, paid.expires_at);
            return Ok((receipt, paid.labels));
        }
        let mut response = if receipt.error_reason.as_deref() == Some("settlement_pending") {
            paid.labels.failure("settlement_failed");
            let detail = format!(
                "transaction {} was broadcast but not yet confirmed; it may still settle",
                receipt.transaction
            );
            record(paid.ticket, &receipt, paid.expires_at);
            GatewayError::settlement_failed(detail, true).into_response()
        } else {
            paid.labels.failure("settlement_rejected");
            let failure = PaymentFailure {
                reason: "settlement_rejected",
                detail: receipt
                    .error_reason
                    .clone()
                    .unwrap_or_else(|| "the facilitator refused to settle".into()),
                hint: None,
            };
            challenge::response(&challenge::payment_required(
                offer,
                resource_url,
                Some(&failure),
            ))
        };
        add_receipt(response.headers_mut(), &receipt);
        Err(Box::new(response))
    }

    /// Serve-first, buffered: read the whole upstream answer, settle, then release it.
    async fn settle_then_respond(
        &self,
        upstream: Response<Body>,
        paid: Paid,
        offer: &Offer,
        resource_url: String,
    ) -> Response<Body> {
        let (mut parts, body) = upstream.into_parts();
        let limited = http_body_util::Limited::new(body, self.config.max_buffered_response);
        let bytes = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return GatewayError::upstream_unavailable(format!(
                    "the upstream response could not be read: {e}"
                ))
                .into_response();
            }
        };
        match self.settle(paid, offer, resource_url).await {
            Ok((receipt, _)) => {
                add_receipt(&mut parts.headers, &receipt);
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(response) => *response,
        }
    }

    /// Settle-first: charge, then call the upstream and relay whatever it answers, receipts
    /// attached. An upstream failure after the charge is a refund owed: logged and counted.
    async fn settle_then_serve<S>(
        &self,
        request: Request<Body>,
        inner: S,
        paid: Paid,
        offer: &Offer,
        resource_url: String,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let payer = paid.payer();
        let (receipt, labels) = match self.settle(paid, offer, resource_url).await {
            Ok(settled) => settled,
            Err(response) => return *response,
        };
        let mut upstream = match inner.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = upstream.status();
        if status.as_u16() >= 400 {
            labels.count(Counter::RefundOwed);
            tracing::warn!(
                offer = %offer.name,
                payer = %payer,
                transaction = %receipt.transaction.escape_debug(),
                status = status.as_u16(),
                "upstream failed after a settle-first charge: refund owed"
            );
        } else {
            labels.count(Counter::PaymentVerified);
        }
        add_receipt(upstream.headers_mut(), &receipt);
        upstream
    }

    fn stream_then_settle(self: Arc<Self>, upstream: Response<Body>, paid: Paid) -> Response<Body> {
        let (mut parts, body) = upstream.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::TRAILER,
            HeaderValue::from_static("X-PAYMENT-RESPONSE, PAYMENT-RESPONSE"),
        );
        let settle = Box::new(move || -> SettleFuture {
            Box::pin(async move {
                let outcome = tokio::time::timeout(
                    self.config.settle_timeout,
                    self.facilitator.settle(&paid.verify),
                )
                .await;
                let mut trailers = HeaderMap::new();
                match outcome {
                    Ok(Ok(receipt)) => {
                        if receipt.success {
                            paid.labels.charged();
                        } else {
                            paid.labels.failure("settlement_rejected");
                        }
                        if receipt.success || !receipt.transaction.is_empty() {
                            record(paid.ticket, &receipt, paid.expires_at);
                        }
                        add_receipt(&mut trailers, &receipt);
                    }
                    Ok(Err(_)) | Err(_) => paid.labels.failure("settlement_failed"),
                }
                trailers
            })
        });
        let body = SettleOnEnd {
            inner: body,
            state: StreamState::Streaming {
                settle: Some(settle),
                bytes: 0,
            },
        };
        Response::from_parts(parts, Body::new(body))
    }
}

impl Shared {
    async fn forward_auth(&self, mut headers: HeaderMap) -> Response<Body> {
        for name in IDENTITY_HEADERS {
            headers.remove(name);
        }
        let forbidden = |message: &'static str| {
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain")],
                message,
            )
                .into_response()
        };
        let Some(uri) = headers
            .get("x-forwarded-uri")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<axum::http::Uri>().ok())
        else {
            return forbidden("forbidden: missing forwarded URI");
        };
        let offer = match self.routes.load().lookup(uri.path()) {
            Lookup::Offer(offer) => offer,
            Lookup::FailClosed => {
                return forbidden(
                    "no rule matches; route appears to be a paid prefix with stale or missing rule",
                );
            }
            Lookup::NotFound => return StatusCode::OK.into_response(),
        };
        let labels = Labels::new(&offer, None);
        labels.count(Counter::Requests);
        let resource_url =
            challenge::resource_url(self.config.public_url.as_deref(), &headers, &uri);
        let presented = match matching::extract(&headers) {
            None => {
                labels.count(Counter::PaymentRequired);
                let required = challenge::payment_required(&offer, resource_url, None);
                return challenge::response(&required);
            }
            Some(Err(error)) => {
                labels.failure("invalid_payment_header");
                return error.into_response();
            }
            Some(Ok(presented)) => presented,
        };
        let paid = match self.admit(&offer, &presented, &resource_url).await {
            Ok(paid) => paid,
            Err(response) => return *response,
        };
        paid.labels.count(Counter::PaymentVerified);
        let mut response = StatusCode::OK.into_response();
        let out = response.headers_mut();
        if let Some(auth) = offer
            .upstream_auth
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            out.insert(header::AUTHORIZATION, auth);
        }
        if let Ok(payer) = HeaderValue::from_str(&paid.payer()) {
            out.insert(PAYER_HEADER, payer);
        }
        out.insert("x-verified-wallet", HeaderValue::from_static(""));
        response
    }
}

impl Paid {
    fn payer(&self) -> String {
        self.ticket.id().payer.to_checksum(None)
    }
}

/// The payment identity and its expiry, from the verify request and the matched option.
fn identity(
    verify: &VerifyRequest,
    option: &crate::route::PaymentOption,
) -> Result<(PaymentIdentity, u64), PaymentFailure> {
    let invalid = |detail: String| PaymentFailure {
        reason: "payment_invalid",
        detail,
        hint: None,
    };
    let exact = verify.exact_evm().map_err(|e| invalid(e.to_string()))?;
    let chain_id = option
        .requirements
        .chain_id()
        .map_err(|e| invalid(e.to_string()))?;
    let asset = option
        .requirements
        .asset_address()
        .map_err(|e| invalid(e.to_string()))?;
    let expires = u64::try_from(exact.expires_at()).unwrap_or(u64::MAX);
    Ok((
        PaymentIdentity {
            chain_id,
            asset,
            payer: exact.payer(),
            nonce: exact.nonce(),
        },
        expires,
    ))
}

/// Records a settlement durably; a store failure is logged (the chain's nonce still prevents a
/// second charge).
fn record(ticket: Ticket, receipt: &SettleResponse, expires_at: u64) {
    if let Err(error) = ticket.settled(&receipt.transaction, expires_at) {
        tracing::error!(%error, "could not record a settled payment");
    }
}

/// `X-PAYMENT-RESPONSE` and `PAYMENT-RESPONSE` carrying the settle response.
fn add_receipt(headers: &mut HeaderMap, receipt: &SettleResponse) {
    if let Ok(encoded) = x402_header::encode(receipt)
        && let Ok(value) = HeaderValue::from_str(&encoded)
    {
        headers.insert(X_PAYMENT_RESPONSE, value.clone());
        headers.insert(PAYMENT_RESPONSE, value);
    }
}

type SettleFuture = Pin<Box<dyn Future<Output = HeaderMap> + Send>>;

enum StreamState {
    Streaming {
        settle: Option<Box<dyn FnOnce() -> SettleFuture + Send>>,
        bytes: u64,
    },
    /// The settlement runs as its own task: a client that leaves after the last event cannot
    /// cancel the charge for a stream it received.
    Settling(tokio::task::JoinHandle<HeaderMap>),
    Done,
}

/// An SSE body that settles once the upstream stream ended cleanly with data, and sends the
/// receipts as trailers. Dropped before the upstream ended (client gone mid-stream) → no
/// settlement; once it ended, the settlement completes even if the client leaves.
struct SettleOnEnd {
    inner: Body,
    state: StreamState,
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
                StreamState::Streaming { settle, bytes } => {
                    match Pin::new(&mut this.inner).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Some(data) = frame.data_ref() {
                                *bytes += data.len() as u64;
                            }
                            // Upstream trailers are not forwarded: ours take their place.
                            if frame.is_data() {
                                return Poll::Ready(Some(Ok(frame)));
                            }
                        }
                        Poll::Ready(Some(Err(error))) => {
                            // A broken stream is not charged.
                            this.state = StreamState::Done;
                            return Poll::Ready(Some(Err(error)));
                        }
                        Poll::Ready(None) => {
                            let run = settle.take().filter(|_| *bytes > 0);
                            this.state = match run {
                                Some(run) => StreamState::Settling(tokio::spawn(run())),
                                None => StreamState::Done,
                            };
                        }
                    }
                }
                StreamState::Settling(task) => {
                    let trailers = match Pin::new(task).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(trailers)) => trailers,
                        Poll::Ready(Err(_)) => HeaderMap::new(),
                    };
                    this.state = StreamState::Done;
                    if !trailers.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
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
