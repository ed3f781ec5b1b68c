//! Upstream MCP servers that proxying offers (`spec.mcp.upstream: mcp`) forward to: one rmcp
//! client per offer and upstream URL, opened on first use with the seller's credential, kept
//! across calls, and dropped when its connection fails (the next call opens a new one).
//! No money here: the paygate decides whether a call is paid and settles after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt as _};
use tokio::sync::Mutex;

use crate::proxy::UpstreamAuth;
use crate::route::Offer;

/// How long opening a connection (the MCP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream MCP server could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No connection could be opened.
    #[error("cannot reach the upstream MCP server: {0}")]
    Connect(String),
    /// The request failed on an open connection (or timed out).
    #[error("the upstream MCP server failed: {0}")]
    Call(String),
}

type Client = RunningService<RoleClient, ()>;

/// An open connection and the credential it was opened with.
struct Open {
    auth: Option<UpstreamAuth>,
    client: Arc<Client>,
}

/// The open connections to upstream MCP servers.
pub struct Upstreams {
    http: reqwest::Client,
    timeout: Duration,
    open: Mutex<HashMap<String, Open>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// No connection yet; each request waits at most `timeout` for its answer.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            timeout,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn key(offer: &Offer) -> String {
        format!("{}/{} {}", offer.namespace, offer.name, offer.upstream)
    }

    /// The open connection for `offer`, or a new one.
    async fn client(&self, offer: &Offer) -> Result<Arc<Client>, UpstreamError> {
        let key = Self::key(offer);
        {
            let open = self.open.lock().await;
            if let Some(found) = open.get(&key)
                && found.auth == offer.upstream_auth
                && !found.client.is_closed()
            {
                return Ok(found.client.clone());
            }
        }
        // Connected without the lock: a slow upstream never holds up another offer's calls
        // (two calls racing to connect both do; the later one's connection is kept).
        let mut headers = HeaderMap::new();
        if let Some(auth) = &offer.upstream_auth {
            auth.apply(&mut headers);
        }
        let custom: HashMap<HeaderName, HeaderValue> = headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let config = StreamableHttpClientTransportConfig::with_uri(offer.upstream.as_str())
            .custom_headers(custom);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport)).await {
            Err(_) => {
                return Err(UpstreamError::Connect(format!(
                    "no handshake within {CONNECT_TIMEOUT:?}"
                )));
            }
            Ok(Err(error)) => return Err(UpstreamError::Connect(error.to_string())),
            Ok(Ok(client)) => Arc::new(client),
        };
        self.open.lock().await.insert(
            key,
            Open {
                auth: offer.upstream_auth.clone(),
                client: client.clone(),
            },
        );
        Ok(client)
    }

    /// Forgets `offer`'s connection after it failed.
    async fn drop_client(&self, offer: &Offer) {
        self.open.lock().await.remove(&Self::key(offer));
    }

    /// The failure of a request as seen from here; the connection is dropped unless the
    /// server itself answered with an error.
    async fn failed(&self, offer: &Offer, error: Result<ServiceError, Duration>) -> UpstreamError {
        let message = match error {
            Ok(ServiceError::McpError(error)) => return UpstreamError::Call(error.message.into()),
            Ok(error) => error.to_string(),
            Err(timeout) => format!("no answer within {timeout:?}"),
        };
        self.drop_client(offer).await;
        UpstreamError::Call(message)
    }

    /// Every tool of `offer`'s upstream (asked again on a new connection once if the open one
    /// failed: listing has no effect to repeat).
    pub async fn list(&self, offer: &Offer) -> Result<Vec<Tool>, UpstreamError> {
        let mut last = None;
        for _ in 0..2 {
            let client = self.client(offer).await?;
            match tokio::time::timeout(self.timeout, client.list_all_tools()).await {
                Ok(Ok(tools)) => return Ok(tools),
                Ok(Err(error)) => last = Some(self.failed(offer, Ok(error)).await),
                Err(_) => last = Some(self.failed(offer, Err(self.timeout)).await),
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Call("no answer".into())))
    }

    /// Calls `name` on `offer`'s upstream with `arguments`, once (a call is never repeated:
    /// the upstream may have acted on it).
    pub async fn call(
        &self,
        offer: &Offer,
        name: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, UpstreamError> {
        let client = self.client(offer).await?;
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        match tokio::time::timeout(self.timeout, client.call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(self.failed(offer, Ok(error)).await),
            Err(_) => Err(self.failed(offer, Err(self.timeout)).await),
        }
    }
}
