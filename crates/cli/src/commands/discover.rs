//! The buyer's side of ERC-8004: `obol buy discover` (registered agents whose documents advertise
//! x402 services, with their offers and prices) and the `--expected-agent-id` check of `obol buy
//! inference` ([`verify_seller`]).
//!
//! Everything read here is untrusted: agentURIs come from the chain, documents and catalogs from
//! whoever registered. Documents and catalogs are size-capped and time-limited; text is escaped
//! before it reaches a terminal (JSON output is JSON-escaped).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use obol_config::NetworksFile;
use obol_erc8004::document::WELL_KNOWN_PATH;
use obol_erc8004::{
    DiscoveredAgent, DocumentFetcher, Erc8004Error, IdentityClient, Registries, U256, printable,
    x402_agents,
};
use obol_x402::wire::v2;
use serde_json::{Value, json};

use super::Context;
use crate::cli::BuyDiscoverArgs;
use crate::output;

/// Blocks scanned by default: recent registrations only (public RPCs cap log ranges, and a
/// full history of a busy registry is slow to read).
const DEFAULT_SCAN_BLOCKS: u64 = 100_000;
/// Budget of each document and catalog fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest catalog read.
const MAX_CATALOG_BYTES: usize = 256 * 1024;
/// The most offers shown per agent.
const MAX_OFFERS: usize = 20;

/// `<origin>/.well-known/agent-registration.json` of a seller URL.
fn document_url(seller: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(seller).with_context(|| format!("seller URL {seller:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("seller URL {seller:?} is not http(s)");
    }
    Ok(url.join(WELL_KNOWN_PATH)?.to_string())
}

/// True when `endpoint` is `service` or below it.
fn covers(service: &str, endpoint: &str) -> bool {
    let service = service.trim().trim_end_matches('/');
    let endpoint = endpoint.trim().trim_end_matches('/');
    !service.is_empty()
        && (endpoint == service
            || endpoint
                .strip_prefix(service)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// A chain client for `chain_id` from the networks file (the first chain configured with it).
fn client_for(ctx: &Context, chain_id: u64) -> anyhow::Result<Option<obol_chain::ChainClient>> {
    let file = NetworksFile::load(&ctx.paths.networks_file())?;
    file.chains
        .iter()
        .find(|(_, c)| c.chain_id == chain_id)
        .map(|(name, endpoints)| Ok(obol_chain::ChainClient::connect(name, endpoints)?))
        .transpose()
}

/// Refuses (before anything is signed) unless the seller at `endpoint` is ERC-8004 agent
/// `agent_id` on the chain `requirement` is priced on: its well-known document lists that agent
/// in the chain's registry and advertises `endpoint`, and the agent's on-chain agentURI is that
/// very document.
pub(super) async fn verify_seller(
    ctx: &Context,
    endpoint: &str,
    requirement: &v2::PaymentRequirements,
    agent_id: u64,
) -> anyhow::Result<()> {
    let refuse =
        |why: String| anyhow::anyhow!("refusing to buy: {why} (--expected-agent-id {agent_id})");
    let chain_id = obol_x402::network::evm_chain_id(&requirement.network)?;
    let registry = Registries::builtin().get(chain_id).ok_or_else(|| {
        refuse(format!(
            "no ERC-8004 Identity Registry is known on chain id {chain_id}"
        ))
    })?;
    let url = document_url(endpoint)?;
    let fetcher = DocumentFetcher::new(FETCH_TIMEOUT)?;
    let document = fetcher
        .fetch(&url)
        .await
        .map_err(|e| refuse(format!("the seller's registration document: {e}")))?;
    if !document.lists_registration(&registry, agent_id) {
        let listed: Vec<String> = document
            .registrations
            .iter()
            .map(|r| format!("{} in {}", r.agent_id, printable(&r.agent_registry, 80)))
            .collect();
        return Err(refuse(format!(
            "{url} does not list agent {agent_id} in {registry} (it lists {})",
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            }
        )));
    }
    if !document.advertises_x402() {
        return Err(refuse(format!(
            "{url} is not an active x402 agent (a tombstone?)"
        )));
    }
    if !document
        .endpoints()
        .any(|(_, service)| covers(service, endpoint))
    {
        return Err(refuse(format!(
            "{url} does not advertise {}",
            printable(endpoint, 120)
        )));
    }
    let chain = client_for(ctx, chain_id)?.ok_or_else(|| {
        refuse(format!(
            "cannot read agent {agent_id} on-chain: no RPC endpoint for chain id {chain_id} (`obol network add …`)"
        ))
    })?;
    let onchain = IdentityClient::new(chain, registry)?
        .agent_uri(U256::from(agent_id))
        .await
        .map_err(|e| match e {
            Erc8004Error::UnknownAgent { .. } => {
                refuse(format!("agent {agent_id} does not exist in {registry}"))
            }
            other => refuse(format!("cannot read agent {agent_id}'s agentURI: {other}")),
        })?;
    if onchain.trim() != url {
        return Err(refuse(format!(
            "agent {agent_id}'s agentURI is \"{}\", not {url}",
            printable(&onchain, 120)
        )));
    }
    if !ctx.json {
        output::note(&format!(
            "identity: the seller is ERC-8004 agent {agent_id} in {registry} ✓"
        ));
    }
    Ok(())
}

/// The catalog (`/api/services.json`) entries of `origin`, capped; empty when there is none.
async fn catalog(http: &reqwest::Client, origin: &str) -> Vec<Value> {
    let Ok(mut response) = http
        .get(format!("{origin}/api/services.json"))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
    else {
        return Vec::new();
    };
    if !response.status().is_success() {
        return Vec::new();
    }
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > MAX_CATALOG_BYTES {
            return Vec::new();
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("services")?.as_array().cloned())
        .unwrap_or_default()
}

/// The origin (`scheme://host[:port]`) of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.origin().ascii_serialization())
}

/// One offer of a discovered agent: its `web` endpoint, with the catalog's terms when the
/// seller publishes them.
fn offers_of(agent: &DiscoveredAgent, catalogs: &BTreeMap<String, Vec<Value>>) -> Vec<Value> {
    let text = |e: &Value, key: &str| e.get(key).and_then(Value::as_str).map(str::to_owned);
    agent
        .document
        .endpoints()
        .filter(|(name, _)| name.eq_ignore_ascii_case("web"))
        .take(MAX_OFFERS)
        .map(|(_, endpoint)| {
            let entry = origin(endpoint)
                .and_then(|o| catalogs.get(&o))
                .and_then(|entries| {
                    entries
                        .iter()
                        .find(|e| text(e, "endpoint").is_some_and(|ep| covers(&ep, endpoint)))
                });
            json!({
                "endpoint": endpoint,
                "name": entry.and_then(|e| text(e, "name")),
                "type": entry.and_then(|e| text(e, "type")),
                "model": entry.and_then(|e| text(e, "model")),
                "price": entry.and_then(|e| text(e, "price")),
                "network": entry.and_then(|e| text(e, "network")),
                "payTo": entry.and_then(|e| text(e, "payTo")),
            })
        })
        .collect()
}

/// `obol buy discover`.
pub(super) async fn discover(ctx: &Context, args: &BuyDiscoverArgs) -> anyhow::Result<ExitCode> {
    let chain = super::network::client(ctx, &args.chain)?;
    let chain_name = chain.name().to_owned();
    let registry = Registries::builtin()
        .get(chain.chain_id())
        .with_context(|| {
            format!(
                "no ERC-8004 Identity Registry is known on {chain_name} (chain id {})",
                chain.chain_id()
            )
        })?;
    let head = chain.head().await?;
    let from = args
        .from_block
        .unwrap_or_else(|| head.saturating_sub(DEFAULT_SCAN_BLOCKS));
    let reader = IdentityClient::new(chain, registry)?;
    let registered = reader.discover(from, Some(head)).await?;
    let scanned = registered.len();
    let fetcher = DocumentFetcher::new(FETCH_TIMEOUT)?;
    let agents = x402_agents(&fetcher, &registry, registered).await;

    let http = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(obol_buyer::probe::DEFAULT_USER_AGENT)
        .build()?;
    let mut catalogs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for agent in &agents {
        for (_, endpoint) in agent.document.endpoints() {
            if let Some(o) = origin(endpoint)
                && !catalogs.contains_key(&o)
            {
                let entries = catalog(&http, &o).await;
                catalogs.insert(o, entries);
            }
        }
    }
    let rows: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "agentId": u64::try_from(a.agent.agent_id).map_or_else(|_| json!(a.agent.agent_id.to_string()), |n| json!(n)),
                "owner": a.agent.owner.to_checksum(None),
                "agentUri": a.agent.uri,
                "name": a.document.name,
                "description": a.document.description,
                "listsRegistration": a.lists_registration,
                "offers": offers_of(a, &catalogs),
            })
        })
        .collect();
    if ctx.json {
        output::json(&json!({
            "chain": chain_name,
            "agentRegistry": registry.to_string(),
            "fromBlock": from,
            "toBlock": head,
            "registered": scanned,
            "agents": rows,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "No agents advertising x402 services on {chain_name} between blocks {from} and {head} ({scanned} registered)."
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} agent(s) advertising x402 services on {chain_name} ({registry}, blocks {from}–{head}):",
        rows.len()
    );
    let show = |v: &Value, max: usize| printable(v.as_str().unwrap_or_default(), max);
    for (agent, row) in agents.iter().zip(&rows) {
        println!(
            "agent {} — {} (owner {})",
            agent.agent.agent_id,
            show(&row["name"], 80),
            agent.agent.owner
        );
        if !agent.document.description.is_empty() {
            println!("  {}", show(&row["description"], 160));
        }
        println!("  document: {}", show(&row["agentUri"], 160));
        if !agent.lists_registration {
            println!("  unverified: the document does not name this agent id (copied?)");
        }
        for offer in row["offers"].as_array().into_iter().flatten() {
            let terms: Vec<String> = ["model", "price", "network"]
                .iter()
                .filter(|k| offer[**k].is_string())
                .map(|k| format!("{k} {}", show(&offer[*k], 60)))
                .collect();
            let terms = if terms.is_empty() {
                String::new()
            } else {
                format!(" — {}", terms.join(", "))
            };
            println!("  offer: {}{terms}", show(&offer["endpoint"], 160));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_cover_their_subpaths_only() {
        assert!(covers(
            "https://s.example/services/llm",
            "https://s.example/services/llm"
        ));
        assert!(covers(
            "https://s.example/services/llm/",
            "https://s.example/services/llm/v1/chat/completions"
        ));
        assert!(!covers(
            "https://s.example/services/llm",
            "https://s.example/services/llm2"
        ));
        assert!(!covers("", "https://s.example/"));
        assert_eq!(
            document_url("http://127.0.0.1:8080/services/llm").unwrap(),
            "http://127.0.0.1:8080/.well-known/agent-registration.json"
        );
        assert!(document_url("ftp://x/").is_err());
        assert_eq!(
            origin("https://s.example:8443/a/b").as_deref(),
            Some("https://s.example:8443")
        );
        assert_eq!(origin("data:application/json;base64,e30="), None);
    }
}
