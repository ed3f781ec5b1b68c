//! The terms sellers asked for, remembered in memory so the proxy can pay with the first
//! request: per purchase pool, method and URL, the x402 version and the requirement a paid call
//! there was last accepted with (its answer was not a 402).
//!
//! An entry is only a hint: the pool still hands out only an authorization whose terms key
//! equals the remembered requirement, and a 402 to a payment sent with it forgets it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use obol_x402::wire::v2;

/// At most this many entries are kept; a full cache is emptied (later calls refill it).
const MAX_ENTRIES: usize = 1024;

/// Where a payment would go: the purchase's pool, the method and the full URL (query included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) pool: String,
    pub(crate) method: reqwest::Method,
    pub(crate) url: String,
}

/// What the seller accepted there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    /// The x402 version the seller spoke (which payment header it reads).
    pub(crate) version: u8,
    /// The requirement the accepted payment paid.
    pub(crate) requirement: v2::PaymentRequirements,
}

/// The remembered terms.
#[derive(Debug, Default)]
pub(crate) struct KnownTerms {
    entries: Mutex<HashMap<Key, Known>>,
}

impl KnownTerms {
    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Known>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The terms last accepted at `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<Known> {
        self.entries().get(key).cloned()
    }

    /// A paid call at `key` was accepted with `known`.
    pub(crate) fn remember(&self, key: Key, known: Known) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, known);
    }

    /// A payment for `refused` at `key` was not accepted (or cannot be made): forgets the entry
    /// unless it already names other terms (remembered by a later call).
    pub(crate) fn forget(&self, key: &Key, refused: &v2::PaymentRequirements) {
        let mut entries = self.entries();
        if entries
            .get(key)
            .is_some_and(|known| &known.requirement == refused)
        {
            entries.remove(key);
        }
    }

    /// Forgets everything (the purchases changed).
    pub(crate) fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn requirement(amount: u64) -> v2::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": amount.to_string(),
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300
        }))
        .unwrap()
    }

    fn key(pool: &str, method: reqwest::Method, url: &str) -> Key {
        Key {
            pool: pool.into(),
            method,
            url: url.into(),
        }
    }

    #[test]
    fn entries_are_per_pool_method_and_url_and_a_late_refusal_keeps_newer_terms() {
        let terms = KnownTerms::default();
        let at = key("p", reqwest::Method::POST, "http://s/v1/chat/completions");
        let known = |amount| Known {
            version: 2,
            requirement: requirement(amount),
        };
        terms.remember(at.clone(), known(1000));
        assert_eq!(terms.get(&at), Some(known(1000)));
        for other in [
            key("q", reqwest::Method::POST, "http://s/v1/chat/completions"),
            key("p", reqwest::Method::GET, "http://s/v1/chat/completions"),
            key(
                "p",
                reqwest::Method::POST,
                "http://s/v1/chat/completions?x=1",
            ),
            key("p", reqwest::Method::POST, "http://t/v1/chat/completions"),
        ] {
            assert_eq!(terms.get(&other), None, "{other:?}");
        }
        // Newer terms were remembered before an older payment's refusal arrived: kept.
        terms.remember(at.clone(), known(2000));
        terms.forget(&at, &requirement(1000));
        assert_eq!(terms.get(&at), Some(known(2000)));
        terms.forget(&at, &requirement(2000));
        assert_eq!(terms.get(&at), None);

        terms.remember(at.clone(), known(1000));
        terms.clear();
        assert_eq!(terms.get(&at), None);
    }

    #[test]
    fn a_full_cache_is_emptied_before_a_new_key() {
        let terms = KnownTerms::default();
        let at = |i: usize| key("p", reqwest::Method::POST, &format!("http://s/{i}"));
        let known = Known {
            version: 2,
            requirement: requirement(1000),
        };
        for i in 0..MAX_ENTRIES {
            terms.remember(at(i), known.clone());
        }
        terms.remember(at(0), known.clone());
        assert!(
            terms.get(&at(MAX_ENTRIES - 1)).is_some(),
            "a known key: kept"
        );
        terms.remember(at(MAX_ENTRIES), known);
        assert!(terms.get(&at(0)).is_none());
        assert!(terms.get(&at(MAX_ENTRIES)).is_some());
        assert_eq!(terms.entries().len(), 1);
    }
}
