//! `AgentIdentity`: the stack's ERC-8004 agent ids, one per chain (obol-stack.md §3.4). The
//! canonical instance is `x402/default`; it outlives every offer.

use serde::{Deserialize, Serialize};

use crate::resource::{Condition, Object, Spec};

/// The canonical identity's namespace and name.
pub const DEFAULT_IDENTITY: (&str, &str) = ("x402", "default");

/// Reserved; the identity has no user-set fields yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentIdentitySpec {}

/// One chain's agent id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainRegistration {
    /// Chain name.
    pub chain: String,
    /// Agent id (decimal).
    pub agent_id: String,
}

/// The ids per chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
        self.registrations
            .iter()
            .find(|r| r.chain.eq_ignore_ascii_case(chain))
            .map(|r| r.agent_id.as_str())
    }

    /// Records `agent_id` on `chain`; a different id already recorded there is refused.
    pub fn upsert(&mut self, chain: &str, agent_id: &str) -> Result<(), String> {
        match self
            .registrations
            .iter_mut()
            .find(|r| r.chain.eq_ignore_ascii_case(chain))
        {
            Some(existing) if existing.agent_id != agent_id => Err(format!(
                "{chain} already has agent id {}; forget it first with `obol sell identity forget {chain}`",
                existing.agent_id
            )),
            Some(_) => Ok(()),
            None => {
                self.registrations.push(ChainRegistration {
                    chain: chain.to_owned(),
                    agent_id: agent_id.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_per_chain() {
        let mut status = AgentIdentityStatus::default();
        status.upsert("base-sepolia", "5003").unwrap();
        status.upsert("BASE-SEPOLIA", "5003").unwrap();
        let err = status.upsert("base-sepolia", "7").unwrap_err();
        assert!(err.contains("already has agent id 5003"), "{err}");
        status.upsert("base", "12").unwrap();
        assert_eq!(status.agent_id("Base"), Some("12"));
        assert_eq!(status.registrations[0].chain, "base", "sorted by chain");
        assert!(status.remove("base"));
        assert!(!status.remove("base"));
    }
}
