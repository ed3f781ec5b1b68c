//! `obol sell register` and `obol sell identity import|forget|show`: the stack's ERC-8004 agent
//! ids, one per chain, kept in the `AgentIdentity` `x402/default` (status) through the admin API.
//!
//! The daemon never signs: these commands do, with the operator's key, and record what the chain
//! says. Registration never mints twice (obol-erc8004 recovers a mined registration by owner and
//! URI before sending, and `ensure_registered` updates a drifted agentURI instead of minting).
//! `sell http|inference` run the same flow when they can do it without asking anything
//! ([`auto_register`]); a failure there is a warning, the offer keeps serving.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use obol_config::networks::chain_key;
use obol_config::{NetworksFile, env};
use obol_control::ServiceOffer;
use obol_control::ServiceOfferSpec;
use obol_control::identity::{
    AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY, default_identity,
};
use obol_control::registration::{ChainIds, agent_uri};
use obol_daemon::{AdminClient, StackStatus};
use obol_erc8004::{
    AgentRegistry, ClientOptions, Ensured, Erc8004Error, IdentityClient, Registries, U256,
    printable,
};
use obol_wallet::{PasswordSource, SignerSource, WalletStore, read_password};
use obol_x402::LocalSigner;
use serde_json::{Value, json};

use super::Context;
use super::stack::require_admin;
use crate::cli::{IdentityCommand, SellRegisterArgs};
use crate::output;

/// Retry and wait settings of `sell http|inference`'s registration: it must not hold the
/// command for minutes.
fn auto_options() -> ClientOptions {
    ClientOptions {
        attempts: 2,
        backoff: Duration::from_secs(2),
        receipt_timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

/// How hard the register flow tries (retries, waits), and from which block it looks for an
/// earlier registration (`None`: the client's default look-back). The options'
/// `mint_despite_older_agents` is `--new-agent`.
struct Effort {
    options: ClientOptions,
    search_from: Option<u64>,
}

/// The balance guard's refusal ([`Erc8004Error::UnsearchedAgents`]) explained with the commands
/// that get past it; a distinct type so auto-registration can tell it from a failure worth
/// retrying as is.
#[derive(Debug)]
struct OlderAgents(String);

impl std::fmt::Display for OlderAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OlderAgents {}

/// What one run of the register flow did.
struct Registered {
    /// The chain as recorded in the identity.
    chain: String,
    registry: AgentRegistry,
    agent_id: U256,
    agent_uri: String,
    /// `registered`, `recovered`, `uriUpdated` or `unchanged`.
    outcome: &'static str,
    tx_hash: Option<String>,
    /// The agentURI before an update (untrusted: escaped).
    previous_uri: Option<String>,
    owner: obol_erc8004::Address,
    /// Whether the `x402` metadata was written (`None`: it failed, see `warnings`).
    metadata_written: Option<bool>,
    warnings: Vec<String>,
}

impl Registered {
    fn json(&self) -> Value {
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
    fn what(&self) -> String {
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
fn agent_id_json(id: U256) -> Value {
    u64::try_from(id).map_or_else(|_| json!(id.to_string()), |n| json!(n))
}

/// The canonical identity, or an empty one when none is stored yet.
async fn load_identity(client: &AdminClient) -> anyhow::Result<AgentIdentity> {
    match client
        .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
        .await
    {
        Ok(identity) => Ok(identity),
        Err(e) if e.status == Some(404) => Ok(default_identity()),
        Err(e) => Err(e.into()),
    }
}

fn chain_ids(ctx: &Context) -> anyhow::Result<ChainIds> {
    Ok(ChainIds::from_networks(&NetworksFile::load(
        &ctx.paths.networks_file(),
    )?))
}

/// The chain's client and its Identity Registry.
fn chain_and_registry(
    ctx: &Context,
    chain: &str,
) -> anyhow::Result<(obol_chain::ChainClient, AgentRegistry)> {
    let client = super::network::client(ctx, chain)?;
    let registry = Registries::builtin()
        .get(client.chain_id())
        .with_context(|| {
            format!(
                "no ERC-8004 Identity Registry is known on {} (chain id {})",
                chain_key(chain),
                client.chain_id()
            )
        })?;
    Ok((client, registry))
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
        let same = super::discover::normalize(&endpoint)
            .is_some_and(|e| super::discover::normalize(&public) == Some(e));
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

/// The recorded entry for `chain` (same name, else same chain id) as `(name, id)`.
fn recorded(
    identity: &AgentIdentity,
    chains: &ChainIds,
    chain: &str,
) -> anyhow::Result<Option<(String, U256)>> {
    chains
        .registration_for(&identity.status, chain)
        .map(|r| {
            let id = U256::from_str_radix(r.agent_id.trim(), 10).map_err(|_| {
                anyhow::anyhow!(
                    "the agent id recorded for {} is not a number ({:?}); forget it with `obol sell identity forget {}`",
                    r.chain,
                    printable(&r.agent_id, 40),
                    r.chain
                )
            })?;
            Ok((r.chain.clone(), id))
        })
        .transpose()
}

/// What `sell register` may change in the identity's spec.
#[derive(Default)]
struct SpecUpdate {
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

/// Re-reads the identity, applies `change`, and stores it.
async fn update_identity(
    client: &AdminClient,
    change: impl FnOnce(&mut AgentIdentity) -> anyhow::Result<()>,
) -> anyhow::Result<AgentIdentity> {
    let mut identity = load_identity(client).await?;
    change(&mut identity)?;
    Ok(client.apply(&identity).await?.object)
}

/// Explains the errors an operator can act on.
fn explain(error: Erc8004Error, chain: &str, existing: Option<U256>) -> anyhow::Error {
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
async fn register_on(
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
pub(super) async fn register(ctx: &Context, args: &SellRegisterArgs) -> anyhow::Result<ExitCode> {
    let settings = obol_config::stack::StackFile::load(&ctx.paths.stack_file())?;
    let chain = args
        .chain
        .clone()
        .or(settings.default_chain)
        .context("pass --chain (or set a default with `obol sell pricing --chain`)")?;
    let client = require_admin(ctx)?;
    let status = client.status().await?;
    let base = agent_base(&status, args.endpoint.as_deref())?;
    if let Some(image) = &args.image {
        obol_config::public_url::validate(image).context("--image")?;
    }
    let (signer, _) = super::wallet::load_signer(ctx, &args.signer)?;
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

/// What [`auto_register`] did.
pub(super) enum AutoRegistration {
    /// Not attempted, and why (with the command that would do it).
    Skipped(String),
    /// Done.
    Done(Box<RegisteredSummary>),
    /// Attempted and failed: a warning, the offer keeps serving.
    Failed(String),
}

/// The part of a registration `sell http|inference` reports.
pub(super) struct RegisteredSummary {
    line: String,
    json: Value,
    warnings: Vec<String>,
}

impl AutoRegistration {
    /// The `registration` member of `sell http --json`.
    pub(super) fn json(&self) -> Value {
        match self {
            Self::Skipped(reason) => json!({"status": "skipped", "reason": reason}),
            Self::Done(done) => {
                let mut value = done.json.clone();
                value["status"] = json!("registered");
                value
            }
            Self::Failed(error) => json!({"status": "failed", "error": error}),
        }
    }

    /// Human lines: a summary on stdout, warnings on stderr.
    pub(super) fn print(&self) {
        match self {
            Self::Skipped(reason) => println!("  ERC-8004: not registered: {reason}"),
            Self::Done(done) => {
                println!("  ERC-8004: {}", done.line);
                for warning in &done.warnings {
                    output::note(&format!("warning: {warning}"));
                }
            }
            Self::Failed(error) => output::note(&format!(
                "warning: ERC-8004 registration failed: {error}; the offer serves paid traffic \
                 meanwhile (Registered: AwaitingExternalRegistration)"
            )),
        }
    }
}

/// A signer available without asking anything: `OBOL_PRIVATE_KEY`, or the default wallet with
/// `OBOL_WALLET_PASSWORD`.
fn signer_without_prompt(ctx: &Context) -> Result<Option<LocalSigner>, String> {
    let env_key = std::env::var(env::PRIVATE_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    let store = WalletStore::new(&ctx.paths);
    let source = SignerSource::resolve(env_key.is_some(), None);
    if source == SignerSource::EnvKey {
        return source
            .load(&store, env_key.as_deref(), || Ok(String::new()))
            .map(Some)
            .map_err(|e| e.to_string());
    }
    let password = PasswordSource {
        file: None,
        env: std::env::var(env::WALLET_PASSWORD).ok(),
        prompt: false,
    };
    if password.env.as_deref().is_none_or(str::is_empty)
        || !store.path(obol_wallet::DEFAULT_WALLET).exists()
    {
        return Ok(None);
    }
    source
        .load(&store, None, || read_password(&password, false))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Registers the stack on `offer`'s chain after `sell http|inference` applied it, when that
/// needs no question: registration enabled, a public URL, a signer without a prompt, a
/// write-enabled endpoint for the chain. Never fails the command.
pub(super) async fn auto_register(
    ctx: &Context,
    client: &AdminClient,
    offer: &ServiceOffer,
) -> Option<AutoRegistration> {
    if !offer.spec.registration.as_ref().is_some_and(|r| r.enabled) {
        return None;
    }
    let chain = chain_key(&offer.spec.payment.network);
    let by_hand = format!("register with `obol sell register --chain {chain}`");
    let status = match client.status().await {
        Ok(status) => status,
        Err(e) => return Some(AutoRegistration::Failed(e.to_string())),
    };
    if status.public_url_is_default {
        return Some(AutoRegistration::Skipped(format!(
            "no public URL is set; set one (`obol stack up --public-url https://…`), then {by_hand}"
        )));
    }
    let writable = NetworksFile::load(&ctx.paths.networks_file())
        .ok()
        .and_then(|file| file.get(&chain).cloned())
        .is_some_and(|c| c.endpoints.iter().any(|e| e.allow_writes));
    if !writable {
        return Some(AutoRegistration::Skipped(format!(
            "no write-enabled RPC endpoint for {chain} (`obol network add {chain} --endpoint URL --allow-writes`); then {by_hand}"
        )));
    }
    let signer = match signer_without_prompt(ctx) {
        Ok(Some(signer)) => signer,
        Ok(None) => {
            return Some(AutoRegistration::Skipped(format!(
                "no signer available without a prompt (set {} or {}); {by_hand}",
                env::PRIVATE_KEY,
                env::WALLET_PASSWORD
            )));
        }
        Err(e) => return Some(AutoRegistration::Failed(e)),
    };
    let base = status.public_url.trim_end_matches('/').to_owned();
    let registered = register_on(
        ctx,
        client,
        &chain,
        &base,
        &signer,
        &SpecUpdate::default(),
        Effort {
            options: auto_options(),
            search_from: None,
        },
    )
    .await;
    Some(match registered {
        Ok(r) => AutoRegistration::Done(Box::new(RegisteredSummary {
            line: format!("agent {} on {}: {}", r.agent_id, r.chain, r.what()),
            json: r.json(),
            warnings: r.warnings,
        })),
        Err(e) => AutoRegistration::Failed(auto_failure(&e, &chain)),
    })
}

/// Auto-registration's warning for a failed registration on `chain`: what went wrong and the
/// command to run.
fn auto_failure(error: &anyhow::Error, chain: &str) -> String {
    if error.is::<OlderAgents>() {
        // Retrying as is would be refused every time: the explanation names the commands
        // (`--new-agent`, `--search-from-block`, `sell identity import`).
        format!("{error:#}")
    } else {
        format!("{error:#}; retry with `obol sell register --chain {chain}`")
    }
}

/// `obol sell identity …`.
pub(super) async fn identity(ctx: &Context, command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Import {
            agent_id,
            chain,
            signer,
        } => import(ctx, agent_id, &chain, &signer).await,
        IdentityCommand::Forget { chain } => forget(ctx, &chain).await,
        IdentityCommand::Show => show(ctx).await,
    }
}

async fn import(
    ctx: &Context,
    agent_id: u64,
    chain: &str,
    signer_args: &crate::cli::SignerArgs,
) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx)?;
    let (chain_client, registry) = chain_and_registry(ctx, chain)?;
    let chains = chain_ids(ctx)?;
    let identity = load_identity(&client).await?;
    let existing = recorded(&identity, &chains, chain)?;
    let id = U256::from(agent_id);
    if let Some((name, other)) = &existing
        && *other != id
    {
        bail!(
            "{name} already has agent id {other}; forget it first with `obol sell identity forget {name}`"
        );
    }
    let (signer, _) = super::wallet::load_signer(ctx, signer_args)?;
    let reader = IdentityClient::new(chain_client, registry)?;
    let control = reader
        .verify_control(id, signer.address())
        .await
        .map_err(|e| match e {
            Erc8004Error::UnknownAgent { .. } => {
                anyhow::anyhow!("agent {agent_id} does not exist in {registry}")
            }
            other => other.into(),
        })?;
    if !control.controls() {
        let wallet = control
            .agent_wallet
            .map_or_else(String::new, |w| format!(", agent wallet {w}"));
        bail!(
            "signer {} does not control agent {agent_id} (owner {}{wallet}); sign with its owner or agent wallet",
            signer.address(),
            control.owner
        );
    }
    let uri = reader.agent_uri(id).await?;
    let record_as = existing.map_or_else(|| chain_key(chain), |(name, _)| name);
    update_identity(&client, |identity| {
        Ok(identity
            .status
            .record(&record_as, &agent_id.to_string(), None)?)
    })
    .await?;
    let status = client.status().await?;
    let ours = (!status.public_url_is_default).then(|| agent_uri(&status.public_url));
    let drifted = ours.as_deref().is_some_and(|ours| ours != uri.trim());
    if ctx.json {
        output::json(&json!({
            "agentId": agent_id, "chain": record_as, "agentRegistry": registry.to_string(),
            "owner": control.owner.to_checksum(None), "agentUri": uri,
            "pointsHere": ours.as_deref().map(|ours| ours == uri.trim()),
        }))?;
    } else {
        println!("Imported agent {agent_id} on {record_as} ({registry})");
        println!("  owner:    {}", control.owner);
        println!("  agentURI: {}", printable(&uri, 200));
        if drifted {
            output::note(&format!(
                "note: its agentURI is not this stack's document; point it here with `obol sell register --chain {record_as}`"
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(ctx: &Context, chain: &str) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx)?;
    let mut forgotten = None;
    update_identity(&client, |identity| {
        let key = chain_key(chain);
        let Some(entry) = identity
            .status
            .registrations
            .iter()
            .find(|r| chain_key(&r.chain) == key)
            .cloned()
        else {
            let recorded: Vec<&str> = identity
                .status
                .registrations
                .iter()
                .map(|r| r.chain.as_str())
                .collect();
            bail!(
                "no agent id is recorded for {key} (recorded: {})",
                if recorded.is_empty() {
                    "none".to_owned()
                } else {
                    recorded.join(", ")
                }
            );
        };
        identity.status.remove(&entry.chain);
        forgotten = Some(entry);
        Ok(())
    })
    .await?;
    let entry = forgotten.context("nothing forgotten")?;
    if ctx.json {
        output::json(&json!({"forgotten": {"chain": entry.chain, "agentId": entry.agent_id}}))?;
    } else {
        println!(
            "Forgot agent {} on {}; the NFT stays on-chain (import it again with `obol sell identity import --agent-id {} --chain {}`)",
            entry.agent_id, entry.chain, entry.agent_id, entry.chain
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Context) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx)?;
    let identity = load_identity(&client).await?;
    let status = client.status().await?;
    let chains = chain_ids(ctx)?;
    let document = agent_uri(&status.public_url);
    let rows: Vec<Value> = identity
        .status
        .registrations
        .iter()
        .map(|r| {
            json!({
                "chain": r.chain,
                "chainId": chains.chain_id(&r.chain),
                "agentId": r.agent_id,
                "agentRegistry": chains.registry(&r.chain).map(|g| g.to_string()),
                "txHash": r.tx_hash,
            })
        })
        .collect();
    if ctx.json {
        output::json(&json!({
            "namespace": identity.metadata.namespace,
            "name": identity.metadata.name,
            "spec": identity.spec,
            "agentUri": document,
            "publicUrlIsDefault": status.public_url_is_default,
            "registrations": rows,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "AgentIdentity {}/{}",
        identity.metadata.namespace, identity.metadata.name
    );
    println!("  document: {document}");
    if let Some(name) = &identity.spec.name {
        println!("  name:     {name}");
    }
    if identity.status.registrations.is_empty() {
        println!("  no agent ids yet; register with `obol sell register --chain C`");
        return Ok(ExitCode::SUCCESS);
    }
    for (r, row) in identity.status.registrations.iter().zip(&rows) {
        println!(
            "  {:14} agent {:8} {}",
            r.chain,
            r.agent_id,
            row["agentRegistry"]
                .as_str()
                .unwrap_or("(no known registry)")
        );
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
        }
    }

    /// The balance guard's refusal names the ways past it, `--new-agent` among them, on the
    /// command line and in auto-registration's warning (which then offers no plain retry).
    #[test]
    fn older_agents_are_explained_with_the_commands_to_run() {
        let refusal = Erc8004Error::UnsearchedAgents {
            op: "register",
            owner: obol_erc8004::Address::ZERO,
            held: U256::from(2),
            seen: 0,
            from_block: 500,
        };
        let explained = explain(refusal, "base", None);
        assert!(explained.is::<OlderAgents>());
        let text = explained.to_string();
        for command in [
            "`obol sell identity import --agent-id N --chain base`",
            "`obol sell register --chain base --search-from-block B`",
            "`obol sell register --chain base --new-agent`",
        ] {
            assert!(text.contains(command), "{command}: {text}");
        }
        assert!(
            text.contains("Only blocks from 500 were searched"),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains("  "), "{text}");
        let warning = auto_failure(&explained, "base");
        assert_eq!(warning, text);
        assert!(!warning.contains("retry with"), "{warning}");

        let other = explain(
            Erc8004Error::Rpc {
                op: "register",
                message: "boom".to_owned(),
                transient: true,
            },
            "base",
            None,
        );
        assert!(!other.is::<OlderAgents>());
        assert!(
            auto_failure(&other, "base")
                .ends_with("; retry with `obol sell register --chain base`")
        );
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
