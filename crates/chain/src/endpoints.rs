//! A JSON-RPC transport over several endpoints of one chain.
//!
//! Requests try the endpoints in their configured order. A transport failure, an HTTP 5xx,
//! 408 or 429, a response that is not JSON-RPC, or a timeout moves on to the next endpoint; a
//! JSON-RPC error answer is returned as is (another node would say the same). Write methods only
//! ever reach endpoints marked `allowWrites`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::http::Http;
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use tower::Service;

use crate::RpcUrl;

/// Methods that change chain state and are refused on read-only endpoints.
const WRITE_METHODS: [&str; 3] = [
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_sendRawTransactionSync",
];

/// True for JSON-RPC methods that send transactions.
pub fn is_write_method(method: &str) -> bool {
    WRITE_METHODS.contains(&method)
}

/// Default budget of one request to one endpoint.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Member {
    url: RpcUrl,
    allow_writes: bool,
    http: Http<alloy::transports::http::reqwest::Client>,
}

struct Inner {
    chain: String,
    members: Vec<Member>,
    timeout: Duration,
}

/// The endpoints of one chain as one transport. Cheap to clone.
#[derive(Clone)]
pub struct EndpointSet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet")
            .field("chain", &self.inner.chain)
            .field(
                "endpoints",
                &self
                    .inner
                    .members
                    .iter()
                    .map(|m| &m.url)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl EndpointSet {
    /// Endpoints `(url, allow_writes)` of `chain`, tried in order.
    pub fn new(
        chain: impl Into<String>,
        endpoints: Vec<(RpcUrl, bool)>,
        timeout: Duration,
    ) -> Self {
        let members = endpoints
            .into_iter()
            .map(|(url, allow_writes)| Member {
                http: Http::new(url.expose().clone()),
                url,
                allow_writes,
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                chain: chain.into(),
                members,
                timeout,
            }),
        }
    }

    /// True when every endpoint is on this machine.
    pub fn all_loopback(&self) -> bool {
        self.inner.members.iter().all(|m| m.url.is_loopback())
    }

    async fn dispatch(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let inner = &self.inner;
        let writes: Vec<&str> = request
            .method_names()
            .filter(|m| is_write_method(m))
            .collect();
        let candidates: Vec<&Member> = inner
            .members
            .iter()
            .filter(|m| writes.is_empty() || m.allow_writes)
            .collect();
        if candidates.is_empty() {
            let reason = if writes.is_empty() {
                format!("no RPC endpoint configured for {}", inner.chain)
            } else {
                format!(
                    "{} refused: no endpoint of {chain} allows writes (endpoints are read-only unless added with --allow-writes); add one with `obol network add {chain} --endpoint URL --allow-writes`",
                    writes.join(", "),
                    chain = inner.chain
                )
            };
            return Err(TransportErrorKind::custom_str(&reason));
        }
        let mut failures = Vec::new();
        for member in candidates {
            let mut http = member.http.clone();
            match tokio::time::timeout(inner.timeout, http.call(request.clone())).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) if !is_transient(&error) => return Err(error),
                Ok(Err(error)) => {
                    failures.push(format!(
                        "{}: {}",
                        member.url,
                        member.url.scrub(&obol_config::errors::chain(&error))
                    ));
                }
                Err(_) => failures.push(format!(
                    "{}: no answer within {:?}",
                    member.url, inner.timeout
                )),
            }
        }
        Err(TransportErrorKind::custom_str(&format!(
            "every RPC endpoint of {} failed: {}",
            inner.chain,
            failures.join("; ")
        )))
    }
}

/// Whether another endpoint might succeed where this one failed.
fn is_transient(error: &TransportError) -> bool {
    match error {
        // The node answered with a JSON-RPC error: the request itself is the problem.
        TransportError::ErrorResp(_) => false,
        TransportError::Transport(kind) => is_transient_transport(kind),
        _ => true,
    }
}

/// Whether a transport failure may pass on retry (or on another endpoint): anything but an HTTP
/// answer other than 5xx, 408 or 429.
pub fn is_transient_transport(kind: &TransportErrorKind) -> bool {
    match kind {
        TransportErrorKind::HttpError(http) => {
            http.status >= 500 || http.status == 408 || http.status == 429
        }
        _ => true,
    }
}

impl Service<RequestPacket> for EndpointSet {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().dispatch(request))
    }
}
