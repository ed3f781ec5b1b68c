//! Publishing a tunnel's URL: it becomes the stack's public URL (the one [`SharedPublicUrl`]
//! the paygate, storefront, sign-in and reconciler read), unless the operator pinned one with
//! `--public-url` or `OBOL_PUBLIC_URL`; and every agent the stack recorded on a chain it can
//! write gets `setAgentURI` to the new registration document (one update at a time, the
//! latest URL winning).

use std::sync::{Arc, Mutex};

use obol_config::public_url::SharedPublicUrl;
use obol_config::{NetworksFile, Paths, PublicUrl, env, text::printable};
use obol_control::identity::{AgentIdentitySpec, ChainRegistration, DEFAULT_IDENTITY};
use obol_control::registration::agent_uri;
use obol_control::{Store, StoreExt};
use obol_erc8004::{ClientOptions, Ensured, IdentityClient, Registries, U256};
use serde::{Deserialize, Serialize};

/// What happened to one recorded agent's URI after the public URL changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUriUpdate {
    /// The chain as recorded.
    pub chain: String,
    /// The agent id.
    pub agent_id: String,
    /// The agentURI wanted.
    pub uri: String,
    /// `updated` (`setAgentURI` sent), `unchanged`, `skipped` (why in `detail`) or `failed`.
    pub state: String,
    /// The `setAgentURI` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Publishes the tunnel's URL (or takes it back).
#[derive(Clone)]
pub(crate) struct Publisher {
    live: SharedPublicUrl,
    /// The public URL the stack resolved at start (flag, environment, settings or the local
    /// default): what comes back when the tunnel stops.
    configured: PublicUrl,
    agents: tokio::sync::watch::Sender<Option<String>>,
    updates: Arc<Mutex<Vec<AgentUriUpdate>>>,
}

impl Publisher {
    /// A publisher over `live`, whose URL at start is `configured`; agent URIs are updated by
    /// the task [`Publisher::agent_task`] returns.
    pub(crate) fn new(
        live: SharedPublicUrl,
        configured: PublicUrl,
        agents: AgentUris,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = tokio::sync::watch::channel(None::<String>);
        let updates = Arc::new(Mutex::new(Vec::new()));
        let task = agents.run(rx, updates.clone());
        (
            Self {
                live,
                configured,
                agents: tx,
                updates,
            },
            task,
        )
    }

    /// Why a tunnel's URL is not published, when the operator pinned the public URL.
    pub(crate) fn pinned(&self) -> Option<String> {
        self.configured.source().is_pinned().then(|| {
            format!(
                "the public URL is pinned to {} (--public-url or {}): the tunnel's URL is not \
                 published",
                self.configured,
                env::PUBLIC_URL
            )
        })
    }

    /// The stack's public URL now.
    pub(crate) fn current(&self) -> String {
        self.live
            .get()
            .map(|url| url.to_string())
            .unwrap_or_default()
    }

    /// Makes `url` (a tunnel's, already checked) the public URL unless it is pinned; true when
    /// it is published.
    pub(crate) fn publish(&self, url: &str) -> bool {
        if self.configured.source().is_pinned() {
            return false;
        }
        match PublicUrl::tunnel(url) {
            Ok(tunnel) => {
                self.set(tunnel);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the tunnel's URL is not a public URL; not published");
                false
            }
        }
    }

    /// The tunnel stopped: the configured public URL comes back.
    pub(crate) fn withdraw(&self) {
        self.set(self.configured.clone());
    }

    fn set(&self, url: PublicUrl) {
        let publishable = !url.is_local_default();
        let base = url.to_string();
        if self.live.replace(url) {
            tracing::info!(public_url = %base, "the stack's public URL changed");
            if publishable {
                let _ = self.agents.send(Some(base));
            }
        }
    }

    /// The agent URI updates of the last change.
    pub(crate) fn agent_updates(&self) -> Vec<AgentUriUpdate> {
        self.updates.lock().map(|u| u.clone()).unwrap_or_default()
    }
}

/// Where the recorded agents are and what may write to their chains.
pub(crate) struct AgentUris {
    pub(crate) paths: Paths,
    pub(crate) store: Arc<dyn Store>,
}

impl AgentUris {
    /// Updates the agents for each new base URL until the publisher is dropped.
    async fn run(
        self,
        mut rx: tokio::sync::watch::Receiver<Option<String>>,
        updates: Arc<Mutex<Vec<AgentUriUpdate>>>,
    ) {
        while rx.changed().await.is_ok() {
            let Some(base) = rx.borrow_and_update().clone() else {
                continue;
            };
            let done = self.update_all(&base).await;
            for update in &done {
                tracing::info!(chain = %update.chain, agent_id = %update.agent_id, state = %update.state, detail = update.detail.as_deref().unwrap_or(""), "agentURI");
            }
            if let Ok(mut slot) = updates.lock() {
                *slot = done;
            }
        }
    }

    async fn update_all(&self, base: &str) -> Vec<AgentUriUpdate> {
        let registrations = match self
            .store
            .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
            .await
        {
            Ok(identity) => identity.map(|i| i.status.registrations).unwrap_or_default(),
            Err(error) => {
                tracing::error!(%error, "cannot read the agent identity; agentURIs not updated");
                return Vec::new();
            }
        };
        let uri = agent_uri(base);
        let mut out = Vec::new();
        for registration in registrations {
            let (state, tx_hash, detail) = match self.update(&registration, &uri).await {
                Ok(Some(tx)) => ("updated", Some(tx), None),
                Ok(None) => ("unchanged", None, None),
                Err(Outcome::Skipped(why)) => ("skipped", None, Some(why)),
                Err(Outcome::Failed(why)) => ("failed", None, Some(why)),
            };
            out.push(AgentUriUpdate {
                chain: registration.chain.clone(),
                agent_id: registration.agent_id.clone(),
                uri: uri.clone(),
                state: state.to_owned(),
                tx_hash,
                detail,
            });
        }
        out
    }

    /// `Ok(Some(tx))`: updated; `Ok(None)`: the agent points there already.
    async fn update(
        &self,
        registration: &ChainRegistration,
        uri: &str,
    ) -> Result<Option<String>, Outcome> {
        let chain = &registration.chain;
        let by_hand = format!("update it with `obol sell register --chain {chain}`");
        let networks = NetworksFile::load(&self.paths.networks_file())
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let Some(config) = networks.get(chain) else {
            return Err(Outcome::Skipped(format!(
                "no RPC endpoint for {chain}; {by_hand}"
            )));
        };
        if !config.endpoints.iter().any(|e| e.allow_writes) {
            return Err(Outcome::Skipped(format!(
                "no write-enabled RPC endpoint for {chain} (`obol network add {chain} --endpoint \
                 URL --allow-writes`); {by_hand}"
            )));
        }
        let client = obol_chain::ChainClient::connect(chain, config)
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let Some(registry) = Registries::builtin().get(client.chain_id()) else {
            return Err(Outcome::Skipped(format!(
                "no ERC-8004 Identity Registry is known on {chain}"
            )));
        };
        let signer = match obol_wallet::signer_without_prompt(&self.paths) {
            Ok(Some(signer)) => signer,
            Ok(None) => {
                return Err(Outcome::Skipped(format!(
                    "the daemon has no signer without a prompt (start it with {} or {} set); \
                     {by_hand}",
                    env::PRIVATE_KEY,
                    env::WALLET_PASSWORD
                )));
            }
            Err(e) => return Err(Outcome::Failed(e.to_string())),
        };
        let agent_id = U256::from_str_radix(registration.agent_id.trim(), 10).map_err(|_| {
            Outcome::Failed(format!(
                "the recorded agent id {:?} is not a number",
                printable(&registration.agent_id, 40)
            ))
        })?;
        let ensured = IdentityClient::new(client, registry)
            .map_err(|e| Outcome::Failed(e.to_string()))?
            .with_signer(&signer)
            .with_options(ClientOptions::brief())
            .ensure_registered(Some(agent_id), uri, None)
            .await
            .map_err(|e| Outcome::Failed(format!("{e}; {by_hand}")))?;
        Ok(match ensured {
            Ensured::UriUpdated { tx_hash, .. } => Some(tx_hash.to_string()),
            Ensured::Registered(r) => Some(r.tx_hash.to_string()),
            _ => None,
        })
    }
}

enum Outcome {
    Skipped(String),
    Failed(String),
}
