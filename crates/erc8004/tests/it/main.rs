//! ERC-8004 registration, control checks and discovery against the devnet's Identity Registry
//! (anvil + our contract at the testnet address).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub
)]

mod discover;
mod env_proxy;
mod register;

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256, keccak256};
use alloy::providers::{DynProvider, Provider as _, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent as _;
use obol_chain::ChainClient;
use obol_devnet::Devnet;
use obol_erc8004::contract::IIdentityRegistry;
use obol_erc8004::{ClientOptions, IdentityClient, Registries};
use obol_x402::LocalSigner;

/// Short retries and waits: everything is on loopback.
pub fn fast() -> ClientOptions {
    ClientOptions {
        attempts: 3,
        backoff: Duration::from_millis(50),
        receipt_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// A devnet and a chain client on it.
pub struct Fixture {
    pub devnet: Devnet,
    pub chain: ChainClient,
}

impl Fixture {
    pub async fn start() -> Self {
        let devnet = Devnet::start().await.unwrap();
        let chain = ChainClient::connect("devnet", &devnet.endpoints()).unwrap();
        Self { devnet, chain }
    }

    pub fn signer(&self, index: usize) -> LocalSigner {
        LocalSigner::from_private_key_hex(self.devnet.key(index)).unwrap()
    }

    /// A client for the devnet registry sending from dev account `index`.
    pub fn client(&self, index: usize) -> IdentityClient {
        client_on(&self.chain, &self.signer(index))
    }

    /// A provider sending from dev account `index` without our client (a "crashed" process).
    pub fn raw_sender(&self, index: usize) -> DynProvider {
        let key: PrivateKeySigner = self.devnet.key(index).parse().unwrap();
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(key))
            .connect_http(self.devnet.endpoint().parse().unwrap())
            .erased()
    }

    pub fn registry(&self) -> IIdentityRegistry::IIdentityRegistryInstance<&DynProvider> {
        IIdentityRegistry::new(obol_devnet::IDENTITY_REGISTRY, self.chain.provider())
    }

    /// How many agents `owner` holds.
    pub async fn balance(&self, owner: Address) -> U256 {
        self.registry().balanceOf(owner).call().await.unwrap()
    }

    /// How many `MetadataSet` events wrote `key` on `agent_id`.
    pub async fn metadata_writes(&self, agent_id: U256, key: &str) -> usize {
        let filter = Filter::new()
            .address(obol_devnet::IDENTITY_REGISTRY)
            .event_signature(IIdentityRegistry::MetadataSet::SIGNATURE_HASH)
            .topic1(agent_id)
            .topic2(keccak256(key.as_bytes()))
            .from_block(0);
        self.chain.provider().get_logs(&filter).await.unwrap().len()
    }

    /// How many agents were minted at all.
    pub async fn mints(&self) -> usize {
        let filter = Filter::new()
            .address(obol_devnet::IDENTITY_REGISTRY)
            .event_signature(IIdentityRegistry::Transfer::SIGNATURE_HASH)
            .topic1(Address::ZERO)
            .from_block(0);
        self.chain.provider().get_logs(&filter).await.unwrap().len()
    }
}

pub fn client_on(chain: &ChainClient, signer: &LocalSigner) -> IdentityClient {
    let registry = Registries::builtin().require(chain.chain_id()).unwrap();
    assert_eq!(registry.address, obol_devnet::IDENTITY_REGISTRY);
    IdentityClient::new(chain.clone(), registry)
        .unwrap()
        .with_signer(signer)
        .with_options(fast())
}
