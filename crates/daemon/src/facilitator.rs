//! The daemon's facilitator, from the stack settings.

use std::sync::Arc;

use async_trait::async_trait;
use obol_chain::ChainClient;
use obol_config::stack::FacilitatorSetting;
use obol_config::{NetworksFile, Paths, env};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::http::{ClientOptions, RemoteFacilitator};
use obol_facilitator::{EvmFacilitator, Facilitator, FacilitatorConfig, FacilitatorError};
use obol_wallet::{PasswordSource, SignerSource, WalletStore, read_password};
use obol_x402::LocalSigner;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse,
};

use crate::DaemonError;

/// Stands in when no facilitator is configured: 402 challenges still work; paid requests are
/// refused with a clear, non-retriable error.
struct Unconfigured;

const UNCONFIGURED: &str = "no facilitator is configured; set \"facilitator\" in stack.json ({\"url\": …} or {\"embedded\": {\"chains\": […]}})";

#[async_trait]
impl Facilitator for Unconfigured {
    async fn verify(&self, _: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        Err(FacilitatorError::Config(UNCONFIGURED.into()))
    }

    async fn settle(&self, _: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        Err(FacilitatorError::Config(UNCONFIGURED.into()))
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse::default())
    }
}

/// Builds the facilitator the settings ask for; `signer` (when given) pays the embedded
/// facilitator's gas instead of the configured wallet.
pub(crate) async fn build(
    paths: &Paths,
    setting: Option<&FacilitatorSetting>,
    signer: Option<&LocalSigner>,
) -> Result<Arc<dyn Facilitator>, DaemonError> {
    let start = |e: &dyn std::fmt::Display| DaemonError::Start(format!("facilitator: {e}"));
    match setting {
        None => Ok(Arc::new(Unconfigured)),
        Some(FacilitatorSetting::Url(url)) => Ok(Arc::new(
            RemoteFacilitator::new(url, ClientOptions::default()).map_err(|e| start(&e))?,
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
            for chain in chains {
                let config = networks
                    .get(chain)
                    .ok_or_else(|| start(&format!("no RPC endpoint configured for {chain}")))?;
                let client = ChainClient::connect(chain, config).map_err(|e| start(&e))?;
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
            Ok(Arc::new(facilitator))
        }
    }
}
