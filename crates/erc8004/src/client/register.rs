//! Writes to the registry: [`IdentityClient::register`] (which waits out pending transactions,
//! recovers a mined registration by owner and URI, and refuses to mint when the signer holds
//! agents older than the searched range), [`IdentityClient::ensure_registered`] (same URI: no-op;
//! another: `setAgentURI`), metadata sync and `setAgentWallet`.

use std::time::Instant;

use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall as _;

use super::tx::{Lookup, Mined};
use super::{
    Ensured, IdentityClient, Registration, X402_METADATA_KEY, X402_METADATA_VALUE, rpc_error,
};
use crate::Erc8004Error;
use crate::contract::{AGENT_WALLET_KEY, IIdentityRegistry, MetadataEntry};

impl IdentityClient {
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
    ///
    /// [`ClientOptions::lookback_blocks`]: super::ClientOptions::lookback_blocks
    /// [`ClientOptions::mint_despite_older_agents`]: super::ClientOptions::mint_despite_older_agents
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
    ///
    /// [`ClientOptions::receipt_timeout`]: super::ClientOptions::receipt_timeout
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

    pub(super) fn registration_from(
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
