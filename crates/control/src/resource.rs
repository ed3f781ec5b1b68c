//! The Kubernetes-shaped envelope every resource shares.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group and version of every obol resource.
pub const API_VERSION: &str = "obol.org/v1alpha1";

/// The longest condition message kept (the original truncates at 200 characters).
pub const MAX_CONDITION_MESSAGE: usize = 200;

/// Identity and bookkeeping of an object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name, unique per kind and namespace.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Bumped each time the spec changes.
    #[serde(default)]
    pub generation: i64,
    /// Store-wide version of the last write.
    #[serde(default)]
    pub resource_version: i64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub creation_timestamp: String,
    /// RFC 3339 time deletion was requested (finalizers still pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Cleanups that must finish before the object goes away.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata for a new object.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            ..Self::default()
        }
    }

    /// The order "oldest first": creation time, then namespace and name (objects created in
    /// the same second are ordered by name).
    pub fn age_key(&self) -> (&str, &str, &str) {
        (&self.creation_timestamp, &self.namespace, &self.name)
    }

    /// True once deletion was requested.
    pub fn is_deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

/// A spec type names its kind and its status type.
pub trait Spec:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The kind, e.g. `ServiceOffer`.
    const KIND: &'static str;
    /// The status type.
    type Status: Serialize
        + DeserializeOwned
        + Clone
        + PartialEq
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;
}

/// A typed object: envelope, spec and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub struct Object<S: Spec> {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `S::KIND`.
    pub kind: String,
    /// Identity and bookkeeping.
    pub metadata: ObjectMeta,
    /// What the user wants.
    pub spec: S,
    /// What the controller observed.
    #[serde(default)]
    pub status: S::Status,
}

impl<S: Spec> Object<S> {
    /// A new object with an empty status.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, spec: S) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: S::KIND.to_owned(),
            metadata: ObjectMeta::new(namespace, name),
            spec,
            status: S::Status::default(),
        }
    }
}

/// `True`, `False` or `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// One observed condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// e.g. `UpstreamHealthy`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True / False / Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: String,
    /// Human message (at most [`MAX_CONDITION_MESSAGE`] characters).
    pub message: String,
    /// RFC 3339 time `status` last changed.
    pub last_transition_time: String,
}

/// Sets a condition in `conditions`: `lastTransitionTime` changes only when the status does.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let message: String = message.chars().take(MAX_CONDITION_MESSAGE).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now_rfc3339();
            }
            existing.status = status;
            existing.reason = reason.to_owned();
            existing.message = message;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time: now_rfc3339(),
        }),
    }
}

/// The condition of type `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition is set and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

pub use obol_config::time::{now_rfc3339, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_status() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Reconciling",
            "x",
        );
        conditions[0].last_transition_time = "2000-01-01T00:00:00Z".into();
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "Other",
            "y",
        );
        assert_eq!(conditions[0].last_transition_time, "2000-01-01T00:00:00Z");
        assert_eq!(conditions[0].reason, "Other");
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::True,
            "Reconciled",
            &"m".repeat(500),
        );
        assert_ne!(conditions[0].last_transition_time, "2000-01-01T00:00:00Z");
        assert_eq!(conditions[0].message.len(), MAX_CONDITION_MESSAGE);
        assert!(is_true(&conditions, "Ready"));
    }
}
