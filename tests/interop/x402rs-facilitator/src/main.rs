//! Interop peer: the published x402-rs facilitator crates (crates.io 2.0.2,
//! `x402-facilitator-local` + `x402-chain-eip155` with feature `facilitator`) on one local EVM
//! chain, with the schemes `v1-eip155-exact`, `v2-eip155-exact` and `v2-eip155-upto`. Same HTTP
//! surface as the upstream x402-rs facilitator binary (`/verify`, `/settle`, `/supported`,
//! `/health`), built only from crates.io. Adapted from the peer benchmark's
//! (shared/bench/peers/x402rs-facilitator), which registers exact only.
//!
//! Env: RPC_URL, SETTLER_KEY (0x-hex private key; also the upto `facilitatorAddress`),
//! CHAIN_ID (default 84532), LISTEN (default 127.0.0.1:0). Prints
//! `x402-rs facilitator listening on http://HOST:PORT` on stderr once it accepts connections.
use std::collections::HashMap;
use std::sync::Arc;

use x402_chain_eip155::chain::config::{Eip155ChainConfig, Eip155ChainConfigInner};
use x402_chain_eip155::chain::{Eip155ChainProvider, Eip155ChainReference};
use x402_chain_eip155::{V1Eip155Exact, V2Eip155Exact, V2Eip155Upto};
use x402_facilitator_local::{FacilitatorLocal, handlers};
use x402_types::chain::{ChainId, ChainProviderOps, ChainRegistry, FromConfig};
use x402_types::scheme::{
    SchemeBlueprints, SchemeConfig, SchemeRegistry, X402SchemeFacilitator,
    X402SchemeFacilitatorBuilder,
};

/// The scheme registry hands blueprints a `&P`, while the EIP-155 schemes are implemented for
/// owned, `'static` providers (e.g. `Arc<Eip155ChainProvider>`). The upstream binary bridges this
/// with its own provider enum; this is the minimal equivalent for one EVM chain.
struct Provider(Arc<Eip155ChainProvider>);

impl ChainProviderOps for Provider {
    fn signer_addresses(&self) -> Vec<String> {
        self.0.signer_addresses()
    }
    fn chain_id(&self) -> ChainId {
        self.0.chain_id()
    }
}

macro_rules! bridge_blueprint {
    ($($scheme:ty),*) => {$(
        impl<'a> X402SchemeFacilitatorBuilder<&'a Provider> for $scheme {
            fn build(
                &self,
                provider: &'a Provider,
                config: Option<serde_json::Value>,
            ) -> Result<Box<dyn X402SchemeFacilitator>, Box<dyn std::error::Error>> {
                X402SchemeFacilitatorBuilder::<Arc<Eip155ChainProvider>>::build(
                    self,
                    provider.0.clone(),
                    config,
                )
            }
        }
    )*};
}
bridge_blueprint!(V1Eip155Exact, V2Eip155Exact, V2Eip155Upto);

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("missing env {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rpc = env("RPC_URL")?;
    let key = env("SETTLER_KEY")?;
    let chain_id: u64 = std::env::var("CHAIN_ID")
        .unwrap_or_else(|_| "84532".into())
        .parse()?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());

    let inner: Eip155ChainConfigInner = serde_json::from_value(serde_json::json!({
        "signers": [key],
        "rpc": [{ "http": rpc }],
        "receipt_timeout_secs": 30
    }))?;
    let chain_config = Eip155ChainConfig {
        chain_reference: Eip155ChainReference::new(chain_id),
        inner,
    };
    let provider = Eip155ChainProvider::from_config(&chain_config).await?;
    let chains = ChainRegistry::new(HashMap::from([(
        chain_config.chain_id(),
        Provider(Arc::new(provider)),
    )]));

    let blueprints = SchemeBlueprints::new()
        .and_register(V1Eip155Exact)
        .and_register(V2Eip155Exact)
        .and_register(V2Eip155Upto);
    let schemes: Vec<SchemeConfig> = serde_json::from_value(serde_json::json!([
        { "id": "v1-eip155-exact", "chains": "eip155:*" },
        { "id": "v2-eip155-exact", "chains": "eip155:*" },
        { "id": "v2-eip155-upto", "chains": "eip155:*" }
    ]))?;
    let registry = SchemeRegistry::build(chains, blueprints, &schemes);
    let facilitator = Arc::new(FacilitatorLocal::new(registry));

    let app = axum::Router::new().merge(handlers::routes().with_state(facilitator));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "x402-rs facilitator listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
