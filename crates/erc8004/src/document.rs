//! The agent registration document an agentURI resolves to (`registration-v1`, erc8004.md §1.4,
//! obol-stack.md §6.5). Pure types: building, parsing and checking, no I/O.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Erc8004Error;
use crate::registry::AgentRegistry;

/// The `type` every registration document carries.
pub const REGISTRATION_TYPE: &str = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1";

/// Where a stack serves its document, relative to its public base URL.
pub const WELL_KNOWN_PATH: &str = "/.well-known/agent-registration.json";

/// The OASF version our documents declare.
pub const OASF_VERSION: &str = "0.8";

/// A registration-v1 document. Field names are the spec's; fields this crate does not know are
/// kept in [`RegistrationDocument::extra`] so a document read from elsewhere round-trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationDocument {
    /// Always [`REGISTRATION_TYPE`].
    #[serde(rename = "type")]
    pub type_: String,
    /// The agent's name.
    #[serde(default)]
    pub name: String,
    /// What it does, pricing, how to talk to it.
    #[serde(default)]
    pub description: String,
    /// An image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How to reach it (`web`, `A2A`, `MCP`, `OASF`, `ENS`, `DID`, `email`, …).
    #[serde(default)]
    pub services: Vec<Service>,
    /// Whether it accepts x402 payments.
    #[serde(default, rename = "x402Support")]
    pub x402_support: bool,
    /// False once the agent stopped serving (a tombstone).
    #[serde(default)]
    pub active: bool,
    /// The on-chain identities this document belongs to.
    #[serde(default)]
    pub registrations: Vec<RegistrationRef>,
    /// Trust models (`reputation`, `crypto-economic`, `tee-attestation`); empty = discovery only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_trust: Vec<String>,
    /// Operator metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Free-form provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Map<String, Value>>,
    /// Fields not modelled here, kept as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of `services[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `web`, `A2A`, `MCP`, `OASF`, `ENS`, `DID`, `email`, or anything else.
    pub name: String,
    /// Where (a URL, an ENS name, a DID, an address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// OASF skills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// OASF domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// When a draining offer stops being sold (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ends_at: Option<String>,
}

impl Service {
    /// A `web` service at `endpoint`.
    pub fn web(endpoint: impl Into<String>) -> Self {
        Self {
            name: "web".to_owned(),
            endpoint: Some(endpoint.into()),
            version: None,
            skills: Vec::new(),
            domains: Vec::new(),
            drain_ends_at: None,
        }
    }

    /// An `MCP` service (streamable HTTP) at `endpoint`, speaking MCP `version`.
    pub fn mcp(endpoint: impl Into<String>, version: &str) -> Self {
        Self {
            name: "MCP".to_owned(),
            version: Some(version.to_owned()),
            ..Self::web(endpoint)
        }
    }

    /// An `OASF` entry (version [`OASF_VERSION`]) with skills and domains.
    pub fn oasf(skills: Vec<String>, domains: Vec<String>) -> Self {
        Self {
            name: "OASF".to_owned(),
            endpoint: None,
            version: Some(OASF_VERSION.to_owned()),
            skills,
            domains,
            drain_ends_at: None,
        }
    }

    /// True when the entry names somewhere to call.
    pub fn has_endpoint(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty())
    }
}

/// One `registrations[]` entry: an agent id in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRef {
    /// The token id (a JSON integer; a decimal string is accepted when reading).
    #[serde(deserialize_with = "lenient_u64")]
    pub agent_id: u64,
    /// `eip155:<chainId>:<registry>`.
    pub agent_registry: String,
}

impl RegistrationRef {
    /// `agent_id` in `registry`.
    pub fn new(registry: &AgentRegistry, agent_id: u64) -> Self {
        Self {
            agent_id,
            agent_registry: registry.to_string(),
        }
    }

    /// The registry, when `agentRegistry` is well-formed.
    pub fn registry(&self) -> Option<AgentRegistry> {
        self.agent_registry.parse().ok()
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("agentId is not a decimal integer")),
    }
}

impl RegistrationDocument {
    /// An active, x402-capable document with no services yet.
    pub fn active(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            type_: REGISTRATION_TYPE.to_owned(),
            name: name.into(),
            description: description.into(),
            image: None,
            services: Vec::new(),
            x402_support: true,
            active: true,
            registrations: Vec::new(),
            supported_trust: Vec::new(),
            metadata: Map::new(),
            provenance: None,
            extra: Map::new(),
        }
    }

    /// The tombstone of an identity that sells nothing any more: no services, `active` and
    /// `x402Support` false, and `registrations` kept (the NFT outlives the offers).
    pub fn tombstone(
        name: impl Into<String>,
        description: impl Into<String>,
        image: Option<String>,
        registrations: Vec<RegistrationRef>,
    ) -> Self {
        Self {
            image,
            registrations,
            x402_support: false,
            active: false,
            ..Self::active(name, description)
        }
    }

    /// Parses a document read from an agentURI: JSON, with the registration-v1 `type`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Erc8004Error> {
        let document: Self =
            serde_json::from_slice(bytes).map_err(|e| Erc8004Error::InvalidDocument {
                reason: crate::printable(&e.to_string(), 200),
            })?;
        if document.type_ != REGISTRATION_TYPE {
            return Err(Erc8004Error::InvalidDocument {
                reason: format!(
                    "type is {}, expected {REGISTRATION_TYPE}",
                    crate::printable(&document.type_, 100)
                ),
            });
        }
        Ok(document)
    }

    /// Pretty JSON, as served.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// True when the document says the agent is active, takes x402 payments, and names at
    /// least one service endpoint.
    pub fn advertises_x402(&self) -> bool {
        self.type_ == REGISTRATION_TYPE
            && self.active
            && self.x402_support
            && self.services.iter().any(Service::has_endpoint)
    }

    /// True when `registrations[]` names `agent_id` in `registry` (the document's claim to
    /// belong to that on-chain identity).
    pub fn lists_registration(&self, registry: &AgentRegistry, agent_id: u64) -> bool {
        self.registrations
            .iter()
            .any(|r| r.agent_id == agent_id && r.registry().as_ref() == Some(registry))
    }

    /// The service endpoints (entries with a non-empty endpoint).
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &str)> {
        self.services.iter().filter_map(|s| {
            s.endpoint
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .map(|e| (s.name.as_str(), e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registries;

    fn registry() -> AgentRegistry {
        Registries::builtin().get(84532).unwrap()
    }

    #[test]
    fn serializes_with_the_spec_field_names() {
        let mut doc = RegistrationDocument::active("myAgent", "what it does");
        doc.image = Some("https://a.example/a.png".into());
        doc.services = vec![
            Service::web("https://a.example/services/x"),
            Service::oasf(vec!["nlp".into()], vec![]),
        ];
        doc.registrations = vec![RegistrationRef::new(&registry(), 22)];
        doc.supported_trust = vec!["reputation".into()];
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": REGISTRATION_TYPE,
                "name": "myAgent",
                "description": "what it does",
                "image": "https://a.example/a.png",
                "services": [
                    {"name": "web", "endpoint": "https://a.example/services/x"},
                    {"name": "OASF", "version": "0.8", "skills": ["nlp"]}
                ],
                "x402Support": true,
                "active": true,
                "registrations": [{"agentId": 22, "agentRegistry": "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"}],
                "supportedTrust": ["reputation"]
            })
        );
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "type",
                "name",
                "description",
                "image",
                "services",
                "x402Support",
                "active",
                "registrations",
                "supportedTrust"
            ]
        );
        assert!(doc.advertises_x402());
        assert!(doc.lists_registration(&registry(), 22));
        assert!(!doc.lists_registration(&registry(), 23));
        assert_eq!(
            RegistrationDocument::parse(doc.to_json_pretty().as_bytes()).unwrap(),
            doc
        );
    }

    #[test]
    fn tombstone_keeps_registrations() {
        let refs = vec![RegistrationRef::new(&registry(), 3)];
        let doc = RegistrationDocument::tombstone(
            "default",
            "Agent default (deactivated)",
            None,
            refs.clone(),
        );
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(value["active"], false);
        assert_eq!(value["x402Support"], false);
        assert_eq!(value["services"], serde_json::json!([]));
        assert_eq!(doc.registrations, refs);
        assert!(!doc.advertises_x402());
    }

    #[test]
    fn parses_what_others_publish() {
        let text = r#"{
          "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
          "name": "myAgent", "description": "d", "image": "https://x/a.png",
          "services": [
            {"name":"A2A","endpoint":"https://agent.example/.well-known/agent-card.json","version":"0.3.0"},
            {"name":"OASF","endpoint":"ipfs://cid","version":"0.8","skills":[],"domains":[]}
          ],
          "x402Support": true, "active": true,
          "registrations": [{"agentId": "22", "agentRegistry": "eip155:84532:0x8004a818bfb912233c491871b3d84c89a494bd9e"}],
          "somethingNew": {"a": 1}
        }"#;
        let doc = RegistrationDocument::parse(text.as_bytes()).unwrap();
        assert_eq!(doc.registrations[0].agent_id, 22);
        assert!(doc.lists_registration(&registry(), 22));
        assert_eq!(doc.extra["somethingNew"]["a"], 1);
        assert_eq!(doc.endpoints().count(), 2);
        assert!(doc.advertises_x402());

        let wrong = RegistrationDocument::parse(br#"{"type":"nft"}"#).unwrap_err();
        assert!(
            wrong.to_string().contains("expected https://eips"),
            "{wrong}"
        );
        assert!(RegistrationDocument::parse(b"not json").is_err());
        let no_services = RegistrationDocument::parse(
            br#"{"type":"https://eips.ethereum.org/EIPS/eip-8004#registration-v1","x402Support":true,"active":true}"#,
        )
        .unwrap();
        assert!(!no_services.advertises_x402());
    }
}
