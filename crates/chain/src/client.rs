//! A provider for one configured chain, and the reads the CLI needs.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::{ClientBuilder, RpcClient};
use alloy::sol;
use alloy::transports::layers::RetryBackoffLayer;
use obol_config::ChainEndpoints;
use serde::Serialize;

use crate::endpoints::DEFAULT_REQUEST_TIMEOUT;
use crate::{ChainError, EndpointSet, RpcUrl};

sol! {
    #[sol(rpc)]
    interface IERC20Read {
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function decimals() external view returns (uint8);
    }

    #[sol(rpc)]
    interface IERC1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
    }
}

/// ERC-1271's "valid" answer, `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// Receipt and block polling interval on loopback devnets (alloy's default is 7 s on remote
/// chains, far too slow for a local anvil).
const LOCAL_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// One configured chain.
#[derive(Debug, Clone)]
pub struct ChainClient {
    name: String,
    chain_id: u64,
    endpoints: Vec<(RpcUrl, bool)>,
    local: bool,
    client: RpcClient,
    provider: DynProvider,
}

impl ChainClient {
    /// A client over the chain's endpoints (failover in order, write guard, rate-limit retry).
    pub fn connect(name: &str, config: &ChainEndpoints) -> Result<Self, ChainError> {
        Self::with_timeout(name, config, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`ChainClient::connect`] with a per-request timeout.
    pub fn with_timeout(
        name: &str,
        config: &ChainEndpoints,
        timeout: Duration,
    ) -> Result<Self, ChainError> {
        if config.endpoints.is_empty() {
            return Err(ChainError::NoEndpoint {
                chain: name.to_owned(),
            });
        }
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| RpcUrl::parse(&e.url).map(|url| (url, e.allow_writes)))
            .collect::<Result<Vec<_>, _>>()?;
        let set = EndpointSet::new(name, endpoints.clone(), timeout);
        let local = set.all_loopback();
        let client = ClientBuilder::default()
            .layer(RetryBackoffLayer::new(3, 250, 10_000))
            .transport(set, local);
        if local {
            client.set_poll_interval(LOCAL_POLL_INTERVAL);
        }
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_client(client.clone())
            .erased();
        Ok(Self {
            name: name.to_owned(),
            chain_id: config.chain_id,
            endpoints,
            local,
            client,
            provider,
        })
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Whether every endpoint is on loopback (a devnet that mines on receipt of a transaction).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The read provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The RPC client (to build providers with fillers and a wallet on the same endpoints).
    pub fn rpc_client(&self) -> RpcClient {
        self.client.clone()
    }

    fn rpc_error(&self, error: &dyn std::fmt::Display) -> ChainError {
        let text = self
            .endpoints
            .iter()
            .fold(error.to_string(), |text, (url, _)| url.scrub(&text));
        ChainError::Rpc(text)
    }

    /// Asks the endpoints for their chain id and checks it against the configuration.
    pub async fn check_chain_id(&self) -> Result<(), ChainError> {
        let actual = self
            .provider
            .get_chain_id()
            .await
            .map_err(|e| self.rpc_error(&e))?;
        if actual != self.chain_id {
            return Err(ChainError::WrongChain {
                url: self
                    .endpoints
                    .iter()
                    .map(|(u, _)| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                chain: self.name.clone(),
                expected: self.chain_id,
                actual,
            });
        }
        Ok(())
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// The latest block: its number and timestamp (unix seconds).
    pub async fn latest_block(&self) -> Result<(u64, u64), ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| self.rpc_error(&e))?
            .ok_or_else(|| ChainError::Rpc("the endpoint has no latest block".to_owned()))?;
        Ok((block.header.number, block.header.timestamp))
    }

    /// The current gas price, in wei.
    pub async fn gas_price(&self) -> Result<u128, ChainError> {
        self.provider
            .get_gas_price()
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// The native (gas token) balance of `owner`, in wei.
    pub async fn native_balance(&self, owner: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(owner)
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// The ERC-20 `balanceOf(owner)` of `token`.
    pub async fn token_balance(&self, token: Address, owner: Address) -> Result<U256, ChainError> {
        IERC20Read::new(token, &self.provider)
            .balanceOf(owner)
            .call()
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// The ERC-20 `decimals()` of `token`.
    pub async fn token_decimals(&self, token: Address) -> Result<u8, ChainError> {
        IERC20Read::new(token, &self.provider)
            .decimals()
            .call()
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// The ERC-20 `allowance(owner, spender)` of `token`.
    pub async fn token_allowance(
        &self,
        token: Address,
        owner: Address,
        spender: Address,
    ) -> Result<U256, ChainError> {
        IERC20Read::new(token, &self.provider)
            .allowance(owner, spender)
            .call()
            .await
            .map_err(|e| self.rpc_error(&e))
    }

    /// Whether the contract at `wallet` accepts `signature` over `hash` (ERC-1271
    /// `isValidSignature` returns the magic value). An address without code, a revert or any
    /// other answer is `false`; only a failed RPC is an error.
    pub async fn is_valid_signature(
        &self,
        wallet: Address,
        hash: alloy::primitives::B256,
        signature: alloy::primitives::Bytes,
    ) -> Result<bool, ChainError> {
        match IERC1271::new(wallet, &self.provider)
            .isValidSignature(hash, signature)
            .call()
            .await
        {
            Ok(answer) => Ok(answer.0 == ERC1271_MAGIC),
            Err(alloy::contract::Error::TransportError(e)) if e.as_error_resp().is_none() => {
                Err(self.rpc_error(&e))
            }
            Err(_) => Ok(false),
        }
    }

    /// Probes every configured endpoint on its own: chain id, head block, latency.
    pub async fn probe_endpoints(name: &str, config: &ChainEndpoints) -> Vec<EndpointProbe> {
        let mut probes = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let single = ChainEndpoints {
                chain_id: config.chain_id,
                endpoints: vec![endpoint.clone()],
            };
            probes.push(EndpointProbe::run(name, &single, endpoint.allow_writes).await);
        }
        probes
    }
}

/// The health of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointProbe {
    /// The redacted URL.
    pub url: String,
    /// Whether writes may go through it.
    pub allow_writes: bool,
    /// The chain id it reported.
    pub chain_id: Option<u64>,
    /// Whether that chain id is the configured one.
    pub chain_id_ok: bool,
    /// The head block it reported.
    pub head: Option<u64>,
    /// Round-trip time of the chain-id call, in milliseconds.
    pub latency_ms: Option<u64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl EndpointProbe {
    async fn run(name: &str, single: &ChainEndpoints, allow_writes: bool) -> Self {
        let mut probe = Self {
            url: single
                .endpoints
                .first()
                .map_or_else(String::new, |e| crate::redact(&e.url)),
            allow_writes,
            chain_id: None,
            chain_id_ok: false,
            head: None,
            latency_ms: None,
            error: None,
        };
        let client = match ChainClient::with_timeout(name, single, Duration::from_secs(5)) {
            Ok(client) => client,
            Err(e) => {
                probe.error = Some(e.to_string());
                return probe;
            }
        };
        let started = Instant::now();
        match client.provider.get_chain_id().await {
            Ok(id) => {
                probe.latency_ms =
                    Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                probe.chain_id = Some(id);
                probe.chain_id_ok = id == single.chain_id;
                if !probe.chain_id_ok {
                    probe.error = Some(format!(
                        "serves chain id {id}, expected {}",
                        single.chain_id
                    ));
                }
            }
            Err(e) => {
                probe.error = Some(client.rpc_error(&e).to_string());
                return probe;
            }
        }
        match client.head().await {
            Ok(head) => probe.head = Some(head),
            Err(e) => probe.error = Some(e.to_string()),
        }
        probe
    }
}
