//! Reading the documents agents point at, and the catalogs they advertise, for discovery.
//!
//! agentURIs come from the chain: anyone can register anything. The fetcher only follows
//! `http`, `https` and `data:application/json;base64,` URIs, gives each request a timeout and at
//! most three redirects, stops reading at [`MAX_DOCUMENT_BYTES`], sends no credentials, and
//! reports problems with the URI escaped and truncated. With [`AddressPolicy::PublicOnly`] it
//! contacts public addresses only ([`crate::net`]), and directly: a proxy configured in the
//! environment is not used. [`fetch_all`], [`x402_agents`] and [`fetch_urls`] work a few at a
//! time ([`CONCURRENCY`]) and stop at a deadline: what is not done by then is
//! [`Erc8004Error::FetchTimedOut`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::RegisteredAgent;
use crate::document::RegistrationDocument;
use crate::net::{AddressPolicy, NonPublicHost, PublicOnlyResolver, is_non_public_error};
use crate::registry::AgentRegistry;
use crate::{Erc8004Error, printable};

/// The largest document read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Requests in flight at once in [`fetch_all`], [`x402_agents`] and [`fetch_urls`].
pub const CONCURRENCY: usize = 8;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 3;

/// How long an escaped URI in an error may be.
const URI_CHARS: usize = 120;

/// Fetches registration documents over HTTP(S) or from `data:` URIs, and other small JSON
/// documents over HTTP(S).
#[derive(Debug, Clone)]
pub struct DocumentFetcher {
    client: reqwest::Client,
    max_bytes: usize,
    policy: AddressPolicy,
}

impl DocumentFetcher {
    /// A fetcher whose requests time out after `timeout`, contacting any host (for URLs the
    /// user gave).
    pub fn new(timeout: Duration) -> Result<Self, Erc8004Error> {
        Self::with_policy(timeout, AddressPolicy::Any)
    }

    /// A fetcher whose requests time out after `timeout`, contacting only the hosts `policy`
    /// allows (also after redirects). [`AddressPolicy::Any`] honours a proxy configured in the
    /// environment; [`AddressPolicy::PublicOnly`] connects directly, ignoring it.
    pub fn with_policy(timeout: Duration, policy: AddressPolicy) -> Result<Self, Erc8004Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("obol-erc8004/", env!("CARGO_PKG_VERSION")));
        builder = match policy {
            AddressPolicy::Any => {
                builder.redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            }
            // No proxy from the environment: a proxy would resolve the names itself, past the
            // resolver's check, and may reach internal hosts the checks exist to keep out.
            AddressPolicy::PublicOnly => builder
                .no_proxy()
                .dns_resolver(PublicOnlyResolver)
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else if crate::net::is_non_public_literal(attempt.url()) {
                        let host = attempt.url().host_str().unwrap_or_default().to_owned();
                        attempt.error(NonPublicHost { host })
                    } else {
                        attempt.follow()
                    }
                })),
        };
        let client = builder.build().map_err(|e| Erc8004Error::Fetch {
            uri: String::new(),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self {
            client,
            max_bytes: MAX_DOCUMENT_BYTES,
            policy,
        })
    }

    /// Caps documents at `max_bytes` instead of [`MAX_DOCUMENT_BYTES`].
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Which hosts it contacts.
    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// The document at `uri`, parsed and type-checked.
    pub async fn fetch(&self, uri: &str) -> Result<RegistrationDocument, Erc8004Error> {
        let bytes = self.fetch_bytes(uri).await?;
        RegistrationDocument::parse(&bytes)
    }

    async fn fetch_bytes(&self, uri: &str) -> Result<Vec<u8>, Erc8004Error> {
        let uri = uri.trim();
        let fail = |reason: String| Erc8004Error::Fetch {
            uri: printable(uri, URI_CHARS),
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
            "http" | "https" => self.fetch_http(uri, self.max_bytes).await,
            "" => Err(fail("not a URI".to_owned())),
            other => Err(fail(format!(
                "{}: URIs are not fetched (only http, https and data)",
                printable(other, 20)
            ))),
        }
    }

    /// The body of an `http(s)` GET of `url` (asking for JSON), at most `max_bytes`, within the
    /// policy. Non-2xx answers, oversized bodies, refused hosts
    /// ([`Erc8004Error::NonPublicAddress`]) and timeouts ([`Erc8004Error::FetchTimedOut`]) are
    /// errors.
    pub async fn fetch_http(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, Erc8004Error> {
        let url = url.trim();
        let fail = |reason: String| Erc8004Error::Fetch {
            uri: printable(url, URI_CHARS),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(fail("only http and https are fetched".to_owned()));
        }
        if self.policy == AddressPolicy::PublicOnly && crate::net::is_non_public_literal(&parsed) {
            return Err(self.non_public(url));
        }
        let mut response = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.request_error(url, e))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status().as_u16())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(fail(format!("larger than {max_bytes} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(url, e))?
        {
            if body.len() + chunk.len() > max_bytes {
                return Err(fail(format!("larger than {max_bytes} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn non_public(&self, url: &str) -> Erc8004Error {
        Erc8004Error::NonPublicAddress {
            uri: printable(url, URI_CHARS),
        }
    }

    /// A failed request: a refused host, a timeout, or what reqwest says (escaped).
    fn request_error(&self, url: &str, error: reqwest::Error) -> Erc8004Error {
        let error = error.without_url();
        if is_non_public_error(&error) {
            self.non_public(url)
        } else if error.is_timeout() {
            Erc8004Error::FetchTimedOut {
                uri: printable(url, URI_CHARS),
            }
        } else {
            let reason = obol_config::errors::chain(&error);
            Erc8004Error::Fetch {
                uri: printable(url, URI_CHARS),
                reason: printable(&reason, 200),
            }
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

/// What [`x402_agents`] found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// The agents whose documents advertise x402 services, in the input order.
    pub agents: Vec<DiscoveredAgent>,
    /// The agents whose documents could not be read (timed out, refused host, unreachable,
    /// invalid), with why, in the input order. Agents whose documents were read but advertise
    /// no x402 service (tombstones, other agents) are in neither list.
    pub unreadable: Vec<(RegisteredAgent, Erc8004Error)>,
}

/// Runs `work` on every item, [`CONCURRENCY`] at a time, until `deadline`: the outcomes in
/// `items`' order, `None` for the ones not finished by then.
async fn bounded<I, T, F, Fut>(items: Vec<I>, deadline: Instant, work: F) -> Vec<Option<T>>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let deadline = tokio::time::Instant::from_std(deadline);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let count = items.len();
    for (index, item) in items.into_iter().enumerate() {
        let job = work(item);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let done = tokio::time::timeout_at(deadline, async move {
                let _permit = permits.acquire_owned().await;
                job.await
            })
            .await
            .ok();
            (index, done)
        });
    }
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(count).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, Some(done))) = joined
            && let Some(slot) = out.get_mut(index)
        {
            *slot = Some(done);
        }
    }
    out
}

/// Fetches every agent's document ([`CONCURRENCY`] at a time, until `deadline`) and returns
/// each outcome, in `agents`' order; a fetch not done by the deadline is
/// [`Erc8004Error::FetchTimedOut`].
pub async fn fetch_all(
    fetcher: &DocumentFetcher,
    agents: Vec<RegisteredAgent>,
    deadline: Instant,
) -> Vec<(RegisteredAgent, Result<RegistrationDocument, Erc8004Error>)> {
    let uris: Vec<String> = agents.iter().map(|a| a.uri.clone()).collect();
    let outcomes = bounded(uris, deadline, |uri| {
        let fetcher = fetcher.clone();
        async move { fetcher.fetch(&uri).await }
    })
    .await;
    agents
        .into_iter()
        .zip(outcomes)
        .map(|(agent, outcome)| {
            let result = outcome.unwrap_or_else(|| {
                Err(Erc8004Error::FetchTimedOut {
                    uri: printable(agent.uri.trim(), URI_CHARS),
                })
            });
            (agent, result)
        })
        .collect()
}

/// GETs every `http(s)` URL ([`DocumentFetcher::fetch_http`], at most `max_bytes` each,
/// [`CONCURRENCY`] at a time, until `deadline`): each URL with its outcome, in `urls`' order.
pub async fn fetch_urls(
    fetcher: &DocumentFetcher,
    urls: Vec<String>,
    max_bytes: usize,
    deadline: Instant,
) -> Vec<(String, Result<Vec<u8>, Erc8004Error>)> {
    let outcomes = bounded(urls.clone(), deadline, |url| {
        let fetcher = fetcher.clone();
        async move { fetcher.fetch_http(&url, max_bytes).await }
    })
    .await;
    urls.into_iter()
        .zip(outcomes)
        .map(|(url, outcome)| {
            let result = outcome.unwrap_or_else(|| {
                Err(Erc8004Error::FetchTimedOut {
                    uri: printable(url.trim(), URI_CHARS),
                })
            });
            (url, result)
        })
        .collect()
}

/// Sorts the agents by their documents (fetched as [`fetch_all`] does, until `deadline`): the
/// ones advertising x402 services (active, `x402Support`, a service endpoint), and the ones
/// whose documents could not be read.
pub async fn x402_agents(
    fetcher: &DocumentFetcher,
    registry: &AgentRegistry,
    agents: Vec<RegisteredAgent>,
    deadline: Instant,
) -> Discovery {
    let mut found = Discovery::default();
    for (agent, result) in fetch_all(fetcher, agents, deadline).await {
        match result {
            Ok(document) if document.advertises_x402() => {
                let lists_registration = u64::try_from(agent.agent_id)
                    .is_ok_and(|id| document.lists_registration(registry, id));
                found.agents.push(DiscoveredAgent {
                    agent,
                    document,
                    lists_registration,
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(agent_id = %agent.agent_id, error = %e, "agent document unreadable");
                found.unreadable.push((agent, e));
            }
        }
    }
    found
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
