//! `AgentIdentity`: the stack's ERC-8004 agent ids, one per chain (obol-stack.md §3.4). The
//! canonical instance is `x402/default`; it outlives every offer.
//!
//! The ids live in `status` (the controller never signs: `obol sell register` and `obol sell
//! identity import` record them); `spec` holds what the operator says about the agent as a
//! whole, which takes precedence over the owner offer's registration block in the document.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resource::{Condition, Object, Spec};
use crate::strict::strict_spec;

/// The canonical identity's namespace and name.
pub const DEFAULT_IDENTITY: (&str, &str) = ("x402", "default");

/// What the operator says about the agent (`obol sell register --name/--description/--image`).
/// Unset fields fall back to the owner offer's registration block. Deserializing refuses every
/// field it does not know, naming it (see `crate::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct AgentIdentitySpec {
    /// The agent's name in the registration document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

strict_spec!(AgentIdentitySpec, &[]);

/// One chain's agent id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainRegistration {
    /// Chain name (as recorded: `base-sepolia`, `devnet`, …).
    pub chain: String,
    /// Agent id (decimal).
    pub agent_id: String,
    /// The transaction that registered it, when this stack registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
}

/// A chain already has another agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{chain} already has agent id {existing}; forget it first with `obol sell identity forget {chain}`"
)]
pub struct IdentityConflict {
    /// The chain, as recorded.
    pub chain: String,
    /// The id recorded there.
    pub existing: String,
}

/// The ids per chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentIdentityStatus {
    /// Per-chain registrations.
    #[serde(default)]
    pub registrations: Vec<ChainRegistration>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl AgentIdentityStatus {
    /// The agent id on `chain` (case-insensitive).
    pub fn agent_id(&self, chain: &str) -> Option<&str> {
        self.get(chain).map(|r| r.agent_id.as_str())
    }

    /// The registration on `chain` (case-insensitive).
    pub fn get(&self, chain: &str) -> Option<&ChainRegistration> {
        self.registrations
            .iter()
            .find(|r| r.chain.eq_ignore_ascii_case(chain))
    }

    /// Records `agent_id` on `chain`; a different id already recorded there is refused.
    pub fn upsert(&mut self, chain: &str, agent_id: &str) -> Result<(), IdentityConflict> {
        self.record(chain, agent_id, None)
    }

    /// [`AgentIdentityStatus::upsert`] with the registering transaction (kept when already
    /// known and none is given).
    pub fn record(
        &mut self,
        chain: &str,
        agent_id: &str,
        tx_hash: Option<&str>,
    ) -> Result<(), IdentityConflict> {
        match self
            .registrations
            .iter_mut()
            .find(|r| r.chain.eq_ignore_ascii_case(chain))
        {
            Some(existing) if existing.agent_id != agent_id => Err(IdentityConflict {
                chain: existing.chain.clone(),
                existing: existing.agent_id.clone(),
            }),
            Some(existing) => {
                if let Some(tx) = tx_hash {
                    existing.tx_hash = Some(tx.to_owned());
                }
                Ok(())
            }
            None => {
                self.registrations.push(ChainRegistration {
                    chain: chain.to_owned(),
                    agent_id: agent_id.to_owned(),
                    tx_hash: tx_hash.map(str::to_owned),
                });
                self.registrations.sort_by(|a, b| a.chain.cmp(&b.chain));
                Ok(())
            }
        }
    }

    /// Forgets `chain`'s id; true when there was one.
    pub fn remove(&mut self, chain: &str) -> bool {
        let before = self.registrations.len();
        self.registrations
            .retain(|r| !r.chain.eq_ignore_ascii_case(chain));
        self.registrations.len() != before
    }
}

impl Spec for AgentIdentitySpec {
    const KIND: &'static str = "AgentIdentity";
    type Status = AgentIdentityStatus;
}

/// An `AgentIdentity`.
pub type AgentIdentity = Object<AgentIdentitySpec>;

/// The canonical identity, empty (what an unset `x402/default` stands for).
pub fn default_identity() -> AgentIdentity {
    AgentIdentity::new(
        DEFAULT_IDENTITY.0,
        DEFAULT_IDENTITY.1,
        AgentIdentitySpec::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_chain() {
        let mut status = AgentIdentityStatus::default();
        status.upsert("base-sepolia", "5003").unwrap();
        status.upsert("BASE-SEPOLIA", "5003").unwrap();
        let err = status.upsert("base-sepolia", "7").unwrap_err().to_string();
        assert!(err.contains("already has agent id 5003"), "{err}");
        status.upsert("base", "12").unwrap();
        assert_eq!(status.agent_id("Base"), Some("12"));
        assert_eq!(status.registrations[0].chain, "base", "sorted by chain");
        status.record("base", "12", Some("0xabc")).unwrap();
        status.record("base", "12", None).unwrap();
        assert_eq!(
            status.get("base").and_then(|r| r.tx_hash.as_deref()),
            Some("0xabc"),
            "a known transaction is kept"
        );
        assert!(status.remove("base"));
        assert!(!status.remove("base"));
    }
}
