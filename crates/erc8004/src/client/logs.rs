//! Log scanning: a registration by owner and URI ([`IdentityClient::find_registration`],
//! newest window first) and every agent of a block range ([`IdentityClient::discover`], folding
//! `Registered`, `URIUpdated` and `Transfer`). Nodes cap `eth_getLogs` ranges: a refused window
//! is halved, down to a minimum, before the error is reported.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent as _;

use super::{IdentityClient, RegisteredAgent, Registration, rpc_error};
use crate::Erc8004Error;
use crate::contract::IIdentityRegistry;

/// The smallest `eth_getLogs` window tried before a log query error is reported.
const MIN_LOG_WINDOW: u64 = 100;

impl IdentityClient {
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
    pub(super) async fn scan_registrations(
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

    pub(super) async fn head(&self) -> Result<u64, Erc8004Error> {
        self.chain
            .provider()
            .get_block_number()
            .await
            .map_err(|e| rpc_error("eth_blockNumber", &e))
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
