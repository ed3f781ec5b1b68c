//! The buyer proxy: an OpenAI-compatible endpoint that pays sellers from the pools.
//!
//! `POST /v1/chat/completions`, `/chat/completions` and `/v1/responses` with model
//! `paid/<model>` (the `paid/` and `openai/` prefixes are stripped) go to the seller bought for
//! that model: unpaid first; on 402 an authorization is held, the call is retried with it, and
//! the seller's answer streams back (SSE included). Once a paid call to a URL (and method) was
//! accepted, the next calls there carry an authorization for the same terms with the first
//! request (one round trip); a 402 to it burns that authorization, forgets the terms and goes on
//! from that 402 as above. A status below 400 marks the authorization spent before the answer
//! reaches the caller; anything else releases or burns it. The proxy holds no key: the most it
//! can spend is what was pre-signed.
//!
//! The seller is called as [`crate::seller`] says: a redirect is never followed (502
//! `seller_redirected`, naming the `Location`), and a settlement the seller reports pending is
//! retried with the same authorization; one still pending after the retries counts as spent
//! and is answered 424 `settlement_pending` with the transaction (not a 5xx, which agents'
//! HTTP clients retry on their own, paying again). `/upstream/<name>/<path>`
//! refuses any path that could leave the purchase's base URL once decoded.
//!
//! Only agents may spend, never a web page the user happens to open: a request carrying an
//! `Origin` header (every browser sends one on a cross-origin POST) is refused with 403, a POST
//! whose body is not declared `application/json` (what a form or a "simple" CORS request sends)
//! with 415, and, while the proxy listens on loopback ([`BuyerProxy::loopback_only`], the
//! default), a request whose `Host` is not a loopback name or address (DNS rebinding) with 403.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware as axum_middleware;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use metrics_exporter_prometheus::PrometheusHandle;

use obol_x402::wire::v2;

use access::{guard, is_loopback_host, require_json};

use crate::known_terms::{Key, Known, KnownTerms};
use crate::metrics::{self, Counter};
use crate::pool::{AuthPool, Held, PoolCounts, PoolError};
use crate::probe::{self, payment_header};
use crate::seller::{self, PaidAnswer, SellerError};

mod access;
mod relay;
mod streamed;

use relay::{copy_receipts, has_receipt, receipt_link, relay, relay_then, settled};
use streamed::streamed_charge;

/// The largest request body accepted from the agent.
pub const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// One bought upstream: calls for `model` are paid from `pool` at the seller's `base` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The model name the agent asks for (without `paid/`).
    pub model: String,
    /// The pool the authorizations come from.
    pub pool: String,
    /// The seller's service URL; `/v1/chat/completions` or `/v1/responses` is appended.
    pub base: String,
    /// The chain the pool pays on (legacy name, a metrics label).
    pub chain: String,
}

/// Why a call was not made or not paid, as the agent sees it.
#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    /// A browser page (an `Origin` header) or a foreign `Host` (DNS rebinding) is calling.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The body is not declared `application/json`.
    #[error("the request body must be sent as application/json, not {0}")]
    UnsupportedMediaType(String),
    /// The body is not a JSON object with a `model`.
    #[error("the request body must be a JSON object with a \"model\": {0}")]
    BadRequest(String),
    /// The body exceeds [`MAX_REQUEST_BODY`].
    #[error("the request body exceeds {MAX_REQUEST_BODY} bytes")]
    TooLarge,
    /// An `/upstream` path that could leave the purchase's base URL.
    #[error("{0}")]
    Path(String),
    /// No purchase for the model.
    #[error("no purchased upstream mapped for requested model {0:?}")]
    UnknownModel(String),
    /// The seller could not be reached, or redirected the call (not followed).
    #[error(transparent)]
    Seller(#[from] SellerError),
    /// The seller took the payment but has not confirmed its settlement: the authorization counts
    /// as spent.
    #[error(
        "the seller has not confirmed the settlement of the payment (transaction {}) after {retries} retries of the same payment; the call was not served, and the authorization counts as spent since the transfer may still land",
        transaction.as_deref().unwrap_or("not named")
    )]
    SettlementPending {
        /// The transaction the seller named (escaped).
        transaction: Option<String>,
        /// How many times the payment was sent again.
        retries: u32,
    },
    /// The seller's 402 could not be read.
    #[error("the seller's payment request is unusable: {0}")]
    Challenge(String),
    /// The pool could not pay.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A pool task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuyError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "permission_error"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error")
            }
            Self::BadRequest(_) | Self::Path(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error"),
            Self::UnknownModel(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            Self::Seller(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
            // 424, not a 5xx: OpenAI-style clients retry 5xx on their own, and each retry would
            // be a new paid call for an answer that may already be paid for.
            Self::SettlementPending { .. } => (StatusCode::FAILED_DEPENDENCY, "settlement_pending"),
            Self::Challenge(_) => (StatusCode::BAD_GATEWAY, "payment_error"),
            Self::Pool(PoolError::Exhausted { .. }) => {
                (StatusCode::PAYMENT_REQUIRED, "insufficient_quota")
            }
            Self::Pool(PoolError::Mismatch { .. }) => {
                (StatusCode::PAYMENT_REQUIRED, "payment_terms_changed")
            }
            Self::Pool(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
        }
    }
}

/// Every proxy failure leaves as an OpenAI-style error body; a redirect adds
/// `"reason": "seller_redirected"` and the `location`, a pending settlement
/// `"reason": "settlement_pending"` and the `transaction`, a refused path
/// `"reason": "invalid_path"`.
impl IntoResponse for BuyError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        let mut body =
            json!({"error": {"message": self.to_string(), "type": kind, "code": status.as_u16()}});
        match self {
            Self::Seller(SellerError::Redirected { location }) => {
                body["reason"] = json!("seller_redirected");
                body["location"] = json!(location);
            }
            Self::SettlementPending { transaction, .. } => {
                body["reason"] = json!("settlement_pending");
                body["transaction"] = json!(transaction);
            }
            Self::Path(_) => body["reason"] = json!("invalid_path"),
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}

/// One call to a seller, replayable (unpaid, then paid).
struct Outgoing {
    method: reqwest::Method,
    url: String,
    content_type: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    body: Bytes,
}

/// How a paid call ended.
enum Paid {
    /// The agent's answer: served (spent), pending (spent), or failed (released or burned).
    Answered(Response),
    /// The seller answered 402 without a receipt: the payment was refused before any settlement
    /// (changed terms, a refused authorization). The authorization is burned; the 402 names
    /// what the seller asks now.
    Refused(reqwest::Response),
}

/// The buyer proxy's state.
pub struct BuyerProxy {
    /// By lower-cased model name.
    purchases: ArcSwap<HashMap<String, Purchase>>,
    /// Whether requests must name a loopback `Host`.
    loopback_only: AtomicBool,
    pool: Arc<AuthPool>,
    /// The terms sellers accepted payments with, to pay with the first request.
    known: KnownTerms,
    http: reqwest::Client,
    metrics: PrometheusHandle,
}

impl std::fmt::Debug for BuyerProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuyerProxy")
            .field("purchases", &self.purchases.load().len())
            .field("loopback_only", &self.loopback_only.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl BuyerProxy {
    /// A proxy spending from `pool`, naming itself `user_agent` (default `obol-buyer/<v>`);
    /// `/metrics` renders `metrics` (the process's Prometheus recorder). It answers only
    /// requests for a loopback `Host` until told otherwise with [`Self::loopback_only`].
    ///
    /// # Errors
    ///
    /// [`BuyError::Seller`] when the HTTP client cannot be built (a `user_agent` that is not a
    /// valid header value).
    pub fn new(
        pool: Arc<AuthPool>,
        user_agent: Option<&str>,
        metrics: PrometheusHandle,
    ) -> Result<Arc<Self>, BuyError> {
        let http = seller::client(user_agent, |builder| {
            builder
                .connect_timeout(Duration::from_secs(10))
                // Inference can be slow, but a seller that never answers must not pin a hold.
                .read_timeout(Duration::from_secs(600))
        })?;
        Ok(Arc::new(Self {
            purchases: ArcSwap::from_pointee(HashMap::new()),
            loopback_only: AtomicBool::new(true),
            pool,
            known: KnownTerms::default(),
            http,
            metrics,
        }))
    }

    /// Whether only requests naming a loopback `Host` (`localhost`, `127.0.0.0/8`, `[::1]`,
    /// any port) are answered: true (the default) while the proxy listens on loopback, which
    /// keeps a web page from reaching it through DNS rebinding. Set false when it listens on
    /// another address, where agents reach it under other names.
    pub fn loopback_only(&self, only: bool) {
        self.loopback_only.store(only, Ordering::Relaxed);
    }

    /// Replaces the purchases atomically (in-flight calls keep theirs). Models are matched
    /// case-insensitively; of two purchases whose models differ only in case the first listed
    /// wins. The gauges of a purchase no longer served drop to zero remaining and inactive.
    /// Every seller's known terms are forgotten: the next call of each purchase goes unpaid
    /// first.
    pub fn set_purchases(&self, purchases: Vec<Purchase>) {
        self.known.clear();
        let mut map: HashMap<String, Purchase> = HashMap::with_capacity(purchases.len());
        for purchase in purchases {
            map.entry(purchase.model.to_lowercase()).or_insert(purchase);
        }
        let previous = self.purchases.swap(Arc::new(map));
        let current = self.purchases.load();
        for gone in previous
            .values()
            .filter(|p| !current.values().any(|c| c == *p))
        {
            metrics::retire(gone);
        }
    }

    /// Whether a purchase spends from `pool`.
    pub fn serves(&self, pool: &str) -> bool {
        self.purchases.load().values().any(|p| p.pool == pool)
    }

    /// Stops serving the purchase spending from `pool`; false when none does.
    pub fn remove(&self, pool: &str) -> bool {
        let current = self.purchases.load();
        if !current.values().any(|p| p.pool == pool) {
            return false;
        }
        self.set_purchases(
            current
                .values()
                .filter(|p| p.pool != pool)
                .cloned()
                .collect(),
        );
        true
    }

    /// Every purchase (by model) with its pool's counts, read on the blocking pool.
    async fn counts(&self) -> Result<Vec<(Purchase, PoolCounts)>, BuyError> {
        let mut purchases: Vec<Purchase> = self.purchases.load().values().cloned().collect();
        purchases.sort_by(|a, b| a.model.cmp(&b.model));
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            purchases
                .into_iter()
                .map(|p| pool.counts(&p.pool).map(|counts| (p, counts)))
                .collect::<Result<Vec<_>, PoolError>>()
        })
        .await
        .map_err(|e| BuyError::Internal(e.to_string()))?
        .map_err(BuyError::from)
    }

    /// The proxy's routes, every one behind the `Origin` and `Host` checks.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/responses", post(responses))
            .route("/responses", post(responses))
            .route("/upstream/{name}/{*rest}", any(upstream))
            .route("/v1/models", get(models))
            .route("/models", get(models))
            .route("/status", get(status))
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(healthz))
            .layer(axum_middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// Refuses what a browser could send: an `Origin`, or (while loopback only) a `Host` that
    /// is not a loopback name or address.
    fn admit(&self, request: &Request) -> Result<(), BuyError> {
        if request.headers().contains_key(header::ORIGIN) {
            return Err(BuyError::Forbidden(
                "requests from web pages (with an Origin header) are not accepted".into(),
            ));
        }
        // Browsers mark every request with where it comes from; a simple GET (an <img>, a
        // link) carries no Origin but says `Sec-Fetch-Site: cross-site`. Only a user typing the
        // URL (`none`) is a browser request we let through; agents send no such header.
        let fetch = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        };
        if fetch("sec-fetch-site").is_some_and(|site| site != "none")
            || fetch("sec-fetch-mode").is_some_and(|mode| mode == "no-cors")
        {
            return Err(BuyError::Forbidden(
                "requests a web page triggered (Sec-Fetch-Site / Sec-Fetch-Mode) are not accepted"
                    .into(),
            ));
        }
        if self.loopback_only.load(Ordering::Relaxed) {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| request.uri().authority().map(|a| a.as_str()));
            if !host.is_some_and(is_loopback_host) {
                return Err(BuyError::Forbidden(format!(
                    "the buyer proxy answers only on a loopback host (localhost, 127.0.0.1, \
                     [::1]), not {}",
                    host.map_or_else(|| "a request without Host".to_owned(), |h| format!("{h:?}"))
                )));
            }
        }
        Ok(())
    }

    async fn call(&self, request: Request, api_path: &str) -> Result<Response, BuyError> {
        let headers = request.headers().clone();
        require_json(&headers)?;
        let body = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BODY)
            .await
            .map_err(|_| BuyError::TooLarge)?;
        let mut json: Value =
            serde_json::from_slice(&body).map_err(|e| BuyError::BadRequest(e.to_string()))?;
        let asked_model = json
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| BuyError::BadRequest("no \"model\"".into()))?;
        let asked = asked_model.to_lowercase();
        let purchases = self.purchases.load();
        // A model bought as `openai/x` is found under that name; otherwise `paid/` and
        // `openai/` are routing prefixes.
        let purchase = purchases
            .get(without_paid(&asked))
            .or_else(|| purchases.get(bare_model(&asked)))
            .cloned()
            .ok_or_else(|| BuyError::UnknownModel(bare_model(asked_model).to_owned()))?;
        // The seller gets the model under the name it was bought as.
        json["model"] = Value::String(purchase.model.clone());
        let body = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
        let url = format!("{}{api_path}", purchase.base.trim_end_matches('/'));
        let outgoing = Outgoing {
            method: reqwest::Method::POST,
            url,
            content_type: Some(HeaderValue::from_static("application/json")),
            accept: headers.get(header::ACCEPT).cloned(),
            body,
        };
        self.pay_through(&purchase, outgoing).await
    }

    /// `/upstream/<name>/<path>`: any method and body, forwarded as is to the purchase whose
    /// pool is `<name>` (or ends in `/<name>`) at `<base>/<path>`, paid the same way. It needs
    /// an `X-Obol-Buyer` header (which no web page can add without a CORS preflight, which
    /// fails), since a plain GET through it would otherwise spend. `<path>` is forwarded as the
    /// agent wrote it, and refused (400) when it could leave `<base>` (`obol_config::request_path`).
    async fn upstream(&self, name: &str, request: Request) -> Result<Response, BuyError> {
        if !request.headers().contains_key("x-obol-buyer") {
            return Err(BuyError::Forbidden(
                "the /upstream route needs an `X-Obol-Buyer: 1` header (a web page cannot send one)"
                    .into(),
            ));
        }
        // The path as sent, not as the router decoded it: `%252e%252e` decodes to `%2e%2e`,
        // which the seller's URL parser would take for `..`.
        let raw = request
            .uri()
            .path()
            .strip_prefix("/upstream/")
            .and_then(|tail| tail.split_once('/'))
            .map_or("", |(_, rest)| rest);
        if let Err(found) = obol_config::request_path::check(raw) {
            return Err(BuyError::Path(format!(
                "{found}: a path under /upstream/<name>/ stays under the purchase's URL"
            )));
        }
        let purchase = self
            .purchases
            .load()
            .values()
            .find(|p| p.pool == name || p.pool.rsplit('/').next() == Some(name))
            .cloned()
            .ok_or_else(|| BuyError::UnknownModel(format!("upstream {name}")))?;
        let url = under_base(&purchase.base, raw, request.uri().query())?;
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| BuyError::BadRequest(e.to_string()))?;
        let headers = request.headers().clone();
        let body = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BODY)
            .await
            .map_err(|_| BuyError::TooLarge)?;
        let outgoing = Outgoing {
            method,
            url,
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            accept: headers.get(header::ACCEPT).cloned(),
            body,
        };
        self.pay_through(&purchase, outgoing).await
    }

    /// Pays with the first request when the seller's terms for this pool, method and URL are
    /// known (and the pool holds an authorization for exactly them); otherwise, or when that
    /// payment is answered 402 without a receipt, today's way: read the 402, hold an
    /// authorization paying one of its options, send it (again while the seller settles), then
    /// confirm, release or burn it.
    async fn pay_through(
        &self,
        purchase: &Purchase,
        outgoing: Outgoing,
    ) -> Result<Response, BuyError> {
        let purchase = purchase.clone();
        metrics::count(&purchase, Counter::Requests);
        let key = Key {
            pool: purchase.pool.clone(),
            method: outgoing.method.clone(),
            url: outgoing.url.clone(),
        };
        let up_front = match self.known.get(&key) {
            Some(known) => self.up_front(&purchase, &outgoing, &key, known).await?,
            None => None,
        };
        let challenge = match up_front {
            Some(Paid::Answered(response)) => return Ok(response),
            Some(Paid::Refused(challenge)) => challenge,
            None => {
                let first = self.send(&outgoing, None).await?;
                if first.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
                    return Ok(relay(first));
                }
                first
            }
        };
        metrics::count(&purchase, Counter::PaymentAttempts);
        let held = async {
            let offered = probe::read_offer(challenge, &outgoing.url)
                .await
                .map_err(|e| BuyError::Challenge(e.to_string()))?;
            self.hold(&purchase.pool, offered.version, offered.accepts)
                .await
        };
        let (held, payment, known) = held.await.inspect_err(|_| {
            metrics::count(&purchase, Counter::PaymentFailure);
        })?;
        Ok(
            match self
                .paid(&purchase, &outgoing, &key, known, held, payment)
                .await?
            {
                Paid::Answered(response) => response,
                // A second refusal is the agent's answer, as a first one was before.
                Paid::Refused(refusal) => relay(refusal),
            },
        )
    }

    /// The payment sent with the first request for `key`'s `known` terms: `None` when the pool
    /// holds no authorization for exactly them (the entry is forgotten, nothing was sent).
    async fn up_front(
        &self,
        purchase: &Purchase,
        outgoing: &Outgoing,
        key: &Key,
        known: Known,
    ) -> Result<Option<Paid>, BuyError> {
        let (held, payment, known) = match self
            .hold(
                &purchase.pool,
                known.version,
                vec![known.requirement.clone()],
            )
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(
                    pool = %purchase.pool,
                    %error,
                    "the seller's known terms are not payable from the pool; calling unpaid"
                );
                self.known.forget(key, &known.requirement);
                return Ok(None);
            }
        };
        metrics::count(purchase, Counter::PaymentAttempts);
        self.paid(purchase, outgoing, key, known, held, payment)
            .await
            .map(Some)
    }

    /// Sends `payment` (from `held`, paying `known`), again with the same header while the
    /// seller settles, and ends the hold: spent when served or pending, released when the
    /// seller never saw it or failed on its own without charging, burned otherwise. Remembers
    /// `known` for `key` unless the seller answered 402, which forgets it.
    async fn paid(
        &self,
        purchase: &Purchase,
        outgoing: &Outgoing,
        key: &Key,
        known: Known,
        mut held: Held,
        payment: (&'static str, HeaderValue),
    ) -> Result<Paid, BuyError> {
        let failed = |_: &BuyError| metrics::count(purchase, Counter::PaymentFailure);
        let metered = known.requirement.scheme == "upto";
        // From here the seller may act on the authorization: an error or a cancelled call burns
        // it (dropping `held` after `sent`), never returns it to the queue; once the seller said
        // its settlement is pending, it ends spent.
        held.sent();
        let first = match self.send(outgoing, Some(payment.clone())).await {
            Ok(first) => first,
            Err(error) => {
                if matches!(error, SellerError::NotConnected(_)) {
                    // No connection, so the payment never left: back to the head of the queue.
                    held.release();
                }
                let error = BuyError::from(error);
                failed(&error);
                return Err(error);
            }
        };
        let PaidAnswer {
            response: paid,
            retries,
            pending,
        } = seller::until_settled(
            first,
            || self.send(outgoing, Some(payment.clone())),
            || held.pending(),
        )
        .await
        .map_err(BuyError::from)
        .inspect_err(failed)?;
        let refused = paid.status() == reqwest::StatusCode::PAYMENT_REQUIRED;
        if refused {
            self.known.forget(key, &known.requirement);
        } else {
            self.known.remember(key.clone(), known);
        }
        let served = paid.status().as_u16() < 400;
        if let Some(pending) = pending.filter(|_| !served) {
            metrics::count(purchase, Counter::PaymentFailure);
            tracing::warn!(
                pool = %purchase.pool,
                transaction = pending.transaction.as_deref().unwrap_or("not named"),
                retries,
                "the seller has not confirmed a settlement; the authorization counts as spent"
            );
            confirm(purchase, held, None).await?;
            let mut response = BuyError::SettlementPending {
                transaction: pending.transaction,
                retries,
            }
            .into_response();
            copy_receipts(paid.headers(), response.headers_mut());
            return Ok(Paid::Answered(response));
        }
        if served {
            metrics::count(purchase, Counter::PaymentSuccess);
            if !settled(paid.headers()) {
                metrics::count(purchase, Counter::PaymentUnsettledConfirmations);
            }
            // A metered seller charges less than the authorization: its receipt says how much,
            // or, for a stream, the receipt link once the stream ended.
            let charged = crate::seller::receipt_of(paid.headers())
                .and_then(|receipt| receipt.amount)
                .map(|amount| amount.get());
            let link = receipt_link(paid.headers(), &outgoing.url).filter(|_| metered);
            if let (None, Some(link)) = (charged, link) {
                let spent = tokio::task::spawn_blocking(move || held.confirm_spent())
                    .await
                    .map_err(|e| BuyError::Internal(e.to_string()))?
                    .inspect_err(|_| metrics::count(purchase, Counter::ConfirmSpendFailure))?;
                let http = self.http.clone();
                let pool = purchase.pool.clone();
                return Ok(Paid::Answered(relay_then(paid, move || {
                    tokio::spawn(streamed_charge(http, link, spent, pool));
                })));
            }
            confirm(purchase, held, charged).await?;
            return Ok(Paid::Answered(relay(paid)));
        }
        metrics::count(purchase, Counter::PaymentFailure);
        // A receipt means a settlement was attempted, and a 402 means the seller refused this
        // authorization: either way it must not come back. Other failures (the seller's own
        // errors, which the gateway never charges) release it for the next call.
        let receipt = has_receipt(paid.headers());
        let reusable = !refused && !receipt;
        tracing::info!(
            pool = %purchase.pool,
            status = paid.status().as_u16(),
            reusable,
            "the seller did not serve a paid call"
        );
        if reusable {
            held.release();
        } else {
            // Burned (it was sent) before anything else is paid.
            drop(held);
        }
        Ok(if refused && !receipt {
            Paid::Refused(paid)
        } else {
            Paid::Answered(relay(paid))
        })
    }

    /// Holds an authorization paying one of the seller's options `accepts` (x402 `version`),
    /// with its header and the option it pays. The pool's SQLite work runs on the blocking pool.
    async fn hold(
        &self,
        pool: &str,
        version: u8,
        accepts: Vec<v2::PaymentRequirements>,
    ) -> Result<(Held, (&'static str, HeaderValue), Known), BuyError> {
        let now = obol_config::time::unix_now();
        let (auths, pool) = (self.pool.clone(), pool.to_owned());
        let (held, requirement) = tokio::task::spawn_blocking(move || {
            let mut refusal = None;
            for asked in accepts {
                match auths.take(&pool, &asked, now) {
                    Ok(held) => return Ok((held, asked)),
                    Err(error @ PoolError::Mismatch { .. }) => refusal = Some(error),
                    Err(error) => return Err(error.into()),
                }
            }
            Err(refusal.map_or_else(
                || BuyError::Challenge("the seller offers no payment option".into()),
                BuyError::from,
            ))
        })
        .await
        .map_err(|e| BuyError::Internal(e.to_string()))??;
        let (name, value) = payment_header(version, held.payload())
            .map_err(|e| BuyError::Challenge(e.to_string()))?;
        let value =
            HeaderValue::from_str(&value).map_err(|e| BuyError::Challenge(e.to_string()))?;
        Ok((
            held,
            (name, value),
            Known {
                version,
                requirement,
            },
        ))
    }

    /// One call to the seller (no redirects followed), with the payment when given.
    async fn send(
        &self,
        outgoing: &Outgoing,
        payment: Option<(&'static str, HeaderValue)>,
    ) -> Result<reqwest::Response, SellerError> {
        let mut request = self
            .http
            .request(outgoing.method.clone(), &outgoing.url)
            .body(outgoing.body.clone());
        if let Some(content_type) = &outgoing.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(accept) = &outgoing.accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some((name, value)) = payment {
            request = request.header(name, value);
        }
        seller::send(request).await
    }
}

/// Marks `held` spent (with what the seller said it charged); the mark is an fsync'd write, so
/// off the async workers.
async fn confirm(
    purchase: &Purchase,
    held: crate::pool::Held,
    charged: Option<obol_x402::primitives::U256>,
) -> Result<(), BuyError> {
    tokio::task::spawn_blocking(move || held.confirm_charged(charged))
        .await
        .map_err(|e| BuyError::Internal(e.to_string()))?
        .inspect_err(|_| metrics::count(purchase, Counter::ConfirmSpendFailure))
        .map_err(BuyError::from)
}

/// `<base>/<raw>?<query>`, refused unless its origin is `base`'s and its path starts with
/// `base`'s (the last line of defence, whatever `request_path::check` missed).
fn under_base(base: &str, raw: &str, query: Option<&str>) -> Result<String, BuyError> {
    let refused = || BuyError::Path("the path may not leave the purchase's URL".into());
    let base_url = reqwest::Url::parse(base).map_err(|_| refused())?;
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let url = reqwest::Url::parse(&format!("{}/{raw}{query}", base.trim_end_matches('/')))
        .map_err(|_| refused())?;
    let prefix = format!("{}/", base_url.path().trim_end_matches('/'));
    if url.origin() != base_url.origin() || !url.path().starts_with(&prefix) {
        return Err(refused());
    }
    Ok(url.into())
}

/// `GET /healthz`: the proxy is up.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn chat(State(proxy): State<Arc<BuyerProxy>>, request: Request) -> Response {
    proxy
        .call(request, "/v1/chat/completions")
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn responses(State(proxy): State<Arc<BuyerProxy>>, request: Request) -> Response {
    proxy
        .call(request, "/v1/responses")
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn upstream(
    State(proxy): State<Arc<BuyerProxy>>,
    Path((name, _)): Path<(String, String)>,
    request: Request,
) -> Response {
    proxy
        .upstream(&name, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /status`: each purchase with its pool's remaining and spent counts.
async fn status(State(proxy): State<Arc<BuyerProxy>>) -> Response {
    let counted = match proxy.counts().await {
        Ok(counted) => counted,
        Err(error) => return error.into_response(),
    };
    // The original's shape (obol-stack.md §5.2): upstream → its terms and counts.
    let out: serde_json::Map<String, Value> = counted
        .iter()
        .map(|(purchase, counts)| {
            (
                purchase.pool.clone(),
                json!({
                    "url": purchase.base, "remote_model": purchase.model,
                    "public_model": format!("paid/{}", purchase.model),
                    "network": purchase.chain,
                    "remaining": counts.available, "spent": counts.spent,
                    "held": counts.held, "burned": counts.burned,
                    "charged": counts.charged.to_string(), "spentUnstated": counts.spent_unstated,
                }),
            )
        })
        .collect();
    Json(Value::Object(out)).into_response()
}

/// `GET /v1/models`: the purchased models as OpenAI lists models (`paid/<model>`), each with
/// the calls it has left (`remaining`, ours) and the seller (`owned_by`).
async fn models(State(proxy): State<Arc<BuyerProxy>>) -> Response {
    let counted = match proxy.counts().await {
        Ok(counted) => counted,
        Err(error) => return error.into_response(),
    };
    let data: Vec<Value> = counted
        .iter()
        .map(|(purchase, counts)| {
            json!({
                "id": format!("paid/{}", purchase.model), "object": "model", "created": 0,
                "owned_by": purchase.base, "remaining": counts.available,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /metrics`: refreshes the pool gauges, then renders.
async fn metrics_text(State(proxy): State<Arc<BuyerProxy>>) -> Response {
    if let Ok(counted) = proxy.counts().await {
        for (purchase, counts) in &counted {
            metrics::pool_gauges(purchase, counts.available, counts.spent);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        proxy.metrics.render(),
    )
        .into_response()
}

/// `paid/openai/m` → `m`.
/// `paid/paid/x` → `x` (only `paid/` prefixes).
fn without_paid(mut model: &str) -> &str {
    while let Some(rest) = model.strip_prefix("paid/") {
        model = rest;
    }
    model
}

fn bare_model(mut model: &str) -> &str {
    // Any number of leading `paid/` and `openai/`, in any order (obol-stack.md §5.3).
    while let Some(rest) = model
        .strip_prefix("paid/")
        .or_else(|| model.strip_prefix("openai/"))
    {
        model = rest;
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_prefixes_are_stripped() {
        assert_eq!(bare_model("paid/qwen3"), "qwen3");
        assert_eq!(bare_model("paid/openai/gpt-x"), "gpt-x");
        assert_eq!(bare_model("openai/gpt-x"), "gpt-x");
        assert_eq!(bare_model("plain"), "plain");
        assert_eq!(bare_model("openai/paid/paid/m"), "m");
        assert_eq!(bare_model("vendor/m"), "vendor/m");
    }

    #[test]
    fn upstream_paths_stay_under_the_base() {
        let base = "http://seller.test:8080/services/x/";
        assert_eq!(
            under_base(base, "v1/a", Some("q=%2e")).unwrap(),
            "http://seller.test:8080/services/x/v1/a?q=%2e"
        );
        for raw in ["../y", "a/../../y", "../x2/y"] {
            assert!(
                matches!(under_base(base, raw, None), Err(BuyError::Path(_))),
                "{raw}"
            );
        }
    }
}
