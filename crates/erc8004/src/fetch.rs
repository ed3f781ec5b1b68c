//! Reading the documents agents point at, for discovery.
//!
//! agentURIs come from the chain: anyone can register anything. The fetcher only follows
//! `http`, `https` and `data:application/json;base64,` URIs, gives each request a timeout and at
//! most three redirects, stops reading at [`MAX_DOCUMENT_BYTES`], sends no credentials, and
//! reports problems with the URI escaped and truncated.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::RegisteredAgent;
use crate::document::RegistrationDocument;
use crate::registry::AgentRegistry;
use crate::{Erc8004Error, printable};

/// The largest document read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Documents fetched at the same time by [`x402_agents`].
const CONCURRENCY: usize = 8;

/// Fetches registration documents over HTTP(S) or from `data:` URIs.
#[derive(Debug, Clone)]
pub struct DocumentFetcher {
    client: reqwest::Client,
    max_bytes: usize,
}

impl DocumentFetcher {
    /// A fetcher whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, Erc8004Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("obol-erc8004/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Erc8004Error::Fetch {
                uri: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            max_bytes: MAX_DOCUMENT_BYTES,
        })
    }

    /// Caps documents at `max_bytes` instead of [`MAX_DOCUMENT_BYTES`].
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The document at `uri`, parsed and type-checked.
    pub async fn fetch(&self, uri: &str) -> Result<RegistrationDocument, Erc8004Error> {
        let bytes = self.fetch_bytes(uri).await?;
        RegistrationDocument::parse(&bytes)
    }

    async fn fetch_bytes(&self, uri: &str) -> Result<Vec<u8>, Erc8004Error> {
        let uri = uri.trim();
        let fail = |reason: String| Erc8004Error::Fetch {
            uri: printable(uri, 120),
            reason,
        };
        let (scheme, rest) = uri.split_once(':').unwrap_or(("", ""));
        match scheme.to_ascii_lowercase().as_str() {
            "data" => {
                let (media, payload) = rest
                    .split_once(',')
                    .ok_or_else(|| fail("a data: URI without a comma".to_owned()))?;
                let media = media.to_ascii_lowercase();
                if !media.ends_with(";base64") {
                    return Err(fail("only base64 data: URIs are read".to_owned()));
                }
                if payload.len() > self.max_bytes.saturating_mul(4) / 3 + 4 {
                    return Err(fail(format!("larger than {} bytes", self.max_bytes)));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(payload.trim())
                    .map_err(|e| fail(format!("bad base64: {e}")))
            }
            "http" | "https" => {
                let mut response = self
                    .client
                    .get(uri)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .map_err(|e| fail(printable(&e.without_url().to_string(), 200)))?;
                if !response.status().is_success() {
                    return Err(fail(format!("HTTP {}", response.status().as_u16())));
                }
                if response
                    .content_length()
                    .is_some_and(|n| n > self.max_bytes as u64)
                {
                    return Err(fail(format!("larger than {} bytes", self.max_bytes)));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| fail(printable(&e.without_url().to_string(), 200)))?
                {
                    if body.len() + chunk.len() > self.max_bytes {
                        return Err(fail(format!("larger than {} bytes", self.max_bytes)));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
            "" => Err(fail("not a URI".to_owned())),
            other => Err(fail(format!(
                "{}: URIs are not fetched (only http, https and data)",
                printable(other, 20)
            ))),
        }
    }
}

/// An agent whose document advertises x402 services.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredAgent {
    /// What the registry's logs say.
    pub agent: RegisteredAgent,
    /// What its agentURI serves.
    pub document: RegistrationDocument,
    /// Whether the document's `registrations[]` names this registry and agent id (it claims
    /// this identity; a copied document would not).
    pub lists_registration: bool,
}

/// Fetches every agent's document (a few at a time) and returns each outcome, in `agents`'
/// order.
pub async fn fetch_all(
    fetcher: &DocumentFetcher,
    agents: Vec<RegisteredAgent>,
) -> Vec<(RegisteredAgent, Result<RegistrationDocument, Erc8004Error>)> {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (index, agent) in agents.into_iter().enumerate() {
        let fetcher = fetcher.clone();
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = fetcher.fetch(&agent.uri).await;
            (index, agent, result)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(done) = joined {
            out.push(done);
        }
    }
    out.sort_by_key(|(index, _, _)| *index);
    out.into_iter()
        .map(|(_, agent, result)| (agent, result))
        .collect()
}

/// The agents whose documents advertise x402 services (active, `x402Support`, a service
/// endpoint), in `agents`' order. Agents whose documents cannot be fetched or parsed are left
/// out (logged at debug level, escaped).
pub async fn x402_agents(
    fetcher: &DocumentFetcher,
    registry: &AgentRegistry,
    agents: Vec<RegisteredAgent>,
) -> Vec<DiscoveredAgent> {
    fetch_all(fetcher, agents)
        .await
        .into_iter()
        .filter_map(|(agent, result)| match result {
            Ok(document) if document.advertises_x402() => {
                let lists_registration = u64::try_from(agent.agent_id)
                    .is_ok_and(|id| document.lists_registration(registry, id));
                Some(DiscoveredAgent {
                    agent,
                    document,
                    lists_registration,
                })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(agent_id = %agent.agent_id, error = %e, "agent document skipped");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_uris_and_refused_schemes() {
        let fetcher = DocumentFetcher::new(Duration::from_secs(2)).unwrap();
        let doc = RegistrationDocument::active("a", "b");
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(doc.to_json_pretty().as_bytes());
        let uri = format!("data:application/json;base64,{encoded}");
        assert_eq!(fetcher.fetch(&uri).await.unwrap(), doc);
        let small = fetcher.clone().with_max_bytes(10);
        assert!(
            small
                .fetch(&uri)
                .await
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
        let ipfs = fetcher
            .fetch("ipfs://bafy\u{1b}[2J")
            .await
            .unwrap_err()
            .to_string();
        assert!(ipfs.contains("ipfs: URIs are not fetched"), "{ipfs}");
        assert!(!ipfs.contains('\u{1b}'), "escaped: {ipfs}");
        assert!(fetcher.fetch("data:application/json,{}").await.is_err());
        assert!(fetcher.fetch("nonsense").await.is_err());
    }
}
