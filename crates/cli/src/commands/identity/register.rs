//! `obol sell register`: the register flow ([`register_on`], shared with auto-registration)
//! ensures an agent on the chain whose agentURI is this stack's document, records its id and
//! writes the `x402` metadata; around it, the checks on the public URL and the explanations of
//! the errors an operator can act on.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use obol_config::networks::chain_key;
use obol_control::identity::AgentIdentitySpec;
use obol_control::registration::{ChainIds, agent_uri};
use obol_control::{ServiceOffer, ServiceOfferSpec};
use obol_daemon::{AdminClient, StackStatus};
use obol_erc8004::{
    AgentRegistry, ClientOptions, Ensured, Erc8004Error, IdentityClient, U256, printable,
};
use obol_x402::LocalSigner;
use serde_json::{Value, json};

use super::{chain_and_registry, chain_ids, load_identity, recorded, update_identity};
use crate::cli::SellRegisterArgs;
use crate::commands::Context;
use crate::commands::stack::require_admin;
use crate::output;

/// How hard the register flow tries (retries, waits), and from which block it looks for an
/// earlier registration (`None`: the client's default look-back). The options'
/// `mint_despite_older_agents` is `--new-agent`.
pub(in crate::commands) struct Effort {
    pub(in crate::commands) options: ClientOptions,
    pub(in crate::commands) search_from: Option<u64>,
}

/// The balance guard's refusal ([`Erc8004Error::UnsearchedAgents`]) explained with the commands
/// that get past it; a distinct type so auto-registration can tell it from a failure worth
/// retrying as is.
#[derive(Debug)]
pub(super) struct OlderAgents(String);

impl std::fmt::Display for OlderAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OlderAgents {}

/// What one run of the register flow did.
pub(in crate::commands) struct Registered {
    /// The chain as recorded in the identity.
    pub(super) chain: String,
    registry: AgentRegistry,
    pub(super) agent_id: U256,
    agent_uri: String,
    /// `registered`, `recovered`, `uriUpdated` or `unchanged`.
    outcome: &'static str,
    tx_hash: Option<String>,
    /// The agentURI before an update (untrusted: escaped).
    previous_uri: Option<String>,
    owner: obol_erc8004::Address,
    /// Whether the `x402` metadata was written (`None`: it failed, see `warnings`).
    metadata_written: Option<bool>,
    pub(super) warnings: Vec<String>,
}

impl Registered {
    pub(in crate::commands) fn json(&self) -> Value {
        json!({
            "agentId": agent_id_json(self.agent_id),
            "chain": self.chain,
            "chainId": self.registry.chain_id,
            "agentRegistry": self.registry.to_string(),
            "agentUri": self.agent_uri,
            "outcome": self.outcome,
            "txHash": self.tx_hash,
            "previousUri": self.previous_uri,
            "owner": self.owner.to_checksum(None),
            "metadataWritten": self.metadata_written,
            "warnings": self.warnings,
        })
    }

    /// One line saying what happened on-chain.
    pub(in crate::commands) fn what(&self) -> String {
        let tx = self.tx_hash.as_deref().unwrap_or("?");
        match self.outcome {
            "registered" => format!("registered in transaction {tx}"),
            "recovered" => format!("already registered by this signer in transaction {tx}"),
            "uriUpdated" => format!(
                "agentURI updated from \"{}\" in transaction {tx}",
                self.previous_uri.as_deref().unwrap_or_default()
            ),
            _ => "unchanged: the agent already points at this stack".to_owned(),
        }
    }
}

/// An agent id as JSON: a number when it fits, else a decimal string.
pub(in crate::commands) fn agent_id_json(id: U256) -> Value {
    u64::try_from(id).map_or_else(|_| json!(id.to_string()), |n| json!(n))
}

/// The base URL the agentURI points under: the stack's public URL, which must not be the local
/// default (nobody else could fetch the document). `--endpoint`, when given, must be that URL
/// (trailing slash, scheme and host case, default port aside): the document lists the offers
/// under the public URL, so an agentURI elsewhere would make buyers checking the agent refuse it.
fn agent_base(status: &StackStatus, endpoint: Option<&str>) -> anyhow::Result<String> {
    if status.public_url_is_default {
        bail!(
            "the stack has no public URL (it answers at {} only on this machine), so nobody could \
             fetch its registration document; restart it with `obol stack up --public-url https://…` \
             (or set OBOL_PUBLIC_URL, or `obol stack init --public-url`), then register again",
            status.public_url
        );
    }
    let public = status.public_url.trim_end_matches('/').to_owned();
    if let Some(endpoint) = endpoint {
        let endpoint = obol_config::public_url::validate(endpoint).context("--endpoint")?;
        let same = crate::commands::discover::normalize(&endpoint)
            .is_some_and(|e| crate::commands::discover::normalize(&public) == Some(e));
        if !same {
            bail!(
                "--endpoint {} is not the stack's public URL {public}: the registration document \
                 lists the offers under the public URL, so buyers checking the agent would refuse \
                 it; restart the stack with `obol stack up --public-url {}`, then register again",
                printable(&endpoint, 120),
                printable(endpoint.trim_end_matches('/'), 120)
            );
        }
    }
    Ok(public)
}

/// True when `base` names this machine only (loopback or localhost).
fn is_loopback(base: &str) -> bool {
    url::Url::parse(base).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    })
}

/// What `sell register` may change in the identity's spec.
#[derive(Default)]
pub(in crate::commands) struct SpecUpdate {
    name: Option<String>,
    description: Option<String>,
    image: Option<String>,
}

impl SpecUpdate {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none() && self.image.is_none()
    }

    fn apply(&self, spec: &mut AgentIdentitySpec) {
        if let Some(name) = &self.name {
            spec.name = Some(name.clone());
        }
        if let Some(description) = &self.description {
            spec.description = Some(description.clone());
        }
        if let Some(image) = &self.image {
            spec.image = Some(image.clone());
        }
    }
}

/// Explains the errors an operator can act on.
pub(super) fn explain(error: Erc8004Error, chain: &str, existing: Option<U256>) -> anyhow::Error {
    match (&error, existing) {
        (Erc8004Error::UnknownAgent { agent_id }, Some(_)) => anyhow::anyhow!(
            "agent {agent_id} recorded for {chain} does not exist on that chain (was the devnet \
             reset?); forget it with `obol sell identity forget {chain}` and register again"
        ),
        (Erc8004Error::NotAuthorized { .. }, _) => anyhow::anyhow!(
            "{error}; sign with the key that owns it, or forget it with `obol sell identity forget {chain}`"
        ),
        (Erc8004Error::NoWriteEndpoint { .. }, _) => anyhow::anyhow!(
            "{error} (add one with `obol network add {chain} --endpoint URL --allow-writes`)"
        ),
        (Erc8004Error::UnsearchedAgents { from_block, .. }, _) => {
            anyhow::Error::new(OlderAgents(format!(
                "{error}. Only blocks from {from_block} were searched (the default is the last \
                 10000). If one of those agents is this stack, record its id with `obol sell \
                 identity import --agent-id N --chain {chain}`, or let registration find it with \
                 `obol sell register --chain {chain} --search-from-block B` (0 searches the whole \
                 chain: slow on a public chain); if none of them is, mint a new agent with `obol \
                 sell register --chain {chain} --new-agent`"
            )))
        }
        _ => error.into(),
    }
}

/// The register flow: ensure an agent on `chain` whose agentURI is this stack's document, record
/// its id, write the `x402` metadata (a failure there is a warning).
pub(in crate::commands) async fn register_on(
    ctx: &Context,
    client: &AdminClient,
    chain: &str,
    base: &str,
    signer: &LocalSigner,
    spec: &SpecUpdate,
    effort: Effort,
) -> anyhow::Result<Registered> {
    let (chain_client, registry) = chain_and_registry(ctx, chain)?;
    let chains = chain_ids(ctx)?;
    let identity = load_identity(client).await?;
    let existing = recorded(&identity, &chains, chain)?;
    let record_as = existing
        .as_ref()
        .map_or_else(|| chain_key(chain), |(name, _)| name.clone());
    if !spec.is_empty() {
        // Before registering: the document the registry's readers fetch names the agent so.
        update_identity(client, |identity| {
            spec.apply(&mut identity.spec);
            Ok(())
        })
        .await?;
    }
    let uri = agent_uri(base);
    let identity_client = IdentityClient::new(chain_client, registry)?
        .with_signer(signer)
        .with_options(effort.options);
    let existing_id = existing.as_ref().map(|(_, id)| *id);
    let ensured = identity_client
        .ensure_registered(existing_id, &uri, effort.search_from)
        .await
        .map_err(|e| explain(e, &record_as, existing_id))?;
    let agent_id = ensured.agent_id();
    let (outcome, tx_hash, previous_uri) = match &ensured {
        Ensured::Unchanged { .. } => ("unchanged", None, None),
        Ensured::UriUpdated {
            previous_uri,
            tx_hash,
            ..
        } => (
            "uriUpdated",
            Some(tx_hash.to_string()),
            Some(printable(previous_uri, 120)),
        ),
        Ensured::Registered(r) if r.recovered => ("recovered", Some(r.tx_hash.to_string()), None),
        Ensured::Registered(r) => ("registered", Some(r.tx_hash.to_string()), None),
    };
    let registering_tx = match &ensured {
        Ensured::Registered(r) => Some(r.tx_hash.to_string()),
        _ => None,
    };
    update_identity(client, |identity| {
        Ok(identity
            .status
            .record(&record_as, &agent_id.to_string(), registering_tx.as_deref())?)
    })
    .await
    .with_context(|| format!("agent {agent_id} is registered but could not be recorded"))?;
    let mut warnings = Vec::new();
    let metadata_written = match identity_client.sync_x402_metadata(agent_id).await {
        Ok(written) => Some(written),
        Err(e) => {
            warnings.push(format!("the x402 metadata was not written: {e}"));
            None
        }
    };
    Ok(Registered {
        chain: record_as,
        registry,
        agent_id,
        agent_uri: uri,
        outcome,
        tx_hash,
        previous_uri,
        owner: signer.address(),
        metadata_written,
        warnings,
    })
}

/// The payees of registered offers on the chain of `registry` that are not `signer`.
fn other_payees(
    offers: &[ServiceOffer],
    chains: &ChainIds,
    registry: &AgentRegistry,
    signer: obol_erc8004::Address,
) -> Vec<String> {
    let mut payees: Vec<String> = offers
        .iter()
        .filter(|o| o.spec.registration.as_ref().is_some_and(|r| r.enabled))
        .filter(|o| chains.chain_id(&o.spec.payment.network) == Some(registry.chain_id))
        .map(|o| o.spec.payment.pay_to.clone())
        .filter(|pay_to| pay_to.parse::<obol_erc8004::Address>().ok() != Some(signer))
        .collect();
    payees.sort();
    payees.dedup();
    payees
}

/// `obol sell register`.
pub(in crate::commands) async fn register(
    ctx: &Context,
    args: &SellRegisterArgs,
) -> anyhow::Result<ExitCode> {
    let settings = obol_config::stack::StackFile::load(&ctx.paths.stack_file())?;
    let chain = args
        .chain
        .clone()
        .or(settings.default_chain)
        .context("pass --chain (or set a default with `obol sell pricing --chain`)")?;
    let client = require_admin(ctx).await?;
    let status = client.status().await?;
    let base = agent_base(&status, args.endpoint.as_deref())?;
    if let Some(image) = &args.image {
        obol_config::public_url::validate(image).context("--image")?;
    }
    let (signer, _) = crate::commands::wallet::load_signer(ctx, &args.signer)?;
    let spec = SpecUpdate {
        name: args.name.clone(),
        description: args.description.clone(),
        image: args.image.clone(),
    };
    let registered = register_on(
        ctx,
        &client,
        &chain,
        &base,
        &signer,
        &spec,
        Effort {
            options: ClientOptions {
                mint_despite_older_agents: args.new_agent,
                ..ClientOptions::default()
            },
            search_from: args.search_from_block,
        },
    )
    .await?;
    let offers = client.list::<ServiceOfferSpec>().await?;
    let payees = other_payees(
        &offers,
        &chain_ids(ctx)?,
        &registered.registry,
        signer.address(),
    );
    let mut notes = Vec::new();
    if !payees.is_empty() {
        notes.push(format!(
            "the agent is owned by {}, payments go to {}: a hot signer and a cold payee is fine",
            signer.address(),
            payees.join(", ")
        ));
    }
    if is_loopback(&base) {
        notes.push(format!(
            "{base} is a loopback address: only this machine can fetch the registration document"
        ));
    }
    if ctx.json {
        let mut value = registered.json();
        value["notes"] = json!(notes);
        output::json(&value)?;
    } else {
        println!("Agent ID: {}", registered.agent_id);
        println!("  chain:    {} ({})", registered.chain, registered.registry);
        println!("  agentURI: {}", registered.agent_uri);
        println!("  owner:    {}", registered.owner);
        println!("  {}", registered.what());
        for note in &notes {
            output::note(&format!("note: {note}"));
        }
        for warning in &registered.warnings {
            output::note(&format!("warning: {warning}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(public_url: &str, default: bool) -> StackStatus {
        StackStatus {
            stack_id: "t".into(),
            pid: 1,
            gateway: "127.0.0.1:8080".into(),
            public_url: public_url.into(),
            public_url_is_default: default,
            routes: 0,
            facilitator: obol_daemon::FacilitatorSummary::default(),
        }
    }

    /// `--new-agent` is a flag of `sell register`, off by default.
    #[test]
    fn the_new_agent_flag_parses() {
        use crate::cli::{Cli, Command, SellCommand};
        use clap::Parser as _;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["obol", "sell", "register", "--chain", "base"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Sell(SellCommand::Register(args)) => args.new_agent,
                other => panic!("{other:?}"),
            }
        };
        assert!(!parse(&[]));
        assert!(parse(&["--new-agent"]));
    }

    #[test]
    fn the_agent_base_is_the_public_url() {
        let local = status("http://127.0.0.1:8080", true);
        for endpoint in [None, Some("https://seller.example/")] {
            let refused = agent_base(&local, endpoint).unwrap_err().to_string();
            assert!(refused.contains("the stack has no public URL"), "{refused}");
            assert!(
                refused.contains("restart it with `obol stack up --public-url https://…`"),
                "{refused}"
            );
            assert!(!refused.contains("--endpoint"), "{refused}");
        }
        let public = status("https://seller.example/", false);
        assert_eq!(agent_base(&public, None).unwrap(), "https://seller.example");
        for same in [
            "https://seller.example",
            "https://seller.example/",
            "HTTPS://Seller.Example:443",
        ] {
            assert_eq!(
                agent_base(&public, Some(same)).unwrap(),
                "https://seller.example",
                "{same}"
            );
        }
        let moved = agent_base(&public, Some("https://moved.example/"))
            .unwrap_err()
            .to_string();
        assert!(
            moved.starts_with(
                "--endpoint https://moved.example is not the stack's public URL https://seller.example:"
            ),
            "{moved}"
        );
        assert!(
            moved.contains(
                "restart the stack with `obol stack up --public-url https://moved.example`"
            ),
            "{moved}"
        );
        assert!(agent_base(&public, Some("ftp://x")).is_err());
        assert!(is_loopback("http://127.0.0.1:9"));
        assert!(is_loopback("http://localhost:9"));
        assert!(is_loopback("http://[::1]:9"));
        assert!(!is_loopback("https://seller.example"));
    }
}
