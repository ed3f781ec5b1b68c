//! Registry operations over a [`ChainClient`]: reads with any client, writes with a
//! [`LocalSigner`].
//!
//! Transactions are filled here (pending nonce, estimated gas plus a margin, EIP-1559 fees,
//! chain id), signed locally, and sent as raw bytes: the hash is known before the first send,
//! and a retry resends the very same transaction, so it can land at most once. Receipts are
//! polled on the chain client's interval, capped at one second (25 ms on a loopback devnet;
//! alloy's 7 s default would stall every devnet write).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::eips::Encodable2718 as _;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder as _, TransactionBuilder as _};
use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::providers::{DynProvider, Provider as _};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::sol_types::{Revert, SolCall, SolError as _, SolEvent as _};
use alloy::transports::{RpcError, TransportErrorKind};
use obol_chain::ChainClient;
use obol_x402::LocalSigner;

use crate::contract::{AGENT_WALLET_KEY, IIdentityRegistry, MetadataEntry};
use crate::registry::AgentRegistry;
use crate::{Erc8004Error, printable};

/// The metadata key obol writes on its agents.
pub const X402_METADATA_KEY: &str = "x402";
/// The value written under [`X402_METADATA_KEY`].
pub const X402_METADATA_VALUE: &[u8] = br#"{"x402":true}"#;

/// The smallest `eth_getLogs` window tried before a log query error is reported.
const MIN_LOG_WINDOW: u64 = 100;
/// The longest receipt polling interval, whatever the client's default.
const MAX_POLL: Duration = Duration::from_secs(1);
/// Gas estimate margin, in percent.
const GAS_MARGIN_PERCENT: u64 = 20;
/// How long a transaction whose nonce is already used may take to show its receipt before we
/// conclude another transaction took the nonce.
const NONCE_USED_WAIT: Duration = Duration::from_secs(15);

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

/// How a send went: accepted (or an earlier copy was), or our nonce is already mined.
enum SendOutcome {
    Sent,
    NonceUsed,
}

/// What a registration retry looks for in the logs.
struct Lookup<'a> {
    owner: Address,
    uri: &'a str,
    from: u64,
}

/// A sent transaction's fate.
enum Mined {
    /// Its receipt.
    Receipt(Box<TransactionReceipt>),
    /// A registration found without a confirmed send.
    Recovered(Registration),
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

    /// The newest registration by `owner` whose URI equals `uri` (both trimmed), scanning
    /// `Registered` logs from `from_block` to the head, newest window first.
    pub async fn find_registration(
        &self,
        owner: Address,
        uri: &str,
        from_block: u64,
    ) -> Result<Option<Registration>, Erc8004Error> {
        Ok(self.scan_registrations(owner, uri, from_block).await?.0)
    }

    /// [`IdentityClient::find_registration`], plus how many registrations by `owner` (any URI)
    /// the scanned range holds, when nothing matched (the whole range was read then).
    async fn scan_registrations(
        &self,
        owner: Address,
        uri: &str,
        from_block: u64,
    ) -> Result<(Option<Registration>, u64), Erc8004Error> {
        let want = uri.trim();
        let head = self.head().await?;
        let mut window = self.options.log_window.max(1);
        let mut hi = head;
        let mut seen = 0u64;
        while hi >= from_block {
            let lo = hi.saturating_sub(window - 1).max(from_block);
            let filter = Filter::new()
                .address(self.registry.address)
                .event_signature(IIdentityRegistry::Registered::SIGNATURE_HASH)
                .topic2(owner)
                .from_block(lo)
                .to_block(hi);
            let Some(logs) = self.logs_or_halve(&filter, &mut window).await? else {
                continue;
            };
            for log in logs.iter().rev() {
                let Ok(event) = log.log_decode::<IIdentityRegistry::Registered>() else {
                    continue;
                };
                let data = &event.inner.data;
                if data.owner != owner {
                    continue;
                }
                seen += 1;
                if data.agentURI.trim() == want {
                    let found = Registration {
                        agent_id: data.agentId,
                        owner: data.owner,
                        uri: data.agentURI.clone(),
                        tx_hash: log.transaction_hash.unwrap_or_default(),
                        block_number: log.block_number,
                        recovered: true,
                    };
                    return Ok((Some(found), seen));
                }
            }
            if lo <= from_block {
                break;
            }
            hi = lo - 1;
        }
        Ok((None, seen))
    }

    /// Every agent registered between `from_block` and `to_block` (at most, and by default, the
    /// head), with its
    /// current URI and owner as far as the scanned logs tell (`Registered`, `URIUpdated`,
    /// `Transfer`), by agent id.
    pub async fn discover(
        &self,
        from_block: u64,
        to_block: Option<u64>,
    ) -> Result<Vec<RegisteredAgent>, Erc8004Error> {
        let head = self.head().await?;
        let to = to_block.map_or(head, |block| block.min(head));
        let mut agents: BTreeMap<U256, RegisteredAgent> = BTreeMap::new();
        let mut window = self.options.log_window.max(1);
        let mut lo = from_block;
        while lo <= to {
            let hi = lo.saturating_add(window - 1).min(to);
            let filter = Filter::new()
                .address(self.registry.address)
                .event_signature(vec![
                    IIdentityRegistry::Registered::SIGNATURE_HASH,
                    IIdentityRegistry::URIUpdated::SIGNATURE_HASH,
                    IIdentityRegistry::Transfer::SIGNATURE_HASH,
                ])
                .from_block(lo)
                .to_block(hi);
            let Some(logs) = self.logs_or_halve(&filter, &mut window).await? else {
                continue;
            };
            for log in &logs {
                fold_log(&mut agents, log);
            }
            if hi == u64::MAX {
                break;
            }
            lo = hi + 1;
        }
        Ok(agents.into_values().collect())
    }

    /// The logs `filter` matches; `None` after halving `window` when the node refused the
    /// range (nodes cap `eth_getLogs` ranges), so the caller retries a smaller one.
    async fn logs_or_halve(
        &self,
        filter: &Filter,
        window: &mut u64,
    ) -> Result<Option<Vec<alloy::rpc::types::Log>>, Erc8004Error> {
        match self.chain.provider().get_logs(filter).await {
            Ok(logs) => Ok(Some(logs)),
            Err(_) if *window > MIN_LOG_WINDOW => {
                *window /= 2;
                Ok(None)
            }
            Err(e) => Err(rpc_error("eth_getLogs", &e)),
        }
    }

    async fn head(&self) -> Result<u64, Erc8004Error> {
        self.chain
            .provider()
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", &e))
    }

    // ----------------------------------------------------------------- writes

    /// Registers an agent with `uri` (trimmed; and `metadata`, which must not use the reserved
    /// `agentWallet` key), without ever minting a second one for the same owner and URI:
    ///
    /// 1. once the signer has no pending transactions (an earlier run's registration may be in
    ///    flight), a registration by the signer with this URI, mined since `search_from`
    ///    (default: head − [`ClientOptions::lookback_blocks`]), is returned as is (`recovered`);
    ///    when none is found and the search did not start at block 0, the signer's balance in the
    ///    registry must not exceed its registrations in the searched range
    ///    ([`Erc8004Error::UnsearchedAgents`] otherwise: an older agent may be this one), unless
    ///    [`ClientOptions::mint_despite_older_agents`] says none of them is;
    /// 2. otherwise the transaction is signed once and sent; a transient error is retried with
    ///    the same signed bytes, after looking for a mined copy (receipt, then logs);
    /// 3. the receipt's `Registered` event gives the agent id.
    pub async fn register(
        &self,
        uri: &str,
        metadata: &[MetadataEntry],
        search_from: Option<u64>,
    ) -> Result<Registration, Erc8004Error> {
        const OP: &str = "register";
        let uri = uri.trim();
        let (owner, wallet) = self
            .signer
            .as_ref()
            .ok_or(Erc8004Error::NoSigner { op: OP })?;
        if metadata.iter().any(|e| e.metadataKey == AGENT_WALLET_KEY) {
            return Err(Erc8004Error::Refused {
                op: OP,
                reason: "reserved key agentWallet".to_owned(),
            });
        }
        let from = match search_from {
            Some(block) => block,
            None => self
                .head()
                .await?
                .saturating_sub(self.options.lookback_blocks),
        };
        // A registration sent by an earlier run may still be in the mempool: let the signer's
        // pending transactions land before looking, or we would mint a second agent.
        self.wait_for_pending(OP, *owner).await?;
        let (found, seen) = self.scan_registrations(*owner, uri, from).await?;
        if let Some(found) = found {
            tracing::info!(agent_id = %found.agent_id, tx = %found.tx_hash, "ERC-8004 registration already mined; not registering again");
            return Ok(found);
        }
        if from > 0 && !self.options.mint_despite_older_agents {
            // Blocks before `from` were not read: an agent the signer holds beyond what the
            // range shows may be this very registration, made long ago.
            let held = self.balance_of(*owner).await?;
            if held > U256::from(seen) {
                return Err(Erc8004Error::UnsearchedAgents {
                    op: OP,
                    owner: *owner,
                    held,
                    seen,
                    from_block: from,
                });
            }
        }
        let input = if metadata.is_empty() {
            IIdentityRegistry::register_1Call {
                agentURI: uri.to_owned(),
            }
            .abi_encode()
        } else {
            IIdentityRegistry::register_2Call {
                agentURI: uri.to_owned(),
                metadata: metadata.to_vec(),
            }
            .abi_encode()
        };
        let (tx_hash, raw) = self.sign(OP, *owner, wallet, input).await?;
        let lookup = Lookup {
            owner: *owner,
            uri,
            from,
        };
        match self
            .send_until_mined(OP, tx_hash, &raw, Some(lookup))
            .await?
        {
            Mined::Receipt(receipt) => self.registration_from(&receipt, false),
            Mined::Recovered(found) => Ok(found),
        }
    }

    /// Makes `existing` (or a new agent) point at `uri`: the same URI is a no-op, another URI is
    /// replaced with `setAgentURI` (the signer must be allowed to manage the agent), no id
    /// registers one ([`IdentityClient::register`], which recovers instead of minting twice).
    pub async fn ensure_registered(
        &self,
        existing: Option<U256>,
        uri: &str,
        search_from: Option<u64>,
    ) -> Result<Ensured, Erc8004Error> {
        let Some(agent_id) = existing else {
            return self
                .register(uri, &[], search_from)
                .await
                .map(Ensured::Registered);
        };
        let current = self.agent_uri(agent_id).await?;
        if current.trim() == uri.trim() {
            return Ok(Ensured::Unchanged { agent_id });
        }
        let tx_hash = self.set_agent_uri(agent_id, uri).await?;
        Ok(Ensured::UriUpdated {
            agent_id,
            previous_uri: current,
            tx_hash,
        })
    }

    /// `setAgentURI(agent_id, uri)`; the signer must be the owner or approved.
    pub async fn set_agent_uri(&self, agent_id: U256, uri: &str) -> Result<B256, Erc8004Error> {
        const OP: &str = "setAgentURI";
        self.require_authorized(OP, agent_id).await?;
        let input = IIdentityRegistry::setAgentURICall {
            agentId: agent_id,
            newURI: uri.to_owned(),
        }
        .abi_encode();
        self.transact(OP, input).await
    }

    /// Writes `value` under `key` only when the registry holds something else (an identical
    /// rewrite would be a wasted transaction). True when a transaction was sent.
    pub async fn sync_metadata(
        &self,
        agent_id: U256,
        key: &str,
        value: &[u8],
    ) -> Result<bool, Erc8004Error> {
        const OP: &str = "setMetadata";
        if key == AGENT_WALLET_KEY {
            return Err(Erc8004Error::Refused {
                op: OP,
                reason: "reserved key agentWallet (use setAgentWallet)".to_owned(),
            });
        }
        if self.get_metadata(agent_id, key).await?.as_ref() == value {
            return Ok(false);
        }
        self.require_authorized(OP, agent_id).await?;
        let input = IIdentityRegistry::setMetadataCall {
            agentId: agent_id,
            metadataKey: key.to_owned(),
            metadataValue: Bytes::copy_from_slice(value),
        }
        .abi_encode();
        self.transact(OP, input).await?;
        Ok(true)
    }

    /// [`IdentityClient::sync_metadata`] of `x402` = `{"x402":true}`.
    pub async fn sync_x402_metadata(&self, agent_id: U256) -> Result<bool, Erc8004Error> {
        self.sync_metadata(agent_id, X402_METADATA_KEY, X402_METADATA_VALUE)
            .await
    }

    /// `setAgentWallet`: `new_wallet` signed the `AgentWalletSet` proof
    /// ([`crate::sign_agent_wallet`]) with `deadline` (unix seconds, at most 5 minutes ahead of
    /// the block time); the signer (owner or operator) sends it.
    pub async fn set_agent_wallet(
        &self,
        agent_id: U256,
        new_wallet: Address,
        deadline: u64,
        signature: &Signature,
    ) -> Result<B256, Erc8004Error> {
        const OP: &str = "setAgentWallet";
        self.require_authorized(OP, agent_id).await?;
        let input = IIdentityRegistry::setAgentWalletCall {
            agentId: agent_id,
            newWallet: new_wallet,
            deadline: U256::from(deadline),
            signature: Bytes::from(signature.as_bytes().to_vec()),
        }
        .abi_encode();
        self.transact(OP, input).await
    }

    /// Waits (up to [`ClientOptions::receipt_timeout`]) until `address` has no pending
    /// transactions.
    async fn wait_for_pending(
        &self,
        op: &'static str,
        address: Address,
    ) -> Result<(), Erc8004Error> {
        let provider = self.chain.provider();
        let deadline = Instant::now() + self.options.receipt_timeout;
        loop {
            let mined = provider
                .get_transaction_count(address)
                .latest()
                .await
                .map_err(|e| rpc_error(op, &e))?;
            let pending = provider
                .get_transaction_count(address)
                .pending()
                .await
                .map_err(|e| rpc_error(op, &e))?;
            if pending <= mined {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Erc8004Error::PendingTransactions {
                    op,
                    address,
                    count: pending - mined,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Refuses early, with a clear error, when the signer may not manage the agent.
    async fn require_authorized(
        &self,
        op: &'static str,
        agent_id: U256,
    ) -> Result<(), Erc8004Error> {
        let address = self.signer_address().ok_or(Erc8004Error::NoSigner { op })?;
        let control = self.verify_control(agent_id, address).await?;
        if control.is_authorized {
            Ok(())
        } else {
            Err(Erc8004Error::NotAuthorized {
                agent_id,
                address,
                owner: control.owner,
            })
        }
    }

    /// Signs, sends (same bytes on retry) and waits for a mined, successful receipt.
    async fn transact(&self, op: &'static str, input: Vec<u8>) -> Result<B256, Erc8004Error> {
        let (from, wallet) = self.signer.as_ref().ok_or(Erc8004Error::NoSigner { op })?;
        let (tx_hash, raw) = self.sign(op, *from, wallet, input).await?;
        match self.send_until_mined(op, tx_hash, &raw, None).await? {
            Mined::Receipt(receipt) if !receipt.status() => {
                Err(Erc8004Error::Reverted { op, tx_hash })
            }
            Mined::Receipt(_) | Mined::Recovered(_) => Ok(tx_hash),
        }
    }

    /// Sends signed bytes until they are accepted (the same bytes on every transient failure,
    /// at most [`ClientOptions::attempts`] times) and waits for the receipt. Before each retry,
    /// and before giving up, it looks for our receipt and, for a registration, for a matching
    /// `Registered` log.
    async fn send_until_mined(
        &self,
        op: &'static str,
        tx_hash: B256,
        raw: &[u8],
        lookup: Option<Lookup<'_>>,
    ) -> Result<Mined, Erc8004Error> {
        let mut attempt = 1;
        loop {
            match self.send_raw(op, raw).await {
                Ok(SendOutcome::Sent) => {
                    return self
                        .wait_receipt(op, tx_hash, self.options.receipt_timeout)
                        .await
                        .map(|r| Mined::Receipt(Box::new(r)));
                }
                Ok(SendOutcome::NonceUsed) => {
                    let wait = self.options.receipt_timeout.min(NONCE_USED_WAIT);
                    return match self.wait_receipt(op, tx_hash, wait).await {
                        Ok(receipt) => Ok(Mined::Receipt(Box::new(receipt))),
                        Err(Erc8004Error::Timeout { .. }) => {
                            Err(Erc8004Error::NonceTaken { op, tx_hash })
                        }
                        Err(e) => Err(e),
                    };
                }
                Err(error) if error.is_transient() => {
                    if let Some(mined) = self.already_mined(tx_hash, lookup.as_ref()).await {
                        return Ok(mined);
                    }
                    if attempt >= self.options.attempts {
                        return Err(error);
                    }
                    tracing::warn!(%tx_hash, attempt, error = %error, "{op} send failed; retrying the same transaction");
                    tokio::time::sleep(self.options.backoff * attempt).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Our transaction's receipt, else (for a registration) a matching `Registered` log. Read
    /// errors count as "not found": the node is flaky right now.
    async fn already_mined(&self, tx_hash: B256, lookup: Option<&Lookup<'_>>) -> Option<Mined> {
        if let Ok(Some(receipt)) = self.chain.provider().get_transaction_receipt(tx_hash).await {
            return Some(match self.registration_from(&receipt, true) {
                Ok(found) if lookup.is_some() => Mined::Recovered(found),
                _ => Mined::Receipt(Box::new(receipt)),
            });
        }
        let lookup = lookup?;
        match self
            .find_registration(lookup.owner, lookup.uri, lookup.from)
            .await
        {
            Ok(found) => found.map(Mined::Recovered),
            Err(e) => {
                tracing::debug!(error = %e, "recovery scan failed");
                None
            }
        }
    }

    /// Fills (pending nonce, gas + margin, EIP-1559 fees, chain id) and signs a call to the
    /// registry. A call the registry would revert fails here, before anything is sent.
    async fn sign(
        &self,
        op: &'static str,
        from: Address,
        wallet: &EthereumWallet,
        input: Vec<u8>,
    ) -> Result<(B256, Vec<u8>), Erc8004Error> {
        let provider = self.chain.provider();
        let mut tx = TransactionRequest::default()
            .with_from(from)
            .with_to(self.registry.address)
            .with_input(input)
            .with_chain_id(self.registry.chain_id);
        let gas = provider
            .estimate_gas(tx.clone())
            .await
            .map_err(|e| rpc_error(op, &e))?;
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| rpc_error(op, &e))?;
        let nonce = provider
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|e| rpc_error(op, &e))?;
        tx = tx
            .with_nonce(nonce)
            .with_gas_limit(gas.saturating_add(gas * GAS_MARGIN_PERCENT / 100))
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = tx.build(wallet).await.map_err(|e| Erc8004Error::Rpc {
            op,
            message: format!("cannot sign the transaction: {e}"),
            transient: false,
        })?;
        Ok((*envelope.tx_hash(), envelope.encoded_2718()))
    }

    /// One send of signed bytes. "Already known" counts as sent; "nonce too low" means a
    /// transaction with our nonce is mined (maybe ours).
    async fn send_raw(&self, op: &'static str, raw: &[u8]) -> Result<SendOutcome, Erc8004Error> {
        match self.chain.provider().send_raw_transaction(raw).await {
            Ok(_) => Ok(SendOutcome::Sent),
            Err(RpcError::ErrorResp(payload)) if is_already_known(&payload.message) => {
                Ok(SendOutcome::Sent)
            }
            Err(RpcError::ErrorResp(payload)) if is_nonce_used(&payload.message) => {
                Ok(SendOutcome::NonceUsed)
            }
            Err(e) => Err(rpc_error(op, &e)),
        }
    }

    /// Polls for the receipt until `timeout`.
    async fn wait_receipt(
        &self,
        op: &'static str,
        tx_hash: B256,
        timeout: Duration,
    ) -> Result<TransactionReceipt, Erc8004Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            match self.chain.provider().get_transaction_receipt(tx_hash).await {
                Ok(Some(receipt)) => return Ok(receipt),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%tx_hash, error = %printable(&e.to_string(), 200), "receipt poll failed, retrying")
                }
            }
            if Instant::now() >= deadline {
                return Err(Erc8004Error::Timeout {
                    op,
                    tx_hash,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    fn registration_from(
        &self,
        receipt: &TransactionReceipt,
        recovered: bool,
    ) -> Result<Registration, Erc8004Error> {
        let tx_hash = receipt.transaction_hash;
        if !receipt.status() {
            return Err(Erc8004Error::Reverted {
                op: "register",
                tx_hash,
            });
        }
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.registry.address)
            .find_map(|log| log.log_decode::<IIdentityRegistry::Registered>().ok())
            .map(|event| {
                let data = event.inner.data;
                Registration {
                    agent_id: data.agentId,
                    owner: data.owner,
                    uri: data.agentURI,
                    tx_hash,
                    block_number: receipt.block_number,
                    recovered,
                }
            })
            .ok_or(Erc8004Error::MissingEvent { tx_hash })
    }
}

/// Applies one registry log to the discovered agents.
fn fold_log(agents: &mut BTreeMap<U256, RegisteredAgent>, log: &Log) {
    if let Ok(event) = log.log_decode::<IIdentityRegistry::Registered>() {
        let data = event.inner.data;
        agents.insert(
            data.agentId,
            RegisteredAgent {
                agent_id: data.agentId,
                owner: data.owner,
                uri: data.agentURI,
                registered_block: log.block_number.unwrap_or_default(),
            },
        );
    } else if let Ok(event) = log.log_decode::<IIdentityRegistry::URIUpdated>() {
        if let Some(agent) = agents.get_mut(&event.inner.data.agentId) {
            agent.uri = event.inner.data.newURI;
        }
    } else if let Ok(event) = log.log_decode::<IIdentityRegistry::Transfer>() {
        let data = event.inner.data;
        if data.to == Address::ZERO {
            agents.remove(&data.tokenId);
        } else if let Some(agent) = agents.get_mut(&data.tokenId) {
            agent.owner = data.to;
        }
    }
}

fn is_already_known(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already known") || m.contains("already imported") || m.contains("known transaction")
}

fn is_nonce_used(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("nonce too low") || m.contains("nonce has already been used")
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
            let transient = match kind {
                TransportErrorKind::HttpError(http) => {
                    http.status >= 500 || http.status == 408 || http.status == 429
                }
                _ => true,
            };
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
    fn send_errors_that_mean_sent() {
        assert!(is_already_known("already known"));
        assert!(is_already_known("transaction already imported"));
        assert!(is_nonce_used("nonce too low"));
        assert!(!is_nonce_used("insufficient funds"));
    }

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
