//! The gate dispatch: every request's prelude (identity headers stripped, path checked, route
//! looked up, limits taken), then the route's gate: `free` proxies (with the wallet of a valid
//! session), `auth` proxies a signed-in wallet or answers the sign-in challenge, the sign-in
//! endpoints issue sessions, and `paid` goes to [`Shared::serve_paid`], the only code that
//! takes a payment.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{
    Extensions, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use axum::response::IntoResponse as _;
use obol_config::time::unix_now;
use serde::Deserialize;
use serde_json::json;
use tower::{Service, ServiceExt as _};

use super::{IDENTITY_HEADERS, Shared};
use crate::challenge::{self, PaymentFailure};
use crate::error::GatewayError;
use crate::metrics::{Counter, Labels};
use crate::route::{FreeQuota, Gate, Lookup, Offer, SignInEndpoint, Vanity};
use crate::siwx::{
    self, Credential, Identity, Origin, QuotaKey, SESSION_COOKIE, SESSION_TTL, Siwx, SiwxError,
};

/// The verified wallet of a signed-in request, as told to the upstream.
pub const VERIFIED_WALLET_HEADER: &str = "x-verified-wallet";

/// The largest `POST …/auth/verify` body.
const MAX_VERIFY_BODY: usize = 16 * 1024;

/// `POST …/auth/verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    message: String,
    signature: String,
}

/// The CAIP-2 chains an offer is paid on: those a wallet may sign in on.
fn chains(offer: &Offer) -> Vec<String> {
    let mut chains: Vec<String> = offer
        .options
        .iter()
        .map(|o| o.requirements.network.clone())
        .collect();
    chains.dedup();
    chains
}

/// Where a request signs in: its origin (the stack's, or a vanity hostname's) and the URL it
/// asked for there.
pub(super) struct At {
    origin: Origin,
    url: String,
    vanity: bool,
}

impl At {
    /// For a request: a vanity host's origin and the path as sent, else the stack's origin and
    /// the path (`X-Forwarded-Uri` first).
    pub(super) fn of(siwx: &Siwx, headers: &HeaderMap, uri: &Uri, extensions: &Extensions) -> Self {
        match extensions.get::<Vanity>() {
            Some(vanity) => Self {
                url: vanity.url(),
                origin: vanity.origin.clone(),
                vanity: true,
            },
            None => {
                let origin = siwx.origin();
                Self {
                    url: challenge::resource_url(Some(origin.as_str()), headers, uri),
                    origin,
                    vanity: false,
                }
            }
        }
    }
}

/// `obol_siwx=<token>` for the offer's path, for a day.
/// (On a vanity hostname the offer is at `/`.)
fn session_cookie(at: &At, token: &str, offer: &Offer) -> Option<HeaderValue> {
    let secure = if at.origin.as_str().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = match at.vanity {
        true => "",
        false => offer.strip_prefix.trim_end_matches('/'),
    };
    let path = if path.is_empty() { "/" } else { path };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL}{secure}"
    ))
    .ok()
}

fn sign_in_unavailable() -> Response<Body> {
    GatewayError::sign_in(
        StatusCode::SERVICE_UNAVAILABLE,
        "sign_in_unavailable",
        "this gateway has no sign-in configured".to_owned(),
    )
    .into_response()
}

/// Whom a request on an auth route is from.
pub(super) enum Authenticated {
    /// Signed in just now (a session cookie goes with the answer).
    SignedIn(Identity),
    /// A session token of an earlier sign-in.
    Session(Identity),
}

impl Authenticated {
    pub(super) fn identity(&self) -> Identity {
        match self {
            Self::SignedIn(identity) | Self::Session(identity) => *identity,
        }
    }

    /// The session cookie a fresh sign-in leaves.
    fn cookie(&self, siwx: &Siwx, at: &At, offer: &Offer) -> Option<HeaderValue> {
        let Self::SignedIn(identity) = self else {
            return None;
        };
        let (token, _) = siwx.issue(&at.origin, *identity, &offer.strip_prefix, unix_now());
        session_cookie(at, &token, offer)
    }
}

/// The 401 of an auth route, with the sign-in challenge for `at`.
fn sign_in_challenge(
    siwx: &Siwx,
    at: &At,
    offer: &Offer,
    refused: Option<&SiwxError>,
) -> Response<Body> {
    let required = challenge::payment_required(offer, at.url.clone(), None);
    siwx.challenge_response(
        &at.origin,
        required,
        &at.url,
        &chains(offer),
        refused,
        unix_now(),
    )
}

impl Shared {
    pub(super) async fn handle<S>(
        self: Arc<Self>,
        mut request: Request<Body>,
        inner: S,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        for name in IDENTITY_HEADERS {
            request.headers_mut().remove(name);
        }
        if let Err(error) = crate::path::check(request.uri().path()) {
            return GatewayError::invalid_path(error).into_response();
        }
        let (offer, gate, quota) = match self
            .routes
            .load()
            .lookup(request.method(), request.uri().path())
        {
            Lookup::Paid(offer, quota) => (offer, Gate::Paid, quota),
            Lookup::Free(offer) => (offer, Gate::Free, None),
            Lookup::Auth(offer) => (offer, Gate::Auth, None),
            Lookup::SignIn(offer, endpoint) => {
                Labels::new(&offer, None).count(Counter::Requests);
                return match self.limits.admit(&offer) {
                    Ok(admitted) => {
                        admitted.hold(self.sign_in_endpoint(request, &offer, endpoint).await)
                    }
                    Err(refused) => refused.into_response(),
                };
            }
            Lookup::MethodNotAllowed(methods) => {
                return GatewayError::method_not_allowed(methods.allow()).into_response();
            }
            Lookup::FailClosed => return GatewayError::fail_closed().into_response(),
            Lookup::NotFound => return GatewayError::not_found().into_response(),
        };
        let labels = Labels::new(&offer, None);
        labels.count(Counter::Requests);
        let admitted = match self.limits.admit(&offer) {
            Ok(admitted) => admitted,
            Err(refused) => return refused.into_response(),
        };
        if offer.mcp.is_some() {
            let upstream = tower::util::BoxCloneSyncService::new(inner);
            return admitted.hold(self.serve_mcp(request, upstream, offer).await);
        }
        let response = match gate {
            Gate::Free => {
                if let Some(identity) = self.session_of(&request, &offer) {
                    set_wallet(request.headers_mut(), identity);
                }
                proxy(request, inner, offer, Gate::Free).await
            }
            Gate::Auth => self.serve_auth(request, inner, offer).await,
            Gate::Paid => match (quota, self.config.siwx.clone()) {
                (Some(quota), Some(siwx)) => {
                    self.serve_quota(request, inner, offer, labels, &quota, &siwx)
                        .await
                }
                _ => self.serve_paid(request, inner, offer, labels, None).await,
            },
        };
        admitted.hold(response)
    }

    /// The wallet of a valid session token in `headers`, if any (a free route ignores a bad
    /// one, as the original does).
    fn session_of(&self, request: &Request<Body>, offer: &Offer) -> Option<Identity> {
        let siwx = self.config.siwx.as_ref()?;
        let token = siwx::session_token(request.headers())?;
        let origin = request
            .extensions()
            .get::<Vanity>()
            .map_or_else(|| siwx.origin(), |v| v.origin.clone());
        siwx.session(&origin, token, &offer.strip_prefix, unix_now())
            .ok()
    }

    /// Who sent a request on an auth route: a sign-in credential (checked, its nonce used
    /// up) before a session token. `Err` is the answer: the challenge (401), or 400/503.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        at: &At,
        offer: &Offer,
    ) -> Result<Authenticated, Box<Response<Body>>> {
        let Some(siwx) = &self.config.siwx else {
            return Err(Box::new(sign_in_unavailable()));
        };
        let now = unix_now();
        let chains = chains(offer);
        let outcome = match siwx::credential(headers) {
            Some(Ok(credential)) => siwx
                .sign_in(&at.origin, credential, &chains, now)
                .await
                .map(Authenticated::SignedIn),
            Some(Err(unreadable)) => Err(unreadable),
            None => match siwx::session_token(headers) {
                Some(token) => siwx
                    .session(&at.origin, token, &offer.strip_prefix, now)
                    .map(Authenticated::Session),
                None => return Err(Box::new(sign_in_challenge(siwx, at, offer, None))),
            },
        };
        outcome.map_err(|refused| {
            Labels::new(offer, None).failure(refused.reason);
            Box::new(if refused.status == StatusCode::UNAUTHORIZED {
                sign_in_challenge(siwx, at, offer, Some(&refused))
            } else {
                refused.into_gateway_error().into_response()
            })
        })
    }

    async fn serve_auth<S>(
        &self,
        mut request: Request<Body>,
        inner: S,
        offer: Arc<Offer>,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let Some(siwx) = self.config.siwx.clone() else {
            return sign_in_unavailable();
        };
        let at = At::of(
            &siwx,
            request.headers(),
            request.uri(),
            request.extensions(),
        );
        let who = match self.authenticate(request.headers(), &at, &offer).await {
            Ok(who) => who,
            Err(answer) => return *answer,
        };
        set_wallet(request.headers_mut(), who.identity());
        let cookie = who.cookie(&siwx, &at, &offer);
        let mut response = proxy(request, inner, offer, Gate::Auth).await;
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// A paid route with free calls: a payment is served as such; a signed-in wallet (a
    /// credential or a session) with calls left today is served free and told to the upstream
    /// as `X-Verified-Wallet` (a failed call is given back); anyone else gets the 402, with the
    /// sign-in challenge so that a client can sign in for its free calls. A bad credential is a
    /// 401, never a silent charge; a store that cannot count means paying, never free.
    async fn serve_quota<S>(
        self: Arc<Self>,
        mut request: Request<Body>,
        inner: S,
        offer: Arc<Offer>,
        labels: Labels,
        quota: &FreeQuota,
        siwx: &Arc<Siwx>,
    ) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
        S::Future: Send,
    {
        let at = At::of(siwx, request.headers(), request.uri(), request.extensions());
        let challenge = |offer: &Offer, exhausted| QuotaChallenge {
            extension: siwx.extension(&at.origin, &at.url, &chains(offer), unix_now()),
            exhausted,
        };
        let headers = request.headers();
        if crate::matching::extract(headers).is_some() {
            return self.serve_paid(request, inner, offer, labels, None).await;
        }
        if siwx::credential(headers).is_none() && siwx::session_token(headers).is_none() {
            let unpaid = challenge(&offer, false);
            return self
                .serve_paid(request, inner, offer, labels, Some(unpaid))
                .await;
        }
        let who = match self.authenticate(request.headers(), &at, &offer).await {
            Ok(who) => who,
            Err(answer) => return *answer,
        };
        let identity = who.identity();
        let key = QuotaKey {
            offer: quota.key.0.clone(),
            route: quota.key.1.clone(),
            wallet: identity.wallet.into_array(),
            day: unix_now() / 86_400,
        };
        match siwx.store().take_free_call(&key, quota.per_day).await {
            Ok(true) => {}
            Ok(false) => {
                let unpaid = challenge(&offer, true);
                return self
                    .serve_paid(request, inner, offer, labels, Some(unpaid))
                    .await;
            }
            Err(error) => {
                tracing::warn!(%error, "free calls cannot be counted; this call pays");
                let unpaid = challenge(&offer, false);
                return self
                    .serve_paid(request, inner, offer, labels, Some(unpaid))
                    .await;
            }
        }
        labels.count(Counter::FreeCall);
        set_wallet(request.headers_mut(), identity);
        let cookie = who.cookie(siwx, &at, &offer);
        let mut response = proxy(request, inner, offer, Gate::Auth).await;
        if response.status().as_u16() >= 400
            && let Err(error) = siwx.store().give_back(&key).await
        {
            tracing::warn!(%error, "a failed free call could not be given back");
        }
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// `GET <offer>/auth/nonce` (a challenge) and `POST <offer>/auth/verify` (a session).
    async fn sign_in_endpoint(
        &self,
        request: Request<Body>,
        offer: &Offer,
        endpoint: SignInEndpoint,
    ) -> Response<Body> {
        let Some(siwx) = &self.config.siwx else {
            return sign_in_unavailable();
        };
        let now = unix_now();
        let at = At::of(siwx, request.headers(), request.uri(), request.extensions());
        match (endpoint, request.method()) {
            (SignInEndpoint::Nonce, &Method::GET | &Method::HEAD) => {
                // The challenge is for the offer itself (`…/auth/nonce` without its suffix).
                let offer_url = at.url.trim_end_matches("/auth/nonce");
                let mut response =
                    axum::Json(siwx.extension(&at.origin, offer_url, &chains(offer), now))
                        .into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            (SignInEndpoint::Verify, &Method::POST) => {
                let body = match axum::body::to_bytes(request.into_body(), MAX_VERIFY_BODY).await {
                    Ok(body) => body,
                    Err(_) => return GatewayError::body_too_large(MAX_VERIFY_BODY).into_response(),
                };
                let Ok(VerifyBody { message, signature }) = serde_json::from_slice(&body) else {
                    return SiwxError::bad_request(
                        "expected {\"message\": <EIP-4361 text>, \"signature\": <0x hex>}",
                    )
                    .into_gateway_error()
                    .into_response();
                };
                let credential = Credential::Message {
                    text: message,
                    signature,
                };
                match siwx
                    .sign_in(&at.origin, credential, &chains(offer), now)
                    .await
                {
                    Ok(identity) => {
                        let (token, expires_at) =
                            siwx.issue(&at.origin, identity, &offer.strip_prefix, now);
                        let cookie = session_cookie(&at, &token, offer);
                        let mut response = axum::Json(json!({
                            "sessionToken": token,
                            "wallet": identity.wallet.to_checksum(None),
                            "chainId": format!("eip155:{}", identity.chain_id),
                            "expiresAt": obol_config::time::rfc3339(expires_at),
                        }))
                        .into_response();
                        let headers = response.headers_mut();
                        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        if let Some(cookie) = cookie {
                            headers.insert(header::SET_COOKIE, cookie);
                        }
                        response
                    }
                    Err(refused) => {
                        Labels::new(offer, None).failure(refused.reason);
                        let mut response = refused.into_gateway_error().into_response();
                        if response.status() == StatusCode::UNAUTHORIZED {
                            response.headers_mut().insert(
                                header::WWW_AUTHENTICATE,
                                Siwx::www_authenticate(&at.origin),
                            );
                        }
                        response
                    }
                }
            }
            (SignInEndpoint::Nonce, _) => {
                GatewayError::method_not_allowed("GET, HEAD".into()).into_response()
            }
            (SignInEndpoint::Verify, _) => {
                GatewayError::method_not_allowed("POST".into()).into_response()
            }
        }
    }
}

/// The 402 of a paid route with free calls: the sign-in challenge in `extensions`, and
/// `paymentFailure {reason: "free_quota_exhausted"}` once today's are used up.
pub(super) struct QuotaChallenge {
    extension: serde_json::Value,
    exhausted: bool,
}

impl QuotaChallenge {
    pub(super) fn response(self, offer: &Offer, resource_url: String) -> Response<Body> {
        let failure = self.exhausted.then(|| PaymentFailure {
            reason: "free_quota_exhausted",
            detail: "this wallet's free calls for today are used up".to_owned(),
            hint: Some("pay with PAYMENT-SIGNATURE; free calls start again at 00:00 UTC"),
        });
        let mut required = challenge::payment_required(offer, resource_url, failure.as_ref());
        required
            .extensions
            .get_or_insert_with(Default::default)
            .insert(siwx::SIGN_IN_WITH_X.into(), self.extension);
        challenge::response(&required)
    }
}

/// `X-Verified-Wallet: <checksummed wallet>`.
pub(super) fn set_wallet(headers: &mut HeaderMap, identity: Identity) {
    if let Ok(value) = HeaderValue::from_str(&identity.wallet.to_checksum(None)) {
        headers.insert(VERIFIED_WALLET_HEADER, value);
    }
}

/// Hands the request to the upstream service, telling it the offer and the gate.
async fn proxy<S>(
    mut request: Request<Body>,
    inner: S,
    offer: Arc<Offer>,
    gate: Gate,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send,
    S::Future: Send,
{
    request.extensions_mut().insert(offer);
    request.extensions_mut().insert(gate);
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
