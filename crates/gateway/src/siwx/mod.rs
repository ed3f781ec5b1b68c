//! Sign-In-With-X (the x402 `sign-in-with-x` extension, EIP-4361 messages) for `gate: auth`
//! routes, and the session tokens that spare a signed-in agent a signature per call.
//!
//! Credentials, any of:
//! - `SIGN-IN-WITH-X: base64(JSON payload)` (the official clients' header, [`message`]);
//! - `Authorization: SIWX <base64 message>.<base64 signature>`;
//! - a session token from `POST <offer>/auth/verify` or an earlier sign-in:
//!   `Authorization: Bearer siwx1.…` or the cookie `obol_siwx`.
//!
//! A sign-in is checked, in this order, with the SDK's reasons: the chain is one the offer is
//! paid on; `domain` is the stack's public host and `uri` its origin (never the request's
//! `Host`); `issuedAt` at most [`WINDOW`] old and not ahead; `expirationTime`/`notBefore`; the
//! nonce is ours ([`keys`]) and fresh; the signature recovers to `address` (EOA) or the wallet's
//! ERC-1271 `isValidSignature` accepts it ([`ContractWallets`]); and last the nonce is marked
//! used ([`store`]) before access is granted.

pub mod keys;
pub mod message;
pub mod store;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use obol_x402::primitives::{Address, B256, Bytes, Signature};
use obol_x402::wire::v2;
use serde_json::{Value, json};
use url::Url;

pub use keys::{Identity, SessionError, SessionKey};
pub use message::SiwxPayload;
pub use store::{GatingStore, GatingStoreError, QuotaKey};

use crate::error::GatewayError;

/// The header the official clients sign in with.
pub const SIGN_IN_WITH_X: &str = "sign-in-with-x";
/// The session cookie.
pub const SESSION_COOKIE: &str = "obol_siwx";
/// How old a sign-in message (and its nonce) may be, in seconds.
pub const WINDOW: u64 = 600;
/// How long a session lasts, in seconds.
pub const SESSION_TTL: u64 = 24 * 3600;
/// Clock skew tolerated on `issuedAt` and nonces.
const SKEW: u64 = 5;
/// The ERC-6492 wrapper's magic suffix (a signature of a wallet not deployed yet).
const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// A refused sign-in: status, the SDK's reason, and what was wrong (never the credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct SiwxError {
    /// 400 (unreadable), 401 (refused) or 503 (try again).
    pub status: StatusCode,
    /// `invalid_siwx_*`, `session_*`, `siwx_*_unavailable`.
    pub reason: &'static str,
    /// Specifics.
    pub message: String,
}

impl SiwxError {
    pub(crate) fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: "invalid_siwx_header",
            message: message.into(),
        }
    }

    fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason,
            message: message.into(),
        }
    }

    /// As the gateway's error answer (400 and 503; a 401 is a challenge, see
    /// [`Siwx::challenge_response`]).
    pub fn into_gateway_error(self) -> GatewayError {
        GatewayError::sign_in(self.status, self.reason, self.message)
    }
}

/// ERC-1271 verification of contract-wallet signatures, per chain.
#[async_trait::async_trait]
pub trait ContractWallets: Send + Sync {
    /// Whether `wallet`'s `isValidSignature(hash, signature)` returns the ERC-1271 magic
    /// value on `chain_id`; `Ok(None)` when no RPC endpoint serves that chain, `Err` when the
    /// call failed (retriable).
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        wallet: Address,
        hash: B256,
        signature: Bytes,
    ) -> Result<Option<bool>, String>;
}

/// A credential a request carries.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `SIGN-IN-WITH-X`.
    Payload(Box<SiwxPayload>),
    /// `Authorization: SIWX …` or `POST …/auth/verify`: the EIP-4361 text and the hex
    /// signature.
    Message {
        /// EIP-4361 text, as signed.
        text: String,
        /// Hex signature.
        signature: String,
    },
}

/// The sign-in credential of `headers`, if any (`Err`: present but unreadable).
pub fn credential(headers: &HeaderMap) -> Option<Result<Credential, SiwxError>> {
    if let Some(value) = headers.get(SIGN_IN_WITH_X) {
        return Some(payload_credential(value));
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = authorization
        .strip_prefix("SIWX ")
        .or_else(|| authorization.strip_prefix("siwx "))?;
    Some(message_credential(encoded.trim()))
}

fn payload_credential(value: &HeaderValue) -> Result<Credential, SiwxError> {
    let json = value
        .to_str()
        .ok()
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .ok_or_else(|| SiwxError::bad_request("SIGN-IN-WITH-X is not valid base64"))?;
    let payload: SiwxPayload = serde_json::from_slice(&json).map_err(|e| {
        // Only the kind of problem: serde's message could quote the input.
        let problem = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON"
            }
            _ => "a required field is missing or has the wrong type",
        };
        SiwxError::bad_request(format!(
            "SIGN-IN-WITH-X is not a sign-in payload: {problem}"
        ))
    })?;
    Ok(Credential::Payload(Box::new(payload)))
}

fn message_credential(encoded: &str) -> Result<Credential, SiwxError> {
    let decode = |part: &str| {
        STANDARD
            .decode(part)
            .or_else(|_| URL_SAFE_NO_PAD.decode(part))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    let (text, signature) = encoded
        .split_once('.')
        .and_then(|(m, s)| Some((decode(m)?, decode(s)?)))
        .ok_or_else(|| {
            SiwxError::bad_request("Authorization: SIWX wants <base64 message>.<base64 signature>")
        })?;
    Ok(Credential::Message { text, signature })
}

/// The session token of `headers` (`Authorization: Bearer siwx1.…` or the cookie), if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| keys::is_session_token(t));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.trim())
    })
}

/// The `Cookie` header without our session cookie (`None` when nothing else is left).
pub fn cookie_without_session(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(name, _)| name.trim() != SESSION_COOKIE)
        })
        .collect();
    (!kept.is_empty())
        .then(|| HeaderValue::from_str(&kept.join("; ")).ok())
        .flatten()
}

/// Where sign-ins are accepted: an origin (`https://api.example`) and its host as EIP-4361's
/// `domain` (with the port when it is not the scheme's default, as a browser's `URL.host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    url: Url,
    host: String,
}

impl Origin {
    /// The origin of `url` (path, query and fragment dropped).
    pub fn new(url: &Url) -> Self {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let mut url = url.clone();
        url.set_path("");
        url.set_query(None);
        url.set_fragment(None);
        Self { url, host }
    }

    /// `https://<host>` (a vanity hostname's origin).
    pub fn https(host: &str) -> Option<Self> {
        Url::parse(&format!("https://{host}"))
            .ok()
            .map(|url| Self::new(&url))
    }

    /// The origin without a trailing `/`.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The host (and port), EIP-4361's `domain`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A session's audience: the offer at `offer_path` on this origin.
    fn audience(&self, offer_path: &str) -> String {
        format!("{}{}", self.as_str(), offer_path.trim_end_matches('/'))
    }
}

/// The stack's sign-in: its key, used nonces, contract-wallet verifier and public origin (an
/// offer on a vanity hostname signs in at `https://<hostname>` instead).
pub struct Siwx {
    key: SessionKey,
    store: GatingStore,
    wallets: Option<Arc<dyn ContractWallets>>,
    origin: Origin,
    /// The stack's public URL as it is now, when it may change while serving (a tunnel).
    live: Option<obol_config::public_url::SharedPublicUrl>,
}

impl std::fmt::Debug for Siwx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Siwx")
            .field("origin", &self.origin.as_str())
            .finish_non_exhaustive()
    }
}

impl Siwx {
    /// Sign-in for the stack at `origin` (its public URL: the only domain and URI accepted).
    pub fn new(key: SessionKey, store: GatingStore, origin: &Url) -> Self {
        Self {
            key,
            store,
            wallets: None,
            origin: Origin::new(origin),
            live: None,
        }
    }

    /// Follows `public_url`: sign-ins are accepted at its origin as it is at the time (the
    /// origin given to [`Siwx::new`] while it is unset).
    #[must_use]
    pub fn with_live_origin(
        mut self,
        public_url: obol_config::public_url::SharedPublicUrl,
    ) -> Self {
        self.live = Some(public_url);
        self
    }

    /// Verifies contract-wallet signatures through `wallets` (without: EOA signatures only).
    #[must_use]
    pub fn with_contract_wallets(mut self, wallets: Arc<dyn ContractWallets>) -> Self {
        self.wallets = Some(wallets);
        self
    }

    /// The used nonces and free-call counts.
    pub fn store(&self) -> &GatingStore {
        &self.store
    }

    /// The stack's origin now.
    pub fn origin(&self) -> Origin {
        self.live
            .as_ref()
            .and_then(obol_config::public_url::SharedPublicUrl::get)
            .and_then(|url| Url::parse(url.as_str()).ok())
            .map_or_else(|| self.origin.clone(), |url| Origin::new(&url))
    }

    /// The `sign-in-with-x` extension of a challenge for `uri` (a URL at `origin`), with a
    /// fresh nonce, for `chains` (CAIP-2).
    pub fn extension(&self, origin: &Origin, uri: &str, chains: &[String], now: u64) -> Value {
        json!({
            "info": {
                "domain": origin.host,
                "uri": uri,
                "version": "1",
                "nonce": self.key.nonce(now),
                "issuedAt": obol_config::time::rfc3339(now),
                "resources": [uri],
            },
            "supportedChains": chains.iter().map(|c| json!({"chainId": c, "type": "eip191"})).collect::<Vec<_>>(),
            "schema": schema(),
        })
    }

    /// `WWW-Authenticate: SIWX domain="<host>", window="600"`.
    pub fn www_authenticate(origin: &Origin) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "SIWX domain=\"{}\", window=\"{WINDOW}\"",
            origin.host
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("SIWX"))
    }

    /// The 401 of an auth route: `required` (no `accepts`) with the extension, in the body and
    /// in `PAYMENT-REQUIRED`, the reason of a refused credential, and `WWW-Authenticate`.
    pub fn challenge_response(
        &self,
        origin: &Origin,
        mut required: v2::PaymentRequired,
        uri: &str,
        chains: &[String],
        failure: Option<&SiwxError>,
        now: u64,
    ) -> Response<Body> {
        required.accepts.clear();
        required.error = Some(match failure {
            None => "Sign-in required for this resource".to_owned(),
            Some(f) => format!("Sign-in refused: {}", f.message),
        });
        required
            .extensions
            .get_or_insert_with(Default::default)
            .insert(
                SIGN_IN_WITH_X.into(),
                self.extension(origin, uri, chains, now),
            );
        let mut body = serde_json::to_value(&required).unwrap_or_default();
        if let Value::Object(map) = &mut body {
            map.insert(
                "reason".into(),
                failure.map_or("sign_in_required", |f| f.reason).into(),
            );
            map.insert(
                "hint".into(),
                "sign the sign-in-with-x challenge (EIP-4361) and send it in SIGN-IN-WITH-X, or a session token as Authorization: Bearer".into(),
            );
        }
        let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::WWW_AUTHENTICATE, Self::www_authenticate(origin));
        if let Some(value) = obol_x402::header::encode(&required)
            .ok()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(obol_x402::header::PAYMENT_REQUIRED, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// A session token for `identity` on the offer at `offer_path` of `origin`, and its end.
    pub fn issue(
        &self,
        origin: &Origin,
        identity: Identity,
        offer_path: &str,
        now: u64,
    ) -> (String, u64) {
        let token = self
            .key
            .issue(identity, &origin.audience(offer_path), now, SESSION_TTL);
        (token, now + SESSION_TTL)
    }

    /// The identity of a session token for the offer at `offer_path` of `origin`.
    pub fn session(
        &self,
        origin: &Origin,
        token: &str,
        offer_path: &str,
        now: u64,
    ) -> Result<Identity, SiwxError> {
        self.key
            .verify(token, &origin.audience(offer_path), now)
            .map(|(identity, _)| identity)
            .map_err(|e| match e {
                SessionError::Expired => {
                    SiwxError::unauthorized("session_expired", "the session token has expired")
                }
                SessionError::Invalid => SiwxError::unauthorized(
                    "session_invalid",
                    "the session token is not valid for this offer",
                ),
            })
    }

    /// Checks a sign-in at `origin` for `chains` (CAIP-2) and uses up its nonce.
    pub async fn sign_in(
        &self,
        origin: &Origin,
        credential: Credential,
        chains: &[String],
        now: u64,
    ) -> Result<Identity, SiwxError> {
        let (text, message, signature) = match credential {
            Credential::Payload(payload) => {
                let (text, message) = payload.message()?;
                (text, message, payload.signature)
            }
            Credential::Message { text, signature } => {
                let message = message::parse(&text)?;
                (text, message, signature)
            }
        };
        let chain = format!("eip155:{}", message.chain_id);
        if !chains.contains(&chain) {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_unsupported_chain",
                format!("{chain} is not a chain this offer is paid on"),
            ));
        }
        check_origin(origin, &message)?;
        let issued_nonce = self.check_times(&message, now)?;
        let wallet = Address::from(message.address);
        self.check_signature(&text, message.chain_id, wallet, &signature)
            .await?;
        let used = self
            .store
            .consume_nonce(&message.nonce, issued_nonce + WINDOW, now)
            .await
            .map_err(|e| SiwxError::unavailable("siwx_store_unavailable", e.to_string()))?;
        if !used {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_nonce",
                "this nonce was already used (replay); ask for a new challenge",
            ));
        }
        Ok(Identity {
            wallet,
            chain_id: message.chain_id,
        })
    }

    /// Checks `issuedAt`, `expirationTime`, `notBefore` and the nonce's own time; returns when
    /// the nonce was issued.
    fn check_times(&self, message: &siwe::Message, now: u64) -> Result<u64, SiwxError> {
        let unix = |t: &siwe::TimeStamp| t.as_ref().unix_timestamp();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let issued = unix(&message.issued_at);
        if issued > now_i + SKEW as i64 {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_issued_at_in_future",
                "issuedAt is in the future",
            ));
        }
        if now_i - issued > WINDOW as i64 {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_issued_at_too_old",
                format!("the message is older than {WINDOW} s; sign a new challenge"),
            ));
        }
        if message
            .expiration_time
            .as_ref()
            .is_some_and(|t| unix(t) <= now_i)
        {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_expired",
                "the message has expired",
            ));
        }
        if message.not_before.as_ref().is_some_and(|t| unix(t) > now_i) {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_not_yet_valid",
                "notBefore is in the future",
            ));
        }
        self.key
            .nonce_issued(&message.nonce)
            .filter(|&t| t <= now + SKEW && now.saturating_sub(t) <= WINDOW)
            .ok_or_else(|| {
                SiwxError::unauthorized(
                    "invalid_siwx_nonce",
                    "the nonce is not one this stack issued in the last 10 minutes",
                )
            })
    }

    async fn check_signature(
        &self,
        text: &str,
        chain_id: u64,
        wallet: Address,
        signature: &str,
    ) -> Result<(), SiwxError> {
        let bytes = signature
            .strip_prefix("0x")
            .and_then(|hex| {
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>()
            })
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                SiwxError::unauthorized(
                    "invalid_siwx_malformed_signature",
                    "the signature is not 0x-prefixed hex",
                )
            })?;
        if bytes.ends_with(&ERC6492_MAGIC) {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_signature",
                "ERC-6492 signatures (wallets not deployed yet) are not accepted; deploy the wallet first",
            ));
        }
        if bytes.len() == 65
            && Signature::try_from(bytes.as_slice())
                .ok()
                .and_then(|s| s.recover_address_from_msg(text.as_bytes()).ok())
                == Some(wallet)
        {
            return Ok(());
        }
        let Some(wallets) = &self.wallets else {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_signature",
                "the signature does not recover to the address",
            ));
        };
        let hash = obol_x402::primitives::eip191_hash_message(text.as_bytes());
        match wallets
            .is_valid_signature(chain_id, wallet, hash, Bytes::from(bytes))
            .await
        {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => Err(SiwxError::unauthorized(
                "invalid_siwx_signature",
                "the signature does not recover to the address, and the address is no contract wallet accepting it (ERC-1271)",
            )),
            Ok(None) => Err(SiwxError::unauthorized(
                "invalid_siwx_verifier_error",
                format!(
                    "the signature is not the address's own, and no RPC endpoint for chain {chain_id} can ask its contract wallet"
                ),
            )),
            Err(e) => Err(SiwxError::unavailable(
                "siwx_verifier_unavailable",
                format!("asking the contract wallet failed: {e}"),
            )),
        }
    }
}

/// The message is for `origin`: its `domain` the host, its `uri` below the origin.
fn check_origin(origin: &Origin, message: &siwe::Message) -> Result<(), SiwxError> {
    let domain = message.domain.to_string();
    if domain != origin.host {
        return Err(SiwxError::unauthorized(
            "invalid_siwx_domain_mismatch",
            format!("domain must be {}", origin.host),
        ));
    }
    let same_origin =
        Url::parse(message.uri.as_str()).is_ok_and(|uri| uri.origin() == origin.url.origin());
    if !same_origin {
        return Err(SiwxError::unauthorized(
            "invalid_siwx_uri_mismatch",
            format!("uri must be below {}", origin.as_str()),
        ));
    }
    Ok(())
}

/// The payload's JSON Schema, as the official server declares it.
fn schema() -> Value {
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "domain": string, "address": string, "statement": string,
            "uri": {"type": "string", "format": "uri"}, "version": string, "chainId": string,
            "type": string, "nonce": string, "issuedAt": time, "expirationTime": time,
            "notBefore": time, "requestId": string,
            "resources": {"type": "array", "items": {"type": "string", "format": "uri"}},
            "signature": string
        },
        "required": ["domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt", "signature"]
    })
}

#[cfg(test)]
mod tests {
    use obol_config::PublicUrl;
    use obol_config::public_url::SharedPublicUrl;

    use super::*;

    #[test]
    fn a_live_origin_follows_the_public_url() {
        let dir = tempfile::tempdir().unwrap();
        let key = SessionKey::load_or_create(&dir.path().join("key")).unwrap();
        let start = Url::parse("http://127.0.0.1:8080").unwrap();
        let live = SharedPublicUrl::default();
        let siwx = Siwx::new(key, GatingStore::in_memory().unwrap(), &start)
            .with_live_origin(live.clone());
        assert_eq!(
            siwx.origin().as_str(),
            "http://127.0.0.1:8080",
            "unset: the start"
        );
        live.replace(PublicUrl::tunnel("https://a-b.trycloudflare.com").unwrap());
        let origin = siwx.origin();
        assert_eq!(
            (origin.as_str(), origin.host()),
            ("https://a-b.trycloudflare.com", "a-b.trycloudflare.com")
        );
    }
}
