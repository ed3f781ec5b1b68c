//! Sign-In-With-X for the gateway's `auth` routes: the key in `<config>/siwx-session.key`,
//! used nonces and free calls in `<data>/gating.sqlite` (or the PostgreSQL payment store, for
//! replicas), the public URL as the only accepted origin, and
//! contract-wallet (ERC-1271) checks over the chains of the networks file.

use std::collections::HashMap;
use std::sync::Arc;

use obol_chain::ChainClient;
use obol_config::{NetworksFile, Paths, PublicUrl};
use obol_gateway::siwx::{ContractWallets, GatingStore, SessionKey, Siwx};
use obol_x402::primitives::{Address, B256, Bytes};

use crate::DaemonError;

/// A client per configured chain, by chain id.
struct ChainWallets {
    clients: HashMap<u64, ChainClient>,
}

#[async_trait::async_trait]
impl ContractWallets for ChainWallets {
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        wallet: Address,
        hash: B256,
        signature: Bytes,
    ) -> Result<Option<bool>, String> {
        let Some(client) = self.clients.get(&chain_id) else {
            return Ok(None);
        };
        client
            .is_valid_signature(wallet, hash, signature)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// The stack's sign-in; its store in the PostgreSQL database `shared` names (gateway
/// replicas), else in `<data>/gating.sqlite`. Sign-ins follow `live` (the public URL as a
/// tunnel changes it); `public_url` is the one at start.
pub(crate) async fn build(
    paths: &Paths,
    public_url: &PublicUrl,
    shared: Option<&str>,
    live: obol_config::public_url::SharedPublicUrl,
) -> Result<Arc<Siwx>, DaemonError> {
    let start = |e: &dyn std::fmt::Display| DaemonError::Start(format!("sign-in: {e}"));
    let key = SessionKey::load_or_create(&paths.siwx_key_file())?;
    let store = match shared {
        Some(url) => GatingStore::postgres(url).await,
        None => GatingStore::open(&paths.gating_file()),
    }
    .map_err(|e| start(&e))?;
    let origin = url::Url::parse(public_url.as_str()).map_err(|e| start(&e))?;
    let networks = NetworksFile::load(&paths.networks_file())?;
    let mut clients = HashMap::new();
    for (name, config) in &networks.chains {
        match ChainClient::connect(name, config) {
            Ok(client) => {
                clients.insert(client.chain_id(), client);
            }
            Err(error) => {
                tracing::warn!(chain = %name, %error, "contract-wallet sign-ins on this chain cannot be checked");
            }
        }
    }
    Ok(Arc::new(
        Siwx::new(key, store, &origin)
            .with_contract_wallets(Arc::new(ChainWallets { clients }))
            .with_live_origin(live),
    ))
}
