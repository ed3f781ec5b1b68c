//! The chains of the networks file: `rpc <chain>` (every endpoint answers with the configured
//! chain id; the head is fresh), `clock <chain>` (this machine's clock against the latest
//! block's timestamp: payments are valid by time), and for the embedded facilitator's chains
//! `writes <chain>` (an endpoint that may send transactions answers) and `gas <chain>` (every
//! settling key holds gas).
//!
//! A devnet (the chain named `devnet`, or anvil's chain id 31337) mines only when a transaction
//! comes, so its head is as old as its last transaction: no head-age failure there, and only a
//! block *ahead* of this clock (a time jump) counts as skew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use obol_chain::{ChainClient, ChainError};
use obol_config::networks::chain_key;
use obol_config::stack::FacilitatorSetting;
use obol_config::text::printable;
use obol_config::{ChainEndpoints, Endpoint};
use obol_x402::primitives::{Address, U256};
use tokio::sync::OnceCell;

use super::live::Live;
use super::local::Local;
use super::{Check, Job};

/// A live chain's head older than this fails `rpc` (blocks come every 12 s at most).
pub(crate) const HEAD_MAX_AGE_SECS: u64 = 600;
/// Skew beyond this warns.
pub(crate) const SKEW_WARN_SECS: u64 = 30;
/// Skew beyond this fails: a payment's validity window is minutes.
pub(crate) const SKEW_FAIL_SECS: u64 = 120;
/// Each endpoint's calls, under the check's 5 s.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(4);
/// The gas floor: this many settlements at the current gas price…
const FLOOR_SETTLEMENTS: u128 = 50;
/// …of this much gas each (an EIP-3009 transfer through the facilitator takes ~70 000).
const SETTLEMENT_GAS: u128 = 100_000;

/// What one endpoint answered.
#[derive(Debug, Clone)]
struct Probe {
    url: String,
    allow_writes: bool,
    answer: Result<Head, String>,
}

/// A healthy endpoint's head.
#[derive(Debug, Clone, Copy)]
struct Head {
    number: u64,
    timestamp: u64,
    /// This machine's clock when the block came.
    seen_at: u64,
    millis: u128,
}

/// One chain, probed once for the checks that need it.
#[derive(Debug)]
struct Chain {
    name: String,
    config: ChainEndpoints,
    devnet: bool,
    probes: OnceCell<Vec<Probe>>,
}

impl Chain {
    async fn probes(&self) -> &[Probe] {
        self.probes
            .get_or_init(|| probe_all(&self.name, &self.config))
            .await
    }

    fn fresh(&self, probes: &[Probe]) -> Option<Head> {
        probes.iter().find_map(|p| p.answer.as_ref().ok().copied())
    }
}

async fn probe_all(name: &str, config: &ChainEndpoints) -> Vec<Probe> {
    let mut set = tokio::task::JoinSet::new();
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        let (name, endpoint, chain_id) = (name.to_owned(), endpoint.clone(), config.chain_id);
        set.spawn(async move { (index, probe(&name, chain_id, endpoint).await) });
    }
    let mut probes: Vec<(usize, Probe)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(done) = joined {
            probes.push(done);
        }
    }
    probes.sort_by_key(|(index, _)| *index);
    probes.into_iter().map(|(_, probe)| probe).collect()
}

async fn probe(name: &str, chain_id: u64, endpoint: Endpoint) -> Probe {
    let url = obol_chain::redact(&endpoint.url);
    let allow_writes = endpoint.allow_writes;
    let single = ChainEndpoints {
        chain_id,
        endpoints: vec![endpoint],
    };
    let started = Instant::now();
    let answer = async {
        let client = ChainClient::with_timeout(name, &single, ENDPOINT_TIMEOUT)?;
        client.check_chain_id().await?;
        let (number, timestamp) = client.latest_block().await?;
        Ok::<_, ChainError>(Head {
            number,
            timestamp,
            seen_at: obol_config::time::unix_now(),
            millis: started.elapsed().as_millis(),
        })
    }
    .await
    .map_err(|e| match e {
        ChainError::WrongChain {
            expected, actual, ..
        } => format!("serves chain id {actual}, not {expected}"),
        other => printable(&other.to_string(), 200),
    });
    Probe {
        url,
        allow_writes,
        answer,
    }
}

/// The chain checks, for every chain of the networks file.
pub(crate) fn jobs(local: &Local, live: &Live) -> Vec<Job> {
    let Some(networks) = &local.networks else {
        return Vec::new();
    };
    let embedded: Vec<String> = match local.settings.as_ref().and_then(|s| s.facilitator.as_ref()) {
        Some(FacilitatorSetting::Embedded { chains, .. }) => {
            chains.iter().map(|c| chain_key(c)).collect()
        }
        _ => Vec::new(),
    };
    let mut jobs = Vec::new();
    for (name, config) in &networks.chains {
        let chain = Arc::new(Chain {
            name: name.clone(),
            config: config.clone(),
            devnet: name == "devnet" || config.chain_id == 31_337,
            probes: OnceCell::new(),
        });
        let endpoint_fix = format!(
            "check {name}'s endpoints (`obol network status`), or add one that answers: `obol network add {name} --endpoint URL`"
        );
        let c = chain.clone();
        jobs.push(Job::new(
            format!("rpc {name}"),
            endpoint_fix.clone(),
            async move { rpc(&c).await },
        ));
        let c = chain.clone();
        jobs.push(Job::new(
            format!("clock {name}"),
            endpoint_fix.clone(),
            async move { clock(&c).await },
        ));
        if embedded.contains(name) {
            let c = chain.clone();
            jobs.push(Job::new(
                format!("writes {name}"),
                endpoint_fix.clone(),
                async move { writes(&c).await },
            ));
            let signers = live.settlers();
            jobs.push(Job::new(format!("gas {name}"), endpoint_fix, async move {
                gas(&chain, signers).await
            }));
        }
    }
    for missing in embedded
        .iter()
        .filter(|c| !networks.chains.contains_key(*c))
    {
        jobs.push(Job::done(Check::fail(
            &format!("writes {missing}"),
            format!("the embedded facilitator settles on {missing}, which has no endpoint"),
            format!("`obol network add {missing} --endpoint URL --allow-writes`"),
        )));
    }
    jobs
}

/// `rpc <chain>`.
async fn rpc(chain: &Chain) -> Check {
    let name = format!("rpc {}", chain.name);
    let probes = chain.probes().await;
    let fix = format!(
        "point {} at an endpoint that answers for chain id {}: `obol network remove {} --endpoint URL`, then `obol network add {} --endpoint URL`",
        chain.name, chain.config.chain_id, chain.name, chain.name
    );
    let failed: Vec<String> = probes
        .iter()
        .filter_map(|p| p.answer.as_ref().err().map(|e| format!("{}: {e}", p.url)))
        .collect();
    let Some(head) = chain.fresh(probes) else {
        return Check::fail(
            &name,
            if failed.is_empty() {
                "no endpoint configured".to_owned()
            } else {
                failed.join("; ")
            },
            fix,
        );
    };
    let age = head.seen_at.saturating_sub(head.timestamp);
    if !chain.devnet && age > HEAD_MAX_AGE_SECS {
        return Check::fail(
            &name,
            format!(
                "the latest block #{} is {} min old: the endpoint is stale or the chain halted",
                head.number,
                age / 60
            ),
            fix,
        );
    }
    let healthy = probes.len() - failed.len();
    let summary = format!(
        "chain id {}, head #{} ({}), {healthy}/{} endpoints answer ({} ms)",
        chain.config.chain_id,
        head.number,
        if chain.devnet {
            "devnet: mines on demand".to_owned()
        } else {
            format!("{age} s old")
        },
        probes.len(),
        head.millis
    );
    if failed.is_empty() {
        Check::ok(&name, summary)
    } else {
        Check::warn(&name, format!("{summary}; {}", failed.join("; ")), fix)
    }
}

/// `clock <chain>`: the latest block's timestamp against this machine's clock.
async fn clock(chain: &Chain) -> Check {
    let name = format!("clock {}", chain.name);
    let Some(head) = chain.fresh(chain.probes().await) else {
        return Check::skip(&name, "no endpoint answers (see rpc)");
    };
    let ahead = head.timestamp.saturating_sub(head.seen_at);
    let behind = head.seen_at.saturating_sub(head.timestamp);
    // A devnet's head is as old as its last transaction: only a block ahead is skew.
    let skew = if chain.devnet {
        ahead
    } else {
        ahead.max(behind)
    };
    let fix = "set this machine's clock by NTP (`timedatectl set-ntp true`, chrony): payments are valid by time";
    let said = if ahead > 0 {
        format!(
            "the latest block #{} is {ahead} s ahead of this clock",
            head.number
        )
    } else {
        format!("the latest block #{} is {behind} s old", head.number)
    };
    if skew > SKEW_FAIL_SECS {
        Check::fail(
            &name,
            format!("{said}: payments would be refused as not yet valid or expired"),
            fix,
        )
    } else if skew > SKEW_WARN_SECS {
        Check::warn(&name, said, fix)
    } else {
        Check::ok(
            &name,
            format!("within {SKEW_WARN_SECS} s of the chain ({said})"),
        )
    }
}

/// `writes <chain>`: an endpoint allowed to send transactions answers.
async fn writes(chain: &Chain) -> Check {
    let name = format!("writes {}", chain.name);
    let fix = format!(
        "add an endpoint that may send transactions: `obol network add {} --endpoint URL --allow-writes`",
        chain.name
    );
    let probes = chain.probes().await;
    let writable: Vec<&Probe> = probes.iter().filter(|p| p.allow_writes).collect();
    if writable.is_empty() {
        return Check::fail(
            &name,
            "no endpoint allows writes: the embedded facilitator cannot settle",
            fix,
        );
    }
    let answering = writable.iter().filter(|p| p.answer.is_ok()).count();
    if answering == 0 {
        return Check::fail(
            &name,
            format!(
                "no writable endpoint answers ({})",
                writable
                    .iter()
                    .filter_map(|p| p.answer.as_ref().err().map(|e| format!("{}: {e}", p.url)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            fix,
        );
    }
    Check::ok(
        &name,
        format!("{answering}/{} writable endpoints answer", writable.len()),
    )
}

/// `gas <chain>`: each key settling on the chain holds gas for [`FLOOR_SETTLEMENTS`].
async fn gas(chain: &Chain, settlers: Result<Vec<Address>, String>) -> Check {
    let name = format!("gas {}", chain.name);
    let settlers = match settlers {
        Ok(settlers) if !settlers.is_empty() => settlers,
        Ok(_) => return Check::skip(&name, "the facilitator names no settling key"),
        Err(why) => return Check::skip(&name, why),
    };
    let client = match ChainClient::with_timeout(&chain.name, &chain.config, ENDPOINT_TIMEOUT) {
        Ok(client) => client,
        Err(e) => return Check::skip(&name, printable(&e.to_string(), 200)),
    };
    let floor = match client.gas_price().await {
        Ok(price) => U256::from(price.saturating_mul(SETTLEMENT_GAS * FLOOR_SETTLEMENTS)),
        Err(e) => {
            return Check::skip(
                &name,
                format!("no gas price: {}", printable(&e.to_string(), 200)),
            );
        }
    };
    let mut empty = Vec::new();
    let mut low = Vec::new();
    let mut least = U256::MAX;
    for settler in &settlers {
        let balance = match client.native_balance(*settler).await {
            Ok(balance) => balance,
            Err(e) => return Check::skip(&name, printable(&e.to_string(), 200)),
        };
        least = least.min(balance);
        if balance.is_zero() {
            empty.push(settler.to_checksum(None));
        } else if balance < floor {
            low.push(format!(
                "{} ({})",
                settler.to_checksum(None),
                ether(balance)
            ));
        }
    }
    if !empty.is_empty() {
        return Check::fail(
            &name,
            format!(
                "{} {} no gas: settlements cannot be sent",
                empty.join(", "),
                if empty.len() == 1 { "has" } else { "have" }
            ),
            format!("send {} native tokens to {}", chain.name, empty.join(", ")),
        );
    }
    if !low.is_empty() {
        return Check::warn(
            &name,
            format!(
                "{} below {} in native tokens (gas for {FLOOR_SETTLEMENTS} settlements now)",
                low.join(", "),
                ether(floor)
            ),
            format!("top up {} on {}", low.join(", "), chain.name),
        );
    }
    Check::ok(
        &name,
        format!(
            "{} settling {}, the least holds {} in native tokens",
            settlers.len(),
            if settlers.len() == 1 { "key" } else { "keys" },
            ether(least)
        ),
    )
}

/// Wei in whole native tokens (ether).
fn ether(wei: U256) -> String {
    obol_x402::money::format_units(wei, 18)
}
