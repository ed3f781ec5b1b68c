//! The buyer's side of ERC-8004: `obol buy discover` (registered agents whose documents advertise
//! x402 services, with their offers and prices) and the `--expected-agent-id` check of `obol buy
//! inference` ([`verify_seller`]).
//!
//! Everything read here is untrusted: agentURIs come from the chain, documents and catalogs from
//! whoever registered. Documents and catalogs are size-capped and time-limited (each request,
//! and all of discovery's fetches together: `--timeout`); discovery contacts public addresses
//! only unless `--allow-private`; text is escaped before it reaches a terminal (JSON output is
//! JSON-escaped). URLs are compared normalised ([`normalize`]).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use obol_erc8004::document::{RegistrationDocument, WELL_KNOWN_PATH};
use obol_erc8004::{
    AddressPolicy, DiscoveredAgent, Discovery, DocumentFetcher, Erc8004Error, IdentityClient,
    Registries, U256, fetch_urls, printable, x402_agents,
};
use obol_x402::wire::v2;
use serde_json::{Value, json};

use super::Context;
use crate::cli::BuyDiscoverArgs;
use crate::output;

/// Blocks scanned by default: recent registrations only (public RPCs cap log ranges, and a
/// full history of a busy registry is slow to read).
const DEFAULT_SCAN_BLOCKS: u64 = 100_000;
/// Budget of each document and catalog request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest catalog read.
const MAX_CATALOG_BYTES: usize = 256 * 1024;
/// The most offers shown (and catalogs fetched for) per agent.
const MAX_OFFERS: usize = 20;
/// Where a stack publishes its catalog, below its base URL.
const CATALOG_PATH: &str = "/api/services.json";
/// The path segment a stack serves its offers under.
const SERVICES_SEGMENT: &str = "/services/";

/// `url` normalised for comparison: `scheme://host[:port]/path[?query]` with the scheme and
/// host lower-case, the default port dropped, no fragment and no trailing slash; `None` unless
/// http(s).
pub(super) fn normalize(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let path = parsed.path().trim_end_matches('/');
    let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!(
        "{}{path}{query}",
        parsed.origin().ascii_serialization()
    ))
}

/// The base URL of the stack serving `url` (normalised): the URL up to its first `/services/`
/// (a stack behind a path prefix keeps it), else its origin.
fn seller_base(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let path = parsed.path();
    let prefix = path.find(SERVICES_SEGMENT).map_or("", |at| &path[..at]);
    Some(format!(
        "{}{}",
        parsed.origin().ascii_serialization(),
        prefix.trim_end_matches('/')
    ))
}

/// `<base>/.well-known/agent-registration.json` of a seller URL ([`seller_base`]).
fn document_url(seller: &str) -> anyhow::Result<String> {
    let base = seller_base(seller).with_context(|| {
        format!(
            "seller URL {:?} is not an http(s) URL",
            printable(seller, 120)
        )
    })?;
    Ok(format!("{base}{WELL_KNOWN_PATH}"))
}

/// True when `endpoint` is `service` or below it (both normalised).
fn covers(service: &str, endpoint: &str) -> bool {
    let (Some(service), Some(endpoint)) = (normalize(service), normalize(endpoint)) else {
        return false;
    };
    endpoint == service
        || endpoint
            .strip_prefix(&service)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

/// Refuses (before anything is signed) unless the seller at `endpoint` is ERC-8004 agent
/// `agent_id` on the chain `requirement` is priced on: its well-known document (under the
/// endpoint's base, [`seller_base`]) lists that agent in the chain's registry and advertises
/// `endpoint`, and the agent's on-chain agentURI is that very document (compared normalised).
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
    let chain = super::permit2::chain_by_id(ctx, chain_id)?.ok_or_else(|| {
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
    if normalize(&onchain) != normalize(&url) {
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

/// What discovery learnt from one stack's catalog.
enum Catalog {
    /// Its `services` entries.
    Entries(Vec<Value>),
    /// Not answered by the deadline.
    TimedOut,
    /// At a non-public address, not fetched.
    NonPublic,
    /// Missing, failed, oversized or not a catalog.
    Unavailable,
}

impl Catalog {
    fn from_fetch(result: Result<Vec<u8>, Erc8004Error>) -> Self {
        match result {
            Ok(body) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("services")?.as_array().cloned())
                .map_or(Self::Unavailable, Self::Entries),
            Err(Erc8004Error::FetchTimedOut { .. }) => Self::TimedOut,
            Err(Erc8004Error::NonPublicAddress { .. }) => Self::NonPublic,
            Err(_) => Self::Unavailable,
        }
    }
}

/// The offers shown for a document: its first [`MAX_OFFERS`] `web` endpoints.
fn shown_endpoints(document: &RegistrationDocument) -> impl Iterator<Item = &str> {
    document
        .endpoints()
        .filter(|(name, _)| name.eq_ignore_ascii_case("web"))
        .take(MAX_OFFERS)
        .map(|(_, endpoint)| endpoint)
}

/// One offer of a discovered agent: its `web` endpoint, with the catalog's terms when the
/// seller publishes them, and `catalog`: `listed` (terms found), `unlisted` (the catalog does not
/// list it), `timedOut`, `nonPublic` or `unavailable`.
fn offers_of(agent: &DiscoveredAgent, catalogs: &BTreeMap<String, Catalog>) -> Vec<Value> {
    let text = |e: &Value, key: &str| e.get(key).and_then(Value::as_str).map(str::to_owned);
    shown_endpoints(&agent.document)
        .map(|endpoint| {
            let catalog = seller_base(endpoint).and_then(|base| catalogs.get(&base));
            let (entry, state) = match catalog {
                Some(Catalog::Entries(entries)) => {
                    let entry = entries
                        .iter()
                        .find(|e| text(e, "endpoint").is_some_and(|ep| covers(&ep, endpoint)));
                    (
                        entry,
                        if entry.is_some() {
                            "listed"
                        } else {
                            "unlisted"
                        },
                    )
                }
                Some(Catalog::TimedOut) => (None, "timedOut"),
                Some(Catalog::NonPublic) => (None, "nonPublic"),
                Some(Catalog::Unavailable) | None => (None, "unavailable"),
            };
            json!({
                "endpoint": endpoint,
                "name": entry.and_then(|e| text(e, "name")),
                "type": entry.and_then(|e| text(e, "type")),
                "model": entry.and_then(|e| text(e, "model")),
                "price": entry.and_then(|e| text(e, "price")),
                "network": entry.and_then(|e| text(e, "network")),
                "payTo": entry.and_then(|e| text(e, "payTo")),
                "catalog": state,
            })
        })
        .collect()
}

/// Why an agent's document was not read: `timedOut`, `nonPublic` or `unreadable`.
fn skip_reason(error: &Erc8004Error) -> &'static str {
    match error {
        Erc8004Error::FetchTimedOut { .. } => "timedOut",
        Erc8004Error::NonPublicAddress { .. } => "nonPublic",
        _ => "unreadable",
    }
}

/// `obol buy discover`.
/// What a discovery scan found: the agents advertising x402 services, those that could not be
/// read, and both as the `--json` rows.
pub(super) struct Scan {
    chain_name: String,
    registry: String,
    from: u64,
    head: u64,
    scanned: usize,
    agents: Vec<obol_erc8004::fetch::DiscoveredAgent>,
    unreadable: Vec<(obol_erc8004::RegisteredAgent, Erc8004Error)>,
    rows: Vec<Value>,
    skipped: Vec<Value>,
}

impl Scan {
    /// The `--json` document (also `obol mcp`'s `discover` result).
    pub(super) fn json(&self, args: &BuyDiscoverArgs) -> Value {
        json!({
            "chain": self.chain_name,
            "agentRegistry": self.registry,
            "fromBlock": self.from,
            "toBlock": self.head,
            "registered": self.scanned,
            "timeoutSecs": args.timeout,
            "allowPrivate": args.allow_private,
            "agents": self.rows,
            "skipped": self.skipped,
        })
    }
}

/// Scans the chain's Identity Registry and reads what the agents found advertise.
pub(super) async fn scan(ctx: &Context, args: &BuyDiscoverArgs) -> anyhow::Result<Scan> {
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

    // Every fetch below (documents, then the catalogs of the offers shown) shares one deadline.
    let policy = if args.allow_private {
        AddressPolicy::Any
    } else {
        AddressPolicy::PublicOnly
    };
    let fetcher = DocumentFetcher::with_policy(FETCH_TIMEOUT, policy)?;
    let deadline = Instant::now()
        .checked_add(Duration::from_secs(args.timeout))
        .with_context(|| format!("--timeout {} is too long", args.timeout))?;
    let Discovery { agents, unreadable } =
        x402_agents(&fetcher, &registry, registered, deadline).await;
    let bases: BTreeSet<String> = agents
        .iter()
        .flat_map(|a| shown_endpoints(&a.document))
        .filter_map(seller_base)
        .collect();
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}{CATALOG_PATH}")).collect();
    let catalogs: BTreeMap<String, Catalog> = bases
        .into_iter()
        .zip(fetch_urls(&fetcher, urls, MAX_CATALOG_BYTES, deadline).await)
        .map(|(base, (_, result))| (base, Catalog::from_fetch(result)))
        .collect();

    let rows: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "agentId": super::identity::agent_id_json(a.agent.agent_id),
                "owner": a.agent.owner.to_checksum(None),
                "agentUri": a.agent.uri,
                "name": a.document.name,
                "description": a.document.description,
                "listsRegistration": a.lists_registration,
                "offers": offers_of(a, &catalogs),
            })
        })
        .collect();
    let skipped: Vec<Value> = unreadable
        .iter()
        .map(|(agent, error)| {
            json!({
                "agentId": super::identity::agent_id_json(agent.agent_id),
                "owner": agent.owner.to_checksum(None),
                "agentUri": agent.uri,
                "reason": skip_reason(error),
                "error": error.to_string(),
            })
        })
        .collect();
    Ok(Scan {
        chain_name,
        registry: registry.to_string(),
        from,
        head,
        scanned,
        agents,
        unreadable,
        rows,
        skipped,
    })
}

pub(super) async fn discover(ctx: &Context, args: &BuyDiscoverArgs) -> anyhow::Result<ExitCode> {
    let found = scan(ctx, args).await?;
    if ctx.json {
        output::json(&found.json(args))?;
        return Ok(ExitCode::SUCCESS);
    }
    let Scan {
        chain_name,
        registry,
        from,
        head,
        scanned,
        agents,
        unreadable,
        rows,
        ..
    } = found;
    let show = |v: &Value, max: usize| printable(v.as_str().unwrap_or_default(), max);
    if rows.is_empty() {
        println!(
            "No agents advertising x402 services on {chain_name} between blocks {from} and {head} ({scanned} registered)."
        );
    } else {
        println!(
            "{} agent(s) advertising x402 services on {chain_name} ({registry}, blocks {from}–{head}):",
            rows.len()
        );
    }
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
            let terms = match offer["catalog"].as_str() {
                _ if !terms.is_empty() => format!(" — {}", terms.join(", ")),
                Some("timedOut") => format!(" (terms: timed out after {} s)", args.timeout),
                Some("nonPublic") => {
                    " (terms: not fetched, not a public address; --allow-private)".to_owned()
                }
                _ => String::new(),
            };
            println!("  offer: {}{terms}", show(&offer["endpoint"], 160));
        }
    }
    let mut other = 0usize;
    for (agent, error) in &unreadable {
        let uri = printable(agent.uri.trim(), 160);
        match skip_reason(error) {
            "timedOut" => println!(
                "agent {} — timed out: {uri} did not answer within --timeout {} s",
                agent.agent_id, args.timeout
            ),
            "nonPublic" => println!(
                "agent {} — skipped: {uri} is not a public address (--allow-private to fetch it)",
                agent.agent_id
            ),
            _ => other += 1,
        }
    }
    if other > 0 {
        println!("{other} more registered agent(s) have no readable document (`--json` says why).");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--timeout` is bounded by the parser: a huge value would overflow the deadline.
    #[test]
    fn the_timeout_flag_is_bounded() {
        use crate::cli::{BuyCommand, Cli, Command, MAX_DISCOVER_TIMEOUT_SECS};
        use clap::Parser as _;
        let parse = |timeout: &str| {
            Cli::try_parse_from([
                "obol",
                "buy",
                "discover",
                "--chain",
                "base",
                "--timeout",
                timeout,
            ])
        };
        for accepted in ["1", "30", "3600"] {
            let cli = parse(accepted).unwrap();
            let Command::Buy(BuyCommand::Discover(args)) = cli.command else {
                panic!("not buy discover");
            };
            assert_eq!(args.timeout.to_string(), accepted);
        }
        for refused in ["0", "3601", "18446744073709551615", "1e9"] {
            let err = parse(refused).unwrap_err().to_string();
            assert!(err.contains("--timeout"), "{refused}: {err}");
        }
        assert!(
            Instant::now()
                .checked_add(Duration::from_secs(MAX_DISCOVER_TIMEOUT_SECS))
                .is_some()
        );
    }

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
        assert!(covers(
            "HTTPS://S.Example:443/services/llm",
            "https://s.example/services/llm/v1"
        ));
        assert!(!covers(
            "https://s.example/services/llm",
            "https://s.example/services/llm2"
        ));
        assert!(!covers(
            "https://s.example/services/llm",
            "http://s.example/services/llm"
        ));
        assert!(!covers("", "https://s.example/"));
        assert!(!covers("ftp://s.example/x", "ftp://s.example/x"));
    }

    #[test]
    fn urls_compare_normalised() {
        let same = |a: &str, b: &str| normalize(a).is_some() && normalize(a) == normalize(b);
        assert!(same(
            "https://Seller.Example/.well-known/agent-registration.json",
            "https://seller.example:443/.well-known/agent-registration.json/"
        ));
        assert!(same("HTTP://127.0.0.1:80/", "http://127.0.0.1"));
        assert!(same(" https://s.example/a#frag ", "https://s.example/a"));
        assert!(!same("https://s.example:8443/a", "https://s.example/a"));
        assert!(!same("http://s.example/a", "https://s.example/a"));
        assert!(!same("https://s.example/a?x=1", "https://s.example/a"));
        assert_eq!(normalize("data:application/json;base64,e30="), None);
        assert_eq!(normalize("not a url"), None);
    }

    #[test]
    fn documents_live_under_the_sellers_base() {
        let doc = |s: &str| document_url(s).unwrap();
        assert_eq!(
            doc("http://127.0.0.1:8080/services/llm"),
            "http://127.0.0.1:8080/.well-known/agent-registration.json"
        );
        assert_eq!(
            doc("https://S.example:443/services/llm/v1/chat/completions"),
            "https://s.example/.well-known/agent-registration.json"
        );
        // A stack behind a path prefix: the base keeps it.
        assert_eq!(
            doc("https://host.example/tunnel/abc/services/llm/v1/chat/completions"),
            "https://host.example/tunnel/abc/.well-known/agent-registration.json"
        );
        // No /services/ segment: the origin.
        assert_eq!(
            doc("https://host.example/some/api?x=1"),
            "https://host.example/.well-known/agent-registration.json"
        );
        assert!(document_url("ftp://x/").is_err());
        assert_eq!(
            seller_base("https://s.example:8443/a/services/b").as_deref(),
            Some("https://s.example:8443/a")
        );
        assert_eq!(seller_base("data:application/json;base64,e30="), None);
    }

    #[test]
    fn catalogs_and_skips_are_classified() {
        let entries = Catalog::from_fetch(Ok(br#"{"services":[{"endpoint":"x"}]}"#.to_vec()));
        assert!(matches!(entries, Catalog::Entries(ref e) if e.len() == 1));
        assert!(matches!(
            Catalog::from_fetch(Ok(b"[]".to_vec())),
            Catalog::Unavailable
        ));
        let timed_out = Erc8004Error::FetchTimedOut { uri: "u".into() };
        let non_public = Erc8004Error::NonPublicAddress { uri: "u".into() };
        assert_eq!(skip_reason(&timed_out), "timedOut");
        assert_eq!(skip_reason(&non_public), "nonPublic");
        assert!(matches!(
            Catalog::from_fetch(Err(timed_out)),
            Catalog::TimedOut
        ));
        assert!(matches!(
            Catalog::from_fetch(Err(non_public)),
            Catalog::NonPublic
        ));
    }
}
