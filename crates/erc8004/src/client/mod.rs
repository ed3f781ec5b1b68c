//! Registry operations over a [`ChainClient`]: reads with any client, writes with a
//! [`LocalSigner`].
//!
//! Transactions are filled here (pending nonce, estimated gas plus a margin, EIP-1559 fees,
//! chain id), signed locally, and sent as raw bytes: the hash is known before the first send,
//! and a retry resends the very same transaction, so it can land at most once. Receipts are
//! polled on the chain client's interval, capped at one second (25 ms on a loopback devnet;
//! alloy's 7 s default would stall every devnet write).
//!
//! | module | what |
//! | --- | --- |
//! | this one | [`IdentityClient`] construction, [`ClientOptions`], the result types, reads (URI, owner, balance, wallet, metadata, control), RPC error classification |
//! | `logs` | log scanning: [`IdentityClient::find_registration`], [`IdentityClient::discover`], windows halved while the node refuses the range |
//! | `register` | writes: [`IdentityClient::register`] (recovery search, balance guard), [`IdentityClient::ensure_registered`], URI, metadata and wallet updates |
//! | `tx` | transactions: fill and sign, send the same bytes until mined, recover a mined copy, poll receipts |

mod logs;
mod register;
mod tx;

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::sol_types::{Revert, SolError as _};
use alloy::transports::{RpcError, TransportErrorKind};
use obol_chain::ChainClient;
use obol_x402::LocalSigner;

use crate::contract::IIdentityRegistry;
use crate::registry::AgentRegistry;
use crate::{Erc8004Error, printable};

/// The metadata key obol writes on its agents.
pub const X402_METADATA_KEY: &str = "x402";
/// The value written under [`X402_METADATA_KEY`].
pub const X402_METADATA_VALUE: &[u8] = br#"{"x402":true}"#;

/// The longest receipt polling interval, whatever the client's default.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Retry, wait and scan settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Sends of one transaction on transient errors (default 3).
    pub attempts: u32,
    /// Sleep before retry `n` is `n × backoff` (default 4 s).
    pub backoff: Duration,
    /// How long a sent transaction may take to be mined (default 120 s).
    pub receipt_timeout: Duration,
    /// How far back (in blocks) [`IdentityClient::register`] looks for an earlier registration
    /// when no start block is given (default 10 000: about 5.5 hours on Base). Whatever the
    /// start, a signer holding agents it did not register within the range is refused
    /// ([`Erc8004Error::UnsearchedAgents`]) rather than given a second one, unless
    /// [`ClientOptions::mint_despite_older_agents`].
    pub lookback_blocks: u64,
    /// Blocks per `eth_getLogs` call (default 10 000; halved down to 100 while a window fails).
    pub log_window: u64,
    /// Skip the balance guard of [`IdentityClient::register`]: mint even though the signer
    /// holds agents older than the searched range (default false). For an operator who knows
    /// none of them is this agent (a wallet with other agents, or one received by transfer); a
    /// registration with the same URI inside the searched range is still recovered.
    pub mint_despite_older_agents: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_secs(4),
            receipt_timeout: Duration::from_secs(120),
            lookback_blocks: 10_000,
            log_window: 10_000,
            mint_despite_older_agents: false,
        }
    }
}

impl ClientOptions {
    /// Fewer retries and shorter waits, for writes made on the way (auto-registration after
    /// `sell`, the daemon's agentURI updates): they must not hold anything up for minutes.
    pub fn brief() -> Self {
        Self {
            attempts: 2,
            backoff: Duration::from_secs(2),
            receipt_timeout: Duration::from_secs(60),
            ..Self::default()
        }
    }
}

/// A registration: found in a receipt or recovered from the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The agent id (ERC-721 token id).
    pub agent_id: U256,
    /// Who registered it (the `Registered` event's owner).
    pub owner: Address,
    /// The agentURI it was registered with.
    pub uri: String,
    /// The registering transaction.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: Option<u64>,
    /// True when an earlier, already mined registration was found instead of a new one
    /// confirmed (a rerun after a crash, or a retry after a lost response).
    pub recovered: bool,
}

/// What [`IdentityClient::ensure_registered`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The agent exists with this URI already.
    Unchanged {
        /// The agent id.
        agent_id: U256,
    },
    /// The agent existed with another URI, now replaced (`setAgentURI`).
    UriUpdated {
        /// The agent id.
        agent_id: U256,
        /// The URI it had (untrusted: escape before printing).
        previous_uri: String,
        /// The `setAgentURI` transaction.
        tx_hash: B256,
    },
    /// There was no agent; one was registered (or recovered).
    Registered(Registration),
}

impl Ensured {
    /// The agent id, whatever happened.
    pub fn agent_id(&self) -> U256 {
        match self {
            Self::Unchanged { agent_id } | Self::UriUpdated { agent_id, .. } => *agent_id,
            Self::Registered(r) => r.agent_id,
        }
    }
}

/// Who controls an agent, as seen from one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The agent.
    pub agent_id: U256,
    /// The address checked.
    pub address: Address,
    /// The NFT's owner.
    pub owner: Address,
    /// The verified agent wallet (`None` when unset).
    pub agent_wallet: Option<Address>,
    /// The address owns the agent.
    pub is_owner: bool,
    /// The address is the agent wallet.
    pub is_agent_wallet: bool,
    /// The address is the owner, an approved operator, or the token-approved address.
    pub is_authorized: bool,
}

impl Control {
    /// True when the address owns, operates, or is the wallet of the agent.
    pub fn controls(&self) -> bool {
        self.is_owner || self.is_agent_wallet || self.is_authorized
    }
}

/// An agent seen in the registry's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAgent {
    /// The agent id.
    pub agent_id: U256,
    /// The current owner (after transfers seen in the scanned range).
    pub owner: Address,
    /// The current agentURI (after `URIUpdated` events). Untrusted.
    pub uri: String,
    /// The block of its `Registered` event.
    pub registered_block: u64,
}

/// ERC-8004 Identity Registry operations on one chain.
#[derive(Clone)]
pub struct IdentityClient {
    chain: ChainClient,
    registry: AgentRegistry,
    signer: Option<(Address, EthereumWallet)>,
    poll: Duration,
    options: ClientOptions,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("chain", &self.chain.name())
            .field("registry", &self.registry.to_string())
            .field("signer", &self.signer.as_ref().map(|(a, _)| *a))
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    /// A read-only client for `registry`, which must be on `chain`'s chain id.
    pub fn new(chain: ChainClient, registry: AgentRegistry) -> Result<Self, Erc8004Error> {
        if chain.chain_id() != registry.chain_id {
            return Err(Erc8004Error::WrongChain {
                registry: registry.to_string(),
                chain: chain.name().to_owned(),
                chain_id: chain.chain_id(),
            });
        }
        let poll = chain.rpc_client().poll_interval().min(MAX_POLL);
        Ok(Self {
            chain,
            registry,
            signer: None,
            poll,
            options: ClientOptions::default(),
        })
    }

    /// Sends transactions from `signer` (it pays the gas and owns what it registers).
    #[must_use]
    pub fn with_signer(mut self, signer: &LocalSigner) -> Self {
        self.signer = Some((
            signer.address(),
            EthereumWallet::from(signer.as_alloy().clone()),
        ));
        self
    }

    /// Replaces the retry, wait and scan settings.
    #[must_use]
    pub fn with_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The registry.
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }

    /// The chain client.
    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    /// The signer's address, when one is set.
    pub fn signer_address(&self) -> Option<Address> {
        self.signer.as_ref().map(|(a, _)| *a)
    }

    fn contract(&self) -> IIdentityRegistry::IIdentityRegistryInstance<&DynProvider> {
        IIdentityRegistry::new(self.registry.address, self.chain.provider())
    }

    // ------------------------------------------------------------------ reads

    /// The agentURI (`tokenURI`). Untrusted: escape before printing.
    pub async fn agent_uri(&self, agent_id: U256) -> Result<String, Erc8004Error> {
        self.contract()
            .tokenURI(agent_id)
            .call()
            .await
            .map_err(|e| call_error("tokenURI", agent_id, &e))
    }

    /// The NFT's owner.
    pub async fn owner_of(&self, agent_id: U256) -> Result<Address, Erc8004Error> {
        self.contract()
            .ownerOf(agent_id)
            .call()
            .await
            .map_err(|e| call_error("ownerOf", agent_id, &e))
    }

    /// How many agents `owner` holds (ERC-721 `balanceOf`).
    pub async fn balance_of(&self, owner: Address) -> Result<U256, Erc8004Error> {
        self.contract()
            .balanceOf(owner)
            .call()
            .await
            .map_err(|e| call_error("balanceOf", U256::ZERO, &e))
    }

    /// The verified agent wallet, `None` when unset.
    pub async fn agent_wallet(&self, agent_id: U256) -> Result<Option<Address>, Erc8004Error> {
        let wallet = self
            .contract()
            .getAgentWallet(agent_id)
            .call()
            .await
            .map_err(|e| call_error("getAgentWallet", agent_id, &e))?;
        Ok((wallet != Address::ZERO).then_some(wallet))
    }

    /// The raw metadata value under `key` (empty when unset).
    pub async fn get_metadata(&self, agent_id: U256, key: &str) -> Result<Bytes, Erc8004Error> {
        self.contract()
            .getMetadata(agent_id, key.to_owned())
            .call()
            .await
            .map_err(|e| call_error("getMetadata", agent_id, &e))
    }

    /// Whether `address` controls `agent_id`: owner, agent wallet, or approved operator.
    /// An unknown id is [`Erc8004Error::UnknownAgent`].
    pub async fn verify_control(
        &self,
        agent_id: U256,
        address: Address,
    ) -> Result<Control, Erc8004Error> {
        let owner = self.owner_of(agent_id).await?;
        let agent_wallet = self.agent_wallet(agent_id).await?;
        let is_authorized = self
            .contract()
            .isAuthorizedOrOwner(address, agent_id)
            .call()
            .await
            .map_err(|e| call_error("isAuthorizedOrOwner", agent_id, &e))?;
        Ok(Control {
            agent_id,
            address,
            owner,
            agent_wallet,
            is_owner: owner == address,
            is_agent_wallet: agent_wallet == Some(address),
            is_authorized,
        })
    }
}

/// The revert reason in `data`: `Error(string)`, a known custom error, or the selector.
fn revert_reason(data: &[u8]) -> String {
    if let Ok(revert) = Revert::abi_decode(data) {
        return printable(&revert.reason, 200);
    }
    if let Ok(e) = IIdentityRegistry::ERC721NonexistentToken::abi_decode(data) {
        return format!("agent {} does not exist", e.tokenId);
    }
    match data.get(..4) {
        Some(selector) => format!("custom error 0x{}", alloy::hex::encode(selector)),
        None => "no reason given".to_owned(),
    }
}

/// Classifies an RPC failure: reverts are refusals, transport trouble is transient, node
/// messages are escaped.
fn rpc_error(op: &'static str, error: &RpcError<TransportErrorKind>) -> Erc8004Error {
    match error {
        RpcError::ErrorResp(payload) => {
            if let Some(data) = payload.as_revert_data() {
                return Erc8004Error::Refused {
                    op,
                    reason: revert_reason(&data),
                };
            }
            if payload.message.to_ascii_lowercase().contains("revert") {
                return Erc8004Error::Refused {
                    op,
                    reason: printable(&payload.message, 200),
                };
            }
            Erc8004Error::Rpc {
                op,
                message: printable(&payload.message, 300),
                transient: payload.is_retry_err(),
            }
        }
        RpcError::Transport(kind) => {
            let message = printable(&kind.to_string(), 500);
            if message.contains("allows writes") {
                return Erc8004Error::NoWriteEndpoint { op, message };
            }
            let transient = obol_chain::endpoints::is_transient_transport(kind);
            Erc8004Error::Rpc {
                op,
                message,
                transient,
            }
        }
        RpcError::NullResp | RpcError::DeserError { .. } => Erc8004Error::Rpc {
            op,
            message: printable(&error.to_string(), 300),
            transient: true,
        },
        other => Erc8004Error::Rpc {
            op,
            message: printable(&other.to_string(), 300),
            transient: false,
        },
    }
}

/// A failed contract read: a nonexistent token is [`Erc8004Error::UnknownAgent`].
fn call_error(op: &'static str, agent_id: U256, error: &alloy::contract::Error) -> Erc8004Error {
    if let Some(data) = error.as_revert_data()
        && IIdentityRegistry::ERC721NonexistentToken::abi_decode(&data).is_ok()
    {
        return Erc8004Error::UnknownAgent { agent_id };
    }
    match error {
        alloy::contract::Error::TransportError(e) => rpc_error(op, e),
        other => Erc8004Error::Rpc {
            op,
            message: printable(&other.to_string(), 300),
            transient: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_reasons() {
        let revert = Revert::from("Not authorized").abi_encode();
        assert_eq!(revert_reason(&revert), "Not authorized");
        let nonexistent = IIdentityRegistry::ERC721NonexistentToken {
            tokenId: U256::from(9),
        }
        .abi_encode();
        assert_eq!(revert_reason(&nonexistent), "agent 9 does not exist");
        assert_eq!(revert_reason(&[1, 2, 3, 4, 5]), "custom error 0x01020304");
    }
}
