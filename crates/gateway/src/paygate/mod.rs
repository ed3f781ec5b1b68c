//! The paygate: a tower [`Layer`]/[`Service`] around the upstream proxy.
//!
//! Unpaid → 402. Paid → decode, match, claim the payment (and reserve its amount against the
//! payer's balance), check its validity window, verify, call the inner service (the proxy; it
//! finds the offer in the request extensions), and settle only when the upstream answered
//! below 400: before the status is committed for buffered responses; for SSE streams as the
//! first content goes out (the stream runs on, and is cut if the settlement fails), or before
//! any content when the authorization nears expiry (receipts in trailers). Only a stream that
//! delivered nothing is free. A settlement that is pending or whose outcome is unknown keeps
//! the payment taken: the same payment sent again is settled (idempotently) and served.
//! Money invariants: docs/design/gateway.md.

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use http_body_util::BodyExt as _;
use obol_config::time::unix_now;
use obol_facilitator::checks::VALIDITY_BUFFER_SECS;
use obol_facilitator::{Facilitator, PaymentIdentity};
use obol_x402::header::{self as x402_header, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use obol_x402::metering::{Measured, Usage};
use obol_x402::primitives::{B256, U256};
use obol_x402::signer::admissible_validity;
use obol_x402::wire::{SettleResponse, VerifyRequest};
use tower::{Layer, Service, ServiceExt as _};

use crate::challenge::{self, PaymentFailure};
use crate::error::GatewayError;
use crate::guard::{Refusal, ReplayGuard, Ticket};
use crate::limits::Limiter;
use crate::matching;
use crate::metering::{Charge, Metering};
use crate::metrics::{Counter, Labels};
use crate::proxy::is_event_stream;
use crate::route::{Lookup, Offer, Routes, SettleMode};
use crate::siwx::Siwx;

mod charge;
mod gate;
mod mcp;
mod metered;
mod stream;
mod streaming;

pub use gate::VERIFIED_WALLET_HEADER;

use charge::Refused;
use metered::fit_metered;

/// Identity headers only the gateway may set; stripped from every client request.
pub const IDENTITY_HEADERS: [&str; 2] = ["x-verified-wallet", "x-payment-payer"];

/// Where a streamed answer's receipt can be read after the stream (`<origin>` +
/// [`RECEIPTS_PATH`] + `/<authorization nonce>`).
pub const RECEIPT_LINK_HEADER: &str = "x-payment-receipt";

/// The receipt lookup below the gateway's origin ([`crate::server`]).
pub const RECEIPTS_PATH: &str = "/.well-known/x402/receipts";

/// The verified payer, as told to the upstream.
pub const PAYER_HEADER: &str = "x-payment-payer";

pub use obol_x402::signer::ADMISSION_SLACK_SECS;

/// Default payment verifications per client and second ([`PaygateConfig::verify_rate`]).
pub const DEFAULT_VERIFY_RATE: u32 = 10;
/// Default burst of payment verifications per client.
pub const DEFAULT_VERIFY_BURST: u32 = 20;

/// Tunables of the paygate.
#[derive(Debug, Clone)]
pub struct PaygateConfig {
    /// The public base URL for `resource.url`, read on each answer (a tunnel may replace it
    /// while the gateway serves); unset or the local default: derived from forwarded headers.
    pub public_url: obol_config::public_url::SharedPublicUrl,
    /// Budget of a facilitator verify.
    pub verify_timeout: Duration,
    /// Budget of a facilitator settle.
    pub settle_timeout: Duration,
    /// The largest upstream response buffered before settling.
    pub max_buffered_response: usize,
    /// Whether browsers (`Accept: text/html`, `Mozilla` user agent) get a readable 402 page
    /// instead of the JSON body; the `PAYMENT-REQUIRED` header is sent either way.
    pub html_paywall: bool,
    /// A stream that has sent no content this long before its authorization expires is
    /// settled then (and cut if that fails), so no stream outlives its payment.
    pub stream_settle_margin: Duration,
    /// Sign-In-With-X for `auth` routes (none: they answer 503 `sign_in_unavailable`).
    pub siwx: Option<Arc<Siwx>>,
    /// Payment verifications per client and second, and the burst (`None`: unlimited).
    pub verify_rate: Option<(NonZeroU32, NonZeroU32)>,
}

impl Default for PaygateConfig {
    fn default() -> Self {
        Self {
            public_url: obol_config::public_url::SharedPublicUrl::default(),
            verify_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(60),
            max_buffered_response: 64 * 1024 * 1024,
            html_paywall: true,
            stream_settle_margin: Duration::from_secs(15),
            siwx: None,
            verify_rate: NonZeroU32::new(DEFAULT_VERIFY_RATE)
                .zip(NonZeroU32::new(DEFAULT_VERIFY_BURST)),
        }
    }
}

struct Shared {
    routes: Arc<Routes>,
    facilitator: Arc<dyn Facilitator>,
    guard: Arc<ReplayGuard>,
    config: PaygateConfig,
    challenges: challenge::Challenges,
    limits: Limiter,
    /// Connections to the upstream MCP servers of proxying MCP offers.
    mcp_upstreams: crate::mcp::upstream::Upstreams,
    /// Payment verifications per client.
    verify_limit: Option<crate::limits::VerifyLimit>,
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
        let verify_limit = config
            .verify_rate
            .map(|(rate, burst)| crate::limits::VerifyLimit::new(rate, burst));
        Self {
            shared: Arc::new(Shared {
                routes,
                facilitator,
                guard,
                config,
                challenges: challenge::Challenges::default(),
                limits: Limiter::default(),
                mcp_upstreams: crate::mcp::upstream::Upstreams::new(
                    crate::proxy::DEFAULT_UPSTREAM_TIMEOUT,
                ),
                verify_limit,
            }),
        }
    }

    /// Traefik ForwardAuth (`/verify`): decides on the forwarded request and **never settles**
    /// (the auth hop cannot see the upstream's status, so settling there would charge for
    /// failed calls). 200 lets Traefik forward, with `Authorization` (the upstream's) and
    /// `X-Payment-Payer`; 400/402/403 refuse. The forwarded path is checked and matched
    /// exactly as the gateway does.
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
        + Sync
        + 'static,
    S::Future: Send + 'static,
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
    /// This very payment was taken before and its settlement is pending or unknown: settle
    /// (idempotently) first, serve after.
    retry: bool,
    /// The payer's balance cannot be read (a remote facilitator), or could not be just now
    /// while it has other unsettled payments: a stream is settled before its first byte.
    settle_before_stream: bool,
    /// A metered (`upto`) payment: settled once, after the answer, for what it used.
    metered: Option<Metered>,
}

/// What a metered payment charges, and the most it may.
#[derive(Clone, Copy)]
struct Metered {
    metering: Metering,
    ceiling: U256,
}

/// A payment charged before its answer was served ([`Shared::charge_first`]).
struct Charged {
    receipt: SettleResponse,
    labels: Labels,
    payer: String,
}

impl Charged {
    /// Counts how the charged call went; a failed one is a refund owed, logged with `what`
    /// failed (an HTTP status, a tool).
    fn served(&self, ok: bool, offer: &Offer, what: &dyn std::fmt::Display) {
        if ok {
            self.labels.count(Counter::PaymentVerified);
            return;
        }
        self.labels.count(Counter::RefundOwed);
        tracing::warn!(
            offer = %offer.name,
            payer = %self.payer,
            transaction = %self.receipt.transaction.escape_debug(),
            failed = %what,
            "upstream failed after a settle-first charge: refund owed"
        );
    }
}

/// Why a settlement attempt did not charge. Recording in the guard is done by
/// [`Shared::settle`].
enum NotCharged {
    /// Broadcast, not confirmed in time: recorded unsettled with its transaction.
    Pending(SettleResponse),
    /// No answer (timeout, transport): recorded unsettled, outcome unknown.
    Unknown(String),
    /// The facilitator refused to settle.
    Rejected(SettleResponse),
    /// The facilitator failed for a reason retrying cannot fix; nothing was sent.
    Failed(String),
}

impl NotCharged {
    fn receipt(&self) -> Option<&SettleResponse> {
        match self {
            Self::Pending(r) | Self::Rejected(r) => Some(r),
            Self::Unknown(_) | Self::Failed(_) => None,
        }
    }

    /// What the buyer is told: `settlement_pending` (the same payment, sent again, is served
    /// once it lands), a re-challenge `settlement_rejected`, or `settlement_failed`.
    fn refusal(&self) -> Refused {
        match self {
            Self::Pending(receipt) => Refused::Error(GatewayError::settlement_pending(format!(
                "transaction {} was broadcast but not yet confirmed; send the same payment again to be served once it lands",
                receipt.transaction
            ))),
            Self::Unknown(why) => Refused::Error(GatewayError::settlement_pending(format!(
                "the settlement's outcome is not known yet ({why}); send the same payment again"
            ))),
            Self::Rejected(receipt) => Refused::Rechallenge {
                failure: PaymentFailure {
                    reason: "settlement_rejected",
                    detail: receipt
                        .error_reason
                        .clone()
                        .unwrap_or_else(|| "the facilitator refused to settle".into()),
                    hint: None,
                },
                status: StatusCode::PAYMENT_REQUIRED,
            },
            Self::Failed(why) => Refused::Error(GatewayError::settlement_failed(why.clone(), true)),
        }
    }
}

impl Shared {
    /// A request on a paid route: challenge, or match, claim, verify, serve and settle. The
    /// only code that takes a payment.
    async fn serve_paid<S>(
        self: Arc<Self>,
        mut request: Request<Body>,
        inner: S,
        offer: Arc<Offer>,
        unpaid_labels: Labels,
        sign_in: Option<gate::QuotaChallenge>,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let resource_url = match request.extensions().get::<crate::route::Vanity>() {
            Some(vanity) => vanity.url(),
            None => challenge::resource_url(
                self.config
                    .public_url
                    .published()
                    .as_deref()
                    .map(obol_config::PublicUrl::as_str),
                request.headers(),
                request.uri(),
            ),
        };
        let presented = match matching::extract(request.headers()) {
            None => {
                unpaid_labels.count(Counter::PaymentRequired);
                if let Some(sign_in) = sign_in {
                    return sign_in.response(&offer, resource_url);
                }
                if self.config.html_paywall && challenge::is_browser(request.headers()) {
                    let required = challenge::payment_required(&offer, resource_url, None);
                    return challenge::html_response(&offer, &required);
                }
                return self.challenges.response(&offer, resource_url);
            }
            Some(Err(error)) => {
                unpaid_labels.failure("invalid_payment_header");
                return error.into_response();
            }
            Some(Ok(presented)) => presented,
        };
        let client = client_of(request.extensions());
        let paid = match self.admit(&offer, &presented, &resource_url, client).await {
            Ok(paid) => paid,
            Err(response) => return *response,
        };
        if let Some(metered) = paid.metered {
            request = match fit_metered(request, metered).await {
                Ok(fitted) => fitted,
                Err(refusal) => {
                    // Dropping `paid` frees the claim: nothing was charged.
                    if let Refused::Rechallenge { failure, .. } = &refusal {
                        paid.labels.failure(failure.reason);
                    }
                    return refusal.into_response(&offer, &resource_url);
                }
            };
        }
        if let Ok(payer) = HeaderValue::from_str(&paid.payer()) {
            request.headers_mut().insert(PAYER_HEADER, payer);
        }
        request.extensions_mut().insert(offer.clone());
        // A metered payment is charged after its answer, whatever the offer's timing; only the
        // retry of one whose settlement was left pending settles first (for its ceiling).
        if paid.retry || (offer.settle == SettleMode::SettleFirst && paid.metered.is_none()) {
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
            if paid.metered.is_some() {
                self.stream_metered(upstream, paid, &resource_url)
            } else {
                self.stream_then_settle(upstream, paid, &resource_url)
            }
        } else {
            self.settle_then_respond(upstream, paid, &offer, resource_url)
                .await
        }
    }

    /// Settles a payment and records the outcome in the guard (first that a settlement is
    /// under way, so a restart mid-settlement finds it). `delivered`: content of this payment
    /// already went out (or may have, on an earlier attempt), so the payment is never released
    /// for reuse, whatever the outcome.
    async fn settle(
        &self,
        paid: Paid,
        delivered: bool,
    ) -> Result<(SettleResponse, Labels), NotCharged> {
        let Paid {
            verify,
            ticket,
            expires_at,
            labels,
            ..
        } = paid;
        if let Err(error) = ticket.settling(expires_at).await {
            // Only a restart mid-settlement would lose the payment; the chain's nonce still
            // prevents a second charge.
            tracing::error!(%error, "could not record a settlement under way");
        }
        let answer =
            tokio::time::timeout(self.config.settle_timeout, self.facilitator.settle(&verify))
                .await;
        let refused = match answer {
            Ok(Ok(receipt)) if receipt.success => {
                labels.charged();
                if let Err(error) = ticket
                    .settled(
                        &receipt.transaction,
                        receipt.amount.map(|a| a.get()),
                        expires_at,
                    )
                    .await
                {
                    // The chain's nonce still prevents a second charge.
                    tracing::error!(%error, "could not record a payment's settlement");
                }
                return Ok((receipt, labels));
            }
            Err(_) => NotCharged::Unknown(format!(
                "no settle answer within {:?}",
                self.config.settle_timeout
            )),
            Ok(Err(error)) if error.retriable() => NotCharged::Unknown(error.to_string()),
            Ok(Err(error)) => NotCharged::Failed(error.to_string()),
            Ok(Ok(receipt))
                if receipt.error_reason.as_deref()
                    == Some(obol_facilitator::Reason::SettlementPending.as_str()) =>
            {
                NotCharged::Pending(receipt)
            }
            Ok(Ok(receipt)) => NotCharged::Rejected(receipt),
        };
        let recorded = match &refused {
            NotCharged::Pending(receipt) => {
                labels.failure("settlement_pending");
                ticket.unsettled(&receipt.transaction, expires_at).await
            }
            NotCharged::Unknown(_) => {
                labels.failure("settlement_pending");
                ticket.unsettled("", expires_at).await
            }
            NotCharged::Rejected(receipt) => {
                labels.failure("settlement_rejected");
                if delivered {
                    ticket.unsettled(&receipt.transaction, expires_at).await
                } else {
                    ticket.released().await
                }
            }
            NotCharged::Failed(_) => {
                labels.failure("settlement_failed");
                if delivered {
                    ticket.unsettled("", expires_at).await
                } else {
                    ticket.released().await
                }
            }
        };
        if let Err(error) = recorded {
            tracing::error!(%error, "could not record a payment's settlement");
        }
        Err(refused)
    }

    /// The answer to a settlement that did not charge (see [`NotCharged::refusal`]), with the
    /// receipt when there is one.
    fn not_charged(refused: &NotCharged, offer: &Offer, resource_url: &str) -> Response<Body> {
        let mut response = refused.refusal().into_response(offer, resource_url);
        if let Some(receipt) = refused.receipt() {
            add_receipt(response.headers_mut(), receipt);
        }
        response
    }

    /// Serve-first, buffered: read the whole upstream answer, settle (a metered payment for
    /// the usage the answer reports), then release it.
    async fn settle_then_respond(
        &self,
        upstream: Response<Body>,
        mut paid: Paid,
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
        let usage = paid
            .metered
            .and_then(|_| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|answer| crate::metering::usage_of(&answer));
        let charge = paid.charge_for(usage, false);
        match self.settle(paid, false).await {
            Ok((mut receipt, labels)) => {
                note_charge(&self.guard, &mut receipt, &labels, charge.as_ref()).await;
                add_receipt(&mut parts.headers, &receipt);
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(refused) => Self::not_charged(&refused, offer, &resource_url),
        }
    }

    /// Settle-first (and the retry of a payment whose settlement was pending): charge, then
    /// call the upstream and relay whatever it answers, receipts attached. An upstream failure
    /// after the charge is a refund owed: logged and counted.
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
        let charged = match self.charge_first(paid).await {
            Ok(charged) => charged,
            Err(refused) => return Self::not_charged(&refused, offer, &resource_url),
        };
        let mut upstream = match inner.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = upstream.status();
        charged.served(status.as_u16() < 400, offer, &status);
        add_receipt(upstream.headers_mut(), &charged.receipt);
        upstream
    }

    /// Settles before serving (settle-first, or the retry of a payment whose settlement was
    /// pending: taken before, it stays taken whatever this attempt comes to).
    async fn charge_first(&self, mut paid: Paid) -> Result<Charged, NotCharged> {
        let payer = paid.payer();
        let taken_before = paid.retry;
        // Before the answer, a metered payment's usage is unknown: its ceiling.
        let charge = paid.charge_for(None, true);
        let (mut receipt, labels) = self.settle(paid, taken_before).await?;
        note_charge(&self.guard, &mut receipt, &labels, charge.as_ref()).await;
        Ok(Charged {
            receipt,
            labels,
            payer,
        })
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
        if let Err(error) = crate::path::check(uri.path()) {
            return GatewayError::invalid_path(error).into_response();
        }
        // Traefik sends the original method; without it, GET (what a rule for any method
        // answers alike).
        let method = headers
            .get("x-forwarded-method")
            .and_then(|v| axum::http::Method::from_bytes(v.as_bytes()).ok())
            .unwrap_or(axum::http::Method::GET);
        let offer = match self.routes.load().lookup(&method, uri.path()) {
            // ForwardAuth cannot give a failed free call back: free quotas are not offered
            // there, every call of a paid route pays.
            Lookup::Paid(offer, _) => offer,
            Lookup::Free(offer) => {
                Labels::new(&offer, None).count(Counter::Requests);
                let mut response = StatusCode::OK.into_response();
                upstream_identity(response.headers_mut(), &offer, None);
                return response;
            }
            Lookup::Auth(offer) => {
                Labels::new(&offer, None).count(Counter::Requests);
                let Some(siwx) = &self.config.siwx else {
                    return forbidden("sign-in is not configured on this gateway");
                };
                let at = gate::At::of(siwx, &headers, &uri, &axum::http::Extensions::new());
                return match self.authenticate(&headers, &at, &offer).await {
                    Ok(who) => {
                        let mut response = StatusCode::OK.into_response();
                        upstream_identity(response.headers_mut(), &offer, None);
                        gate::set_wallet(response.headers_mut(), who.identity());
                        response
                    }
                    Err(answer) => *answer,
                };
            }
            Lookup::SignIn(..) => {
                return forbidden(
                    "sign-in endpoints are served by the gateway itself; route <offer>/auth/* to it",
                );
            }
            Lookup::MethodNotAllowed(methods) => {
                return GatewayError::method_not_allowed(methods.allow()).into_response();
            }
            Lookup::FailClosed => {
                return forbidden(
                    "no rule matches; route appears to be a paid prefix with stale or missing rule",
                );
            }
            Lookup::NotFound => return StatusCode::OK.into_response(),
        };
        let labels = Labels::new(&offer, None);
        labels.count(Counter::Requests);
        let public_url = self.config.public_url.published();
        let resource_url = challenge::resource_url(
            public_url.as_deref().map(obol_config::PublicUrl::as_str),
            &headers,
            &uri,
        );
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
        // Behind ForwardAuth the client is the proxy: one bucket for all.
        let paid = match self.admit(&offer, &presented, &resource_url, None).await {
            Ok(paid) => paid,
            Err(response) => return *response,
        };
        if paid.retry {
            // ForwardAuth cannot settle: a payment whose settlement is pending is not let
            // through here.
            return GatewayError::settlement_pending(
                "this payment's settlement is pending; it cannot be used through ForwardAuth",
            )
            .into_response();
        }
        paid.labels.count(Counter::PaymentVerified);
        let mut response = StatusCode::OK.into_response();
        upstream_identity(response.headers_mut(), &offer, Some(&paid.payer()));
        response
    }
}

/// The headers a ForwardAuth answer hands the upstream: the offer's upstream secret header,
/// the payer (empty on a free route) and an empty verified wallet, so that whatever a client
/// sent under those names is overwritten.
fn upstream_identity(out: &mut HeaderMap, offer: &Offer, payer: Option<&str>) {
    if let Some(auth) = &offer.upstream_auth {
        auth.apply(out);
    }
    let payer = payer
        .and_then(|p| HeaderValue::from_str(p).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""));
    out.insert(PAYER_HEADER, payer);
    out.insert("x-verified-wallet", HeaderValue::from_static(""));
}

impl Paid {
    fn payer(&self) -> String {
        self.ticket.id().payer.to_checksum(None)
    }

    /// For a metered payment: what it is charged (for `usage`, or the ceiling when `expiring`),
    /// made the amount `/settle` is asked for. `None` for `exact`.
    fn charge_for(&mut self, usage: Option<Usage>, expiring: bool) -> Option<Charge> {
        let Metered { metering, ceiling } = self.metered?;
        let charge = if expiring {
            Charge {
                amount: ceiling,
                measured: Measured::Ceiling,
                usage: None,
            }
        } else {
            metering.charge(ceiling, usage)
        };
        if let VerifyRequest::V2 {
            payment_requirements,
            ..
        } = &mut self.verify
        {
            payment_requirements.amount = charge.amount.into();
        }
        Some(charge)
    }
}

/// Says in the receipt how a metered charge was measured (`extensions.metering`), counts it in
/// the offer's metrics and adds it to the offer's usage in the guard.
async fn note_charge(
    guard: &ReplayGuard,
    receipt: &mut SettleResponse,
    labels: &Labels,
    charge: Option<&Charge>,
) {
    if let Some(charge) = charge {
        labels.metered(charge);
        let (namespace, name) = labels.offer();
        if let Err(error) = guard.add_usage(namespace, name, charge).await {
            tracing::error!(%error, "could not record a metered call's usage");
        }
        receipt
            .extensions
            .get_or_insert_default()
            .insert("metering".into(), charge.receipt_extension());
    }
}

/// The client's address, when the server records it (`ConnectInfo`).
fn client_of(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The guard's refusal as a re-challenge, or the 503 of a store that cannot be read.
fn refused(refusal: &Refusal) -> Result<PaymentFailure, GatewayError> {
    let hint = Some("sign a new authorization for each request");
    Ok(match refusal {
        Refusal::Unavailable(_) => return Err(GatewayError::payment_store_unavailable()),
        Refusal::InFlight => PaymentFailure {
            reason: "payment_in_flight",
            detail: "this payment is already being used by another request".into(),
            hint,
        },
        Refusal::Settled(tx) => PaymentFailure {
            reason: "payment_already_used",
            detail: format!("this payment was already settled (transaction {tx})"),
            hint,
        },
        Refusal::OtherTerms => PaymentFailure {
            reason: "payment_already_used",
            detail: "this authorization's nonce was already used by another payment".into(),
            hint,
        },
    })
}

/// Refuses an authorization that expires before the window the 402 advertised
/// (`maxTimeoutSeconds`, less [`ADMISSION_SLACK_SECS`]; never under the facilitator's own
/// minimum): a paid answer must be settlable until it has been delivered.
fn check_window(expires_at: u64, max_timeout_seconds: u64) -> Result<(), PaymentFailure> {
    let required = admissible_validity(max_timeout_seconds, VALIDITY_BUFFER_SECS);
    let remaining = expires_at.saturating_sub(unix_now());
    if remaining >= required {
        return Ok(());
    }
    Err(PaymentFailure {
        reason: "authorization_expires_too_soon",
        detail: format!(
            "the authorization stays valid for {remaining} s; this offer needs at least {required} s (maxTimeoutSeconds {max_timeout_seconds} less {ADMISSION_SLACK_SECS} s)"
        ),
        hint: Some("sign validBefore = now + maxTimeoutSeconds"),
    })
}

/// What identifies a payment for the guard.
struct Taken {
    id: PaymentIdentity,
    /// The EIP-712 digest over every signed field.
    digest: B256,
    expires_at: u64,
}

/// The payment identity, digest and expiry, from the verify request and the matched option.
fn identity(
    verify: &VerifyRequest,
    option: &crate::route::PaymentOption,
) -> Result<Taken, PaymentFailure> {
    let invalid = |detail: String| PaymentFailure {
        reason: "payment_invalid",
        detail,
        hint: None,
    };
    let exact = verify.evm_payload().map_err(|e| invalid(e.to_string()))?;
    let requirements = &option.requirements;
    let chain_id = requirements
        .chain_id()
        .map_err(|e| invalid(e.to_string()))?;
    let asset = requirements
        .asset_address()
        .map_err(|e| invalid(e.to_string()))?;
    let digest = exact
        .signing_hash(requirements)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Taken {
        id: PaymentIdentity {
            chain_id,
            asset,
            payer: exact.payer(),
            nonce: exact.nonce(),
        },
        digest,
        expires_at: u64::try_from(exact.expires_at()).unwrap_or(u64::MAX),
    })
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
