//! The stack's ERC-8004 registration document, served at
//! `/.well-known/agent-registration.json` (obol-stack.md §6.5), built from the offers and the
//! `AgentIdentity`. Pure: no store, no chain.
//!
//! - Publishable offers: registration enabled and listed by the storefront
//!   ([`crate::storefront::is_listed`]: not deleting, not drained, Ready or every gate
//!   condition True), sorted by namespace then name.
//! - Active document: the owner is the oldest publishable offer; it names the agent, describes
//!   it and brings `metadata` and `provenance`. Every publishable offer adds a `web` service,
//!   and an `OASF` entry when it lists skills or domains.
//! - Tombstone (nothing publishable): no services, `active` and `x402Support` false, the
//!   registrations kept — the NFT outlives the offers.
//! - `registrations[]`: the identity's chains sorted by name, as
//!   `eip155:<chainId>:<registry>`; chains without a known registry are skipped.
//! - The identity's `spec` (name, description, image) comes before the owner offer's
//!   registration block.
//!
//! Chain names: the identity records the name the operator registered on (`base-sepolia`,
//! `devnet`), offers name theirs in `payment.network` (`base-sepolia`, `eip155:84532`).
//! [`ChainIds`] resolves both to chain ids, so an offer finds its agent id whatever the naming.

use std::collections::BTreeMap;
use std::sync::Arc;

use obol_config::NetworksFile;
use obol_config::networks::chain_key;
use obol_erc8004::document::WELL_KNOWN_PATH;
use obol_erc8004::{AgentRegistry, RegistrationDocument, RegistrationRef, Registries, Service};

use crate::identity::{AgentIdentity, AgentIdentityStatus, ChainRegistration};
use crate::offer::{OfferType, ServiceOffer};
use crate::reconcile::{parse_duration, parse_rfc3339};
use crate::storefront::is_listed;

/// The image advertised when the owner offer names none, relative to the base URL.
pub const DEFAULT_IMAGE_PATH: &str = "/agent-icon.png";

/// The agentURI of a stack served at `base_url`: `<base>/.well-known/agent-registration.json`.
pub fn agent_uri(base_url: &str) -> String {
    format!("{}{WELL_KNOWN_PATH}", base_url.trim_end_matches('/'))
}

/// The offers the document lists: registration enabled and storefront-listed, sorted by
/// namespace then name.
pub fn publishable(offers: &[ServiceOffer], now: u64) -> Vec<&ServiceOffer> {
    let mut out: Vec<&ServiceOffer> = offers
        .iter()
        .filter(|o| o.spec.registration.as_ref().is_some_and(|r| r.enabled) && is_listed(o, now))
        .collect();
    out.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    out
}

/// The registry of a chain the x402 network table knows (`base-sepolia`, `base`, CAIP-2 ids).
/// Custom chain names (`devnet`) resolve through their configured chain id instead:
/// `Registries::builtin().get(chain_id)`.
pub fn builtin_registry(chain: &str) -> Option<AgentRegistry> {
    Registries::builtin().for_network(chain)
}

/// Chain names → EVM chain ids: the x402 network table (`base-sepolia`, `base`, `eip155:8453`),
/// then custom names (`devnet`) with the chain id the networks file gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainIds {
    custom: BTreeMap<String, u64>,
}

/// Where the daemon gets fresh [`ChainIds`] (the networks file may change while it runs:
/// `obol devnet up` after `obol stack up`).
pub type ChainIdSource = Arc<dyn Fn() -> ChainIds + Send + Sync>;

impl ChainIds {
    /// The x402 network table only.
    pub fn builtin() -> Self {
        Self::default()
    }

    /// The x402 table plus every chain of the networks file.
    pub fn from_networks(file: &NetworksFile) -> Self {
        Self {
            custom: file
                .chains
                .iter()
                .map(|(name, chain)| (name.clone(), chain.chain_id))
                .collect(),
        }
    }

    /// Adds (or replaces) a custom chain name.
    #[must_use]
    pub fn with(mut self, name: &str, chain_id: u64) -> Self {
        self.custom.insert(chain_key(name), chain_id);
        self
    }

    /// The chain id of `chain` (any alias, CAIP-2, or a custom name).
    pub fn chain_id(&self, chain: &str) -> Option<u64> {
        obol_x402::network::evm_chain_id(chain)
            .ok()
            .or_else(|| self.custom.get(&chain_key(chain)).copied())
    }

    /// The Identity Registry of `chain` (the built-in deployments; the devnet places its own at
    /// the testnet address).
    pub fn registry(&self, chain: &str) -> Option<AgentRegistry> {
        Registries::builtin().get(self.chain_id(chain)?)
    }

    /// The identity's registration for `chain`: recorded under the same name (any alias), else
    /// under another name of the same chain id (an agent id belongs to a registry, not a name:
    /// `devnet` and `base-sepolia` share chain 84532 on a devnet).
    pub fn registration_for<'a>(
        &self,
        status: &'a AgentIdentityStatus,
        chain: &str,
    ) -> Option<&'a ChainRegistration> {
        let key = chain_key(chain);
        if let Some(same) = status
            .registrations
            .iter()
            .find(|r| chain_key(&r.chain) == key)
        {
            return Some(same);
        }
        let id = self.chain_id(chain)?;
        status
            .registrations
            .iter()
            .find(|r| self.chain_id(&r.chain) == Some(id))
    }
}

/// The identity's agent ids as `registrations[]`, sorted by chain name; chains `resolve` has no
/// registry for, ids that are not decimal integers, and repeats of the same registry and id
/// are skipped.
pub fn identity_registrations(
    status: &AgentIdentityStatus,
    resolve: impl Fn(&str) -> Option<AgentRegistry>,
) -> Vec<RegistrationRef> {
    let mut chains: Vec<_> = status.registrations.iter().collect();
    chains.sort_by(|a, b| a.chain.cmp(&b.chain));
    let mut out: Vec<RegistrationRef> = Vec::new();
    for r in chains {
        let Ok(agent_id) = r.agent_id.trim().parse::<u64>() else {
            continue;
        };
        let Some(registry) = resolve(&r.chain) else {
            continue;
        };
        let entry = RegistrationRef::new(&registry, agent_id);
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The document for `identity`: active from the publishable offers, or the tombstone when there
/// are none. `resolve` maps the identity's chain names to registries (see
/// [`builtin_registry`], [`ChainIds::registry`]); `base_url` is the public base URL.
pub fn document(
    offers: &[ServiceOffer],
    identity: &AgentIdentity,
    base_url: &str,
    resolve: impl Fn(&str) -> Option<AgentRegistry>,
    now: u64,
) -> RegistrationDocument {
    let base = base_url.trim_end_matches('/');
    let registrations = identity_registrations(&identity.status, resolve);
    let listed = publishable(offers, now);
    let default_image = format!("{base}{DEFAULT_IMAGE_PATH}");
    let spec = &identity.spec;
    let Some(owner) = oldest(&listed) else {
        let name = non_empty(spec.name.as_deref()).unwrap_or(&identity.metadata.name);
        return RegistrationDocument::tombstone(
            name.to_owned(),
            format!("Agent {name} (deactivated)"),
            Some(non_empty(spec.image.as_deref()).map_or(default_image, str::to_owned)),
            registrations,
        );
    };
    let registration = owner.spec.registration.clone().unwrap_or_default();
    let name = non_empty(spec.name.as_deref())
        .or_else(|| non_empty(registration.name.as_deref()))
        .unwrap_or(&owner.metadata.name)
        .to_owned();
    let description =
        non_empty(spec.description.as_deref()).map_or_else(|| description(owner), str::to_owned);
    let mut doc = RegistrationDocument::active(name, description);
    doc.image = Some(
        non_empty(spec.image.as_deref())
            .or_else(|| non_empty(registration.image.as_deref()))
            .map_or(default_image, str::to_owned),
    );
    for offer in &listed {
        let at = format!("{base}{}", offer.effective_path());
        let mut web = match offer.spec.type_ {
            OfferType::Mcp => Service::mcp(at, crate::mcp::listing::PROTOCOL_VERSION),
            _ => Service::web(at),
        };
        web.drain_ends_at = drain_end(offer).map(obol_config::time::rfc3339);
        push_unique(&mut doc.services, web);
        if let Some(r) = &offer.spec.registration
            && (!r.skills.is_empty() || !r.domains.is_empty())
        {
            push_unique(
                &mut doc.services,
                Service::oasf(r.skills.clone(), r.domains.clone()),
            );
        }
    }
    doc.registrations = registrations;
    doc.metadata = registration.metadata;
    doc.provenance = owner.spec.provenance.clone();
    doc
}

/// The oldest offer by creation time (then namespace, name).
fn oldest<'a>(offers: &[&'a ServiceOffer]) -> Option<&'a ServiceOffer> {
    offers.iter().copied().min_by_key(|o| o.metadata.age_key())
}

/// Operator text (`registration.description`, then `spec.description`), else
/// "<model> inference via x402 micropayments" for a model offer, else
/// "x402 payment-gated <type> service: <name>".
fn description(owner: &ServiceOffer) -> String {
    let operator = owner
        .spec
        .registration
        .as_ref()
        .and_then(|r| non_empty(r.description.as_deref()))
        .or_else(|| non_empty(owner.spec.description.as_deref()));
    if let Some(text) = operator {
        return text.to_owned();
    }
    match (&owner.spec.type_, &owner.spec.model) {
        (OfferType::Inference, Some(model)) if !model.name.trim().is_empty() => {
            format!("{} inference via x402 micropayments", model.name)
        }
        (kind, _) => format!(
            "x402 payment-gated {} service: {}",
            kind.as_str(),
            owner.metadata.name
        ),
    }
}

/// When a draining offer stops being sold: `drainAt + drainGracePeriod` (default 1 h).
fn drain_end(offer: &ServiceOffer) -> Option<u64> {
    let start = parse_rfc3339(offer.spec.drain_at.as_deref()?)?;
    let grace = offer
        .spec
        .drain_grace_period
        .as_deref()
        .map_or(Some(3600), parse_duration)?;
    Some(start.saturating_add(grace))
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

fn push_unique(services: &mut Vec<Service>, service: Service) {
    if !services.contains(&service) {
        services.push(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AgentIdentitySpec, ChainRegistration, DEFAULT_IDENTITY};
    use crate::offer::{ModelSpec, RegistrationSpec};
    use crate::resource::{ConditionStatus, set_condition};
    use crate::validate::tests::served;
    use obol_erc8004::registry::{MAINNET_IDENTITY_REGISTRY, TESTNET_IDENTITY_REGISTRY};

    const NOW: u64 = 1_800_000_000;
    const BASE: &str = "https://seller.example/";

    fn ready(name: &str, created: &str, enabled: bool) -> ServiceOffer {
        let mut o = served(name);
        o.metadata.creation_timestamp = created.into();
        o.spec.registration = Some(RegistrationSpec {
            enabled,
            ..RegistrationSpec::default()
        });
        o
    }

    fn identity(chains: &[(&str, &str)]) -> AgentIdentity {
        let mut identity = AgentIdentity::new(
            DEFAULT_IDENTITY.0,
            DEFAULT_IDENTITY.1,
            AgentIdentitySpec::default(),
        );
        identity.status.registrations = chains
            .iter()
            .map(|(chain, id)| ChainRegistration {
                chain: (*chain).into(),
                agent_id: (*id).into(),
                tx_hash: None,
            })
            .collect();
        identity
    }

    #[test]
    fn active_document_from_the_publishable_offers() {
        let mut older = ready("weather", "2026-01-01T00:00:00Z", true);
        older.spec.registration = Some(RegistrationSpec {
            enabled: true,
            name: Some("Weather Agent".into()),
            description: Some("Forecasts, 0.001 USDC a call".into()),
            image: Some("https://img.example/w.png".into()),
            skills: vec!["weather".into()],
            metadata: serde_json::json!({"team": "obol"})
                .as_object()
                .unwrap()
                .clone(),
            ..RegistrationSpec::default()
        });
        older.spec.provenance = Some(
            serde_json::json!({"repo": "x"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut draining = ready("alpha", "2026-02-01T00:00:00Z", true);
        draining.spec.drain_at = Some("2027-01-15T08:00:00Z".into());
        draining.spec.drain_grace_period = Some("30m".into());
        draining.spec.registration = Some(RegistrationSpec {
            enabled: true,
            skills: vec!["weather".into()],
            ..RegistrationSpec::default()
        });
        let not_registered = ready("private", "2025-01-01T00:00:00Z", false);
        let mut unhealthy = ready("down", "2025-01-01T00:00:00Z", true);
        set_condition(
            &mut unhealthy.status.conditions,
            "UpstreamHealthy",
            ConditionStatus::False,
            "Unhealthy",
            "",
        );
        let offers = [draining, not_registered, older, unhealthy];
        let identity = identity(&[
            ("base-sepolia", "7"),
            ("custom-l3", "1"),
            ("base", "12"),
            ("ethereum", "not-a-number"),
        ]);

        let doc = document(&offers, &identity, BASE, builtin_registry, NOW);
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
                "name": "Weather Agent",
                "description": "Forecasts, 0.001 USDC a call",
                "image": "https://img.example/w.png",
                "services": [
                    {"name": "web", "endpoint": "https://seller.example/services/alpha", "drainEndsAt": "2027-01-15T08:30:00Z"},
                    {"name": "OASF", "version": "0.8", "skills": ["weather"]},
                    {"name": "web", "endpoint": "https://seller.example/services/weather"}
                ],
                "x402Support": true,
                "active": true,
                "registrations": [
                    {"agentId": 12, "agentRegistry": format!("eip155:8453:{MAINNET_IDENTITY_REGISTRY}")},
                    {"agentId": 7, "agentRegistry": format!("eip155:84532:{TESTNET_IDENTITY_REGISTRY}")}
                ],
                "metadata": {"team": "obol"},
                "provenance": {"repo": "x"}
            })
        );
        assert!(doc.advertises_x402());
    }

    #[test]
    fn tombstone_when_nothing_is_publishable() {
        let mut deleting = ready("gone", "2026-01-01T00:00:00Z", true);
        deleting.metadata.deletion_timestamp = Some("2026-03-01T00:00:00Z".into());
        let identity = identity(&[("base-sepolia", "7")]);
        let doc = document(&[deleting], &identity, BASE, builtin_registry, NOW);
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            serde_json::json!({
                "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
                "name": "default",
                "description": "Agent default (deactivated)",
                "image": "https://seller.example/agent-icon.png",
                "services": [],
                "x402Support": false,
                "active": false,
                "registrations": [
                    {"agentId": 7, "agentRegistry": format!("eip155:84532:{TESTNET_IDENTITY_REGISTRY}")}
                ]
            })
        );
    }

    #[test]
    fn description_precedence_and_defaults() {
        let plain = ready("echo", "2026-01-01T00:00:00Z", true);
        let doc = document(
            std::slice::from_ref(&plain),
            &identity(&[]),
            BASE,
            builtin_registry,
            NOW,
        );
        assert_eq!(doc.name, "echo");
        assert_eq!(doc.description, "x402 payment-gated http service: echo");
        assert_eq!(
            doc.image.as_deref(),
            Some("https://seller.example/agent-icon.png")
        );
        assert!(doc.registrations.is_empty());

        let mut llm = plain;
        llm.spec.type_ = OfferType::Inference;
        llm.spec.model = Some(ModelSpec {
            name: "qwen3:8b".into(),
            runtime: None,
        });
        let doc = document(
            std::slice::from_ref(&llm),
            &identity(&[]),
            BASE,
            builtin_registry,
            NOW,
        );
        assert_eq!(doc.description, "qwen3:8b inference via x402 micropayments");

        llm.spec.description = Some("Catalog text".into());
        let doc = document(
            std::slice::from_ref(&llm),
            &identity(&[]),
            BASE,
            builtin_registry,
            NOW,
        );
        assert_eq!(doc.description, "Catalog text");

        llm.spec.registration.as_mut().unwrap().description = Some("  ".into());
        let doc = document(&[llm], &identity(&[]), BASE, builtin_registry, NOW);
        assert_eq!(
            doc.description, "Catalog text",
            "blank operator text is ignored"
        );
    }

    #[test]
    fn owner_is_the_oldest_and_custom_chains_resolve_through_the_caller() {
        let mut young = ready("young", "2026-05-01T00:00:00Z", true);
        young.spec.registration.as_mut().unwrap().name = Some("Young".into());
        let mut old = ready("old", "2026-01-01T00:00:00Z", true);
        old.spec.registration.as_mut().unwrap().name = Some("Old".into());
        let identity = identity(&[("devnet", "0")]);
        let devnet = |chain: &str| {
            (chain == "devnet")
                .then(|| Registries::builtin().get(84532))
                .flatten()
        };
        let doc = document(&[young, old], &identity, BASE, devnet, NOW);
        assert_eq!(doc.name, "Old");
        assert_eq!(doc.services.len(), 2);
        assert_eq!(
            doc.registrations,
            [RegistrationRef::new(
                &Registries::builtin().get(84532).unwrap(),
                0
            )]
        );
    }

    #[test]
    fn identity_spec_comes_first_and_names_resolve_by_chain_id() {
        let mut offer = ready("weather", "2026-01-01T00:00:00Z", true);
        offer.spec.registration.as_mut().unwrap().name = Some("From offer".into());
        let mut identity = identity(&[("devnet", "3"), ("base-sepolia", "3")]);
        identity.spec = AgentIdentitySpec {
            name: Some("Obol Agent".into()),
            description: Some("Everything we sell".into()),
            image: Some("https://img.example/a.png".into()),
        };
        let chains = ChainIds::builtin().with("devnet", 84532);
        let doc = document(
            std::slice::from_ref(&offer),
            &identity,
            BASE,
            |c| chains.registry(c),
            NOW,
        );
        assert_eq!(
            (doc.name.as_str(), doc.description.as_str()),
            ("Obol Agent", "Everything we sell")
        );
        assert_eq!(doc.image.as_deref(), Some("https://img.example/a.png"));
        assert_eq!(
            doc.registrations,
            [RegistrationRef::new(
                &Registries::builtin().get(84532).unwrap(),
                3
            )],
            "one registry and id, listed once"
        );
        let tombstone = document(&[], &identity, BASE, |c| chains.registry(c), NOW);
        assert_eq!(tombstone.name, "Obol Agent");
        assert_eq!(tombstone.description, "Agent Obol Agent (deactivated)");

        // An offer on base-sepolia finds the id recorded for devnet (same chain id), an exact
        // name wins, and an unknown chain finds nothing.
        let status = &self::identity(&[("devnet", "3"), ("base", "9")]).status;
        for (chain, want) in [
            ("base-sepolia", Some("3")),
            ("eip155:84532", Some("3")),
            ("DEVNET", Some("3")),
            ("base", Some("9")),
            ("eip155:8453", Some("9")),
            ("ethereum", None),
            ("nowhere", None),
        ] {
            assert_eq!(
                chains
                    .registration_for(status, chain)
                    .map(|r| r.agent_id.as_str()),
                want,
                "{chain}"
            );
        }
        assert_eq!(ChainIds::builtin().chain_id("devnet"), None);
        assert_eq!(chains.chain_id("base"), Some(8453));
        let mut file = NetworksFile::default();
        file.add(
            "devnet",
            84532,
            obol_config::Endpoint {
                url: "http://127.0.0.1:8545".into(),
                allow_writes: true,
            },
        )
        .unwrap();
        assert_eq!(
            ChainIds::from_networks(&file).chain_id("devnet"),
            Some(84532)
        );
    }

    #[test]
    fn agent_uri_is_under_the_base() {
        assert_eq!(
            agent_uri("https://s.example/"),
            "https://s.example/.well-known/agent-registration.json"
        );
        assert_eq!(
            agent_uri("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/.well-known/agent-registration.json"
        );
    }
}
