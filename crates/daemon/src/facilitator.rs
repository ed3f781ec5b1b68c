//! The daemon's facilitator, from the stack settings.

use std::sync::Arc;

use async_trait::async_trait;
use obol_chain::ChainClient;
use obol_config::stack::{DEFAULT_FACILITATOR_CHAINS, DEFAULT_FACILITATOR_URL, FacilitatorSetting};
use obol_config::{NetworksFile, Paths, env};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::http::{ClientOptions, RemoteFacilitator};
use obol_facilitator::{EvmFacilitator, Facilitator, FacilitatorConfig, FacilitatorError};
use obol_wallet::{PasswordSource, SignerSource, WalletStore, read_password};
use obol_x402::LocalSigner;
use obol_x402::network;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse,
};
use serde::{Deserialize, Serialize};

use crate::DaemonError;

/// Which facilitator serves which chains (`obol stack status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorSummary {
    /// Its URL (`embedded` for the in-process one).
    pub url: String,
    /// `default` (none configured), `settings` (`{"url": …}`) or `embedded`.
    pub source: String,
    /// CAIP-2 chains it is used for; empty: whatever the remote supports.
    pub chains: Vec<String>,
}

/// The facilitator used when the settings name none: the default remote, asked only about the
/// chains it serves; a payment on another chain is refused here with a clear, non-retriable
/// error naming what to configure.
struct DefaultRemote {
    remote: RemoteFacilitator,
    chains: &'static [u64],
}

impl DefaultRemote {
    fn check(&self, request: &VerifyRequest) -> Result<(), FacilitatorError> {
        let network = request.requirements_v2().network;
        match network::evm_chain_id(&network) {
            Ok(id) if self.chains.contains(&id) => Ok(()),
            _ => Err(FacilitatorError::Config(format!(
                "no facilitator is configured for {network} (the default serves eip155:{}); set \"facilitator\" in stack.json ({{\"url\": …}} or {{\"embedded\": {{\"chains\": […]}}}})",
                self.chains
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", eip155:")
            ))),
        }
    }
}

#[async_trait]
impl Facilitator for DefaultRemote {
    async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.check(request)?;
        self.remote.verify(request).await
    }

    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        self.check(request)?;
        self.remote.settle(request).await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.remote.supported().await
    }
}

/// The default facilitator's URL: `OBOL_DEFAULT_FACILITATOR_URL`, else the original's.
pub(crate) fn default_url() -> String {
    std::env::var(env::DEFAULT_FACILITATOR_URL)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_FACILITATOR_URL.to_owned())
}

/// Builds the facilitator the settings ask for (none: the default remote at `default_url`
/// for [`DEFAULT_FACILITATOR_CHAINS`]) and says which it is; `signer` (when given) pays the
/// embedded facilitator's gas instead of the configured wallet.
pub(crate) async fn build(
    paths: &Paths,
    setting: Option<&FacilitatorSetting>,
    signer: Option<&LocalSigner>,
    default_url: &str,
) -> Result<(Arc<dyn Facilitator>, FacilitatorSummary), DaemonError> {
    let start = |e: &dyn std::fmt::Display| DaemonError::Start(format!("facilitator: {e}"));
    match setting {
        None => {
            let remote = RemoteFacilitator::new(default_url, ClientOptions::default())
                .map_err(|e| start(&e))?;
            Ok((
                Arc::new(DefaultRemote {
                    remote,
                    chains: &DEFAULT_FACILITATOR_CHAINS,
                }),
                FacilitatorSummary {
                    url: default_url.to_owned(),
                    source: "default".into(),
                    chains: DEFAULT_FACILITATOR_CHAINS
                        .iter()
                        .map(|id| format!("eip155:{id}"))
                        .collect(),
                },
            ))
        }
        Some(FacilitatorSetting::Url(url)) => Ok((
            Arc::new(RemoteFacilitator::new(url, ClientOptions::default()).map_err(|e| start(&e))?),
            FacilitatorSummary {
                url: url.clone(),
                source: "settings".into(),
                chains: Vec::new(),
            },
        )),
        Some(FacilitatorSetting::Embedded {
            chains,
            wallet,
            gas_wallets,
        }) => {
            let env_key = std::env::var(env::PRIVATE_KEY)
                .ok()
                .filter(|k| !k.is_empty());
            let source =
                SignerSource::resolve(env_key.is_some() && wallet.is_none(), wallet.as_deref());
            let password = PasswordSource {
                file: None,
                env: std::env::var(env::WALLET_PASSWORD).ok(),
                prompt: false,
            };
            let signer = match signer {
                Some(signer) => signer.clone(),
                None => source
                    .load(&WalletStore::new(paths), env_key.as_deref(), || {
                        read_password(&password, false)
                    })
                    .map_err(|e| start(&e))?,
            };
            let networks = NetworksFile::load(&paths.networks_file())?;
            let mut setups = Vec::new();
            let mut served = Vec::new();
            for chain in chains {
                let config = networks
                    .get(chain)
                    .ok_or_else(|| start(&format!("no RPC endpoint configured for {chain}")))?;
                let client = ChainClient::connect(chain, config).map_err(|e| start(&e))?;
                served.push(format!("eip155:{}", client.chain_id()));
                setups.push(ChainSetup {
                    client,
                    signer: signer.clone(),
                });
            }
            let config = FacilitatorConfig {
                gas_wallets: gas_wallets.unwrap_or(1),
                ..FacilitatorConfig::default()
            };
            let facilitator = EvmFacilitator::new(config, setups).map_err(|e| start(&e))?;
            facilitator
                .fund_gas_wallets()
                .await
                .map_err(|e| start(&e))?;
            Ok((
                Arc::new(facilitator),
                FacilitatorSummary {
                    url: "embedded".into(),
                    source: "embedded".into(),
                    chains: served,
                },
            ))
        }
    }
}

/// How long the daemon waits for a remote facilitator's `/supported` at start.
const SUPPORTED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who settles `upto` payments on each chain, from the facilitator's `/supported` (its `upto`
/// kinds' `extra.facilitatorAddress`). A facilitator that cannot say (unreachable, no `upto`)
/// leaves metered offers paid `exact` only, logged.
pub(crate) async fn upto_settlers(facilitator: &dyn Facilitator) -> obol_control::routes::Settlers {
    settlers_of(facilitator).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "metered offers are paid exact only");
        Default::default()
    })
}

/// [`upto_settlers`] of the facilitator at `url` (the operator's `--facilitator-url`), asked
/// again every 2 s for up to `patience` while it does not answer: in a cluster it may start
/// after the operator. Then, as [`upto_settlers`], none.
///
/// # Errors
///
/// [`DaemonError::Start`] when `url` is not a facilitator URL.
pub async fn upto_settlers_at(
    url: &str,
    patience: std::time::Duration,
) -> Result<obol_control::routes::Settlers, DaemonError> {
    let remote = RemoteFacilitator::new(url, ClientOptions::default())
        .map_err(|e| DaemonError::Start(format!("facilitator: {e}")))?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match settlers_of(&remote).await {
            Ok(settlers) => return Ok(settlers),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(%error, "metered offers are paid exact only");
                return Ok(Default::default());
            }
            Err(error) => {
                tracing::info!(%error, "asking the facilitator again in 2 s");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

async fn settlers_of(
    facilitator: &dyn Facilitator,
) -> Result<obol_control::routes::Settlers, String> {
    let supported = match tokio::time::timeout(SUPPORTED_TIMEOUT, facilitator.supported()).await {
        Ok(Ok(supported)) => supported,
        Ok(Err(error)) => return Err(format!("the facilitator's /supported failed: {error}")),
        Err(_) => return Err("the facilitator's /supported did not answer".to_owned()),
    };
    Ok(supported
        .kinds
        .iter()
        .filter(|kind| kind.scheme == "upto")
        .filter_map(|kind| {
            let chain_id = network::evm_chain_id(&kind.network).ok()?;
            let settler = kind.extra.as_ref()?.get("facilitatorAddress")?.as_str()?;
            Some((chain_id, settler.parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use obol_facilitator::http::ServerOptions;

    /// A payment for 0.001 USDC-like units on `network`, signed by a fresh key.
    fn payment(network: &str) -> VerifyRequest {
        let mut requirement =
            obol_testkit::x402::requirement("USDC", 1000, obol_testkit::accounts::PAY_TO);
        requirement.network = network.into();
        obol_testkit::x402::payment(&LocalSigner::random(), &requirement)
    }

    /// With nothing configured, the default facilitator (here a loopback one standing in for
    /// the public deployment) answers for its chains; another chain is refused locally, with
    /// what to configure, and never sent.
    #[tokio::test]
    async fn no_setting_means_the_default_facilitator_for_its_chains() {
        let served = obol_facilitator::http::router(
            Arc::new(obol_facilitator::stub::Approving),
            ServerOptions::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, served).await });
        let dir = tempfile::tempdir().unwrap();
        let (facilitator, summary) = build(&Paths::under(dir.path()), None, None, &url)
            .await
            .unwrap();
        assert_eq!(
            summary,
            FacilitatorSummary {
                url: url.clone(),
                source: "default".into(),
                chains: vec![
                    "eip155:1".into(),
                    "eip155:8453".into(),
                    "eip155:84532".into()
                ],
            }
        );
        let answer = facilitator.verify(&payment("eip155:84532")).await.unwrap();
        assert!(answer.is_valid, "{answer:?}");
        let refused = facilitator
            .settle(&payment("eip155:10"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("no facilitator is configured for eip155:10")
                && refused.contains("the default serves eip155:1, eip155:8453, eip155:84532"),
            "{refused}"
        );
    }
}
