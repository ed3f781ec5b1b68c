//! What an authorization pays: the terms key stored with each row, which `take` matches
//! exactly, and CanSign, which names the first term on which a refused requirement differs.

use obol_x402::network;
use obol_x402::wire::v2;
use serde_json::{Map, Value};

use super::PoolError;

/// The terms an authorization pays, as one comparable string: the EVM chain id (so any naming
/// of the network matches), `payTo` and `asset` lower-cased, the scheme, the exact amount and
/// `extra` with its keys sorted. The chain id is read as validation reads it (any
/// `eip155:<id>`, or a known name), so every purchase that validates can pay; `None` only for a
/// network that is not an EVM chain: such a requirement matches nothing. (The key of a known
/// network is unchanged by this: no schema bump.)
///
/// Stored per row; changing this format requires a new [`SCHEMA_VERSION`](super::SCHEMA_VERSION)
/// that recomputes it.
pub fn terms_key(terms: &v2::PaymentRequirements) -> Option<String> {
    let chain_id = network::evm_chain_id(&terms.network).ok()?;
    let key = Value::Array(vec![
        Value::from(chain_id),
        Value::from(terms.pay_to.to_ascii_lowercase()),
        Value::from(terms.asset.to_ascii_lowercase()),
        Value::from(terms.scheme.as_str()),
        Value::from(terms.amount.to_string()),
        canonical_extra(terms.extra.as_ref()),
    ]);
    Some(key.to_string())
}

/// `extra` with every object's keys sorted (recursively); `null` when absent.
fn canonical_extra(extra: Option<&Map<String, Value>>) -> Value {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(sorted(map)),
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    fn sorted(map: &Map<String, Value>) -> Map<String, Value> {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
            .into_iter()
            .map(|(k, v)| (k.clone(), canonical(v)))
            .collect()
    }
    extra.map_or(Value::Null, |map| Value::Object(sorted(map)))
}

/// CanSign (obol-stack.md §5.5): the authorization pays exactly what the seller asks; else the
/// first differing term, in the order network, payTo, asset, scheme, extra, amount. Agrees
/// with [`terms_key`]: two requirements pass exactly when their keys are equal.
pub(super) fn can_sign(
    signed: &v2::PaymentRequirements,
    asked: &v2::PaymentRequirements,
) -> Result<(), PoolError> {
    let mismatch = |term, asked: &str, signed: &str| PoolError::Mismatch {
        term,
        asked: asked.to_owned(),
        signed: signed.to_owned(),
    };
    let chain = |n: &str| network::evm_chain_id(n).ok();
    if chain(&asked.network).is_none() || chain(&asked.network) != chain(&signed.network) {
        return Err(mismatch("network", &asked.network, &signed.network));
    }
    if !asked.pay_to.eq_ignore_ascii_case(&signed.pay_to) {
        return Err(mismatch("payTo", &asked.pay_to, &signed.pay_to));
    }
    if !asked.asset.eq_ignore_ascii_case(&signed.asset) {
        return Err(mismatch("asset", &asked.asset, &signed.asset));
    }
    if asked.scheme != signed.scheme {
        return Err(mismatch("scheme", &asked.scheme, &signed.scheme));
    }
    let (asked_extra, signed_extra) = (
        canonical_extra(asked.extra.as_ref()),
        canonical_extra(signed.extra.as_ref()),
    );
    if asked_extra != signed_extra {
        let show = |extra: &Value| {
            if extra.is_null() {
                "none".to_owned()
            } else {
                extra.to_string()
            }
        };
        return Err(mismatch("extra", &show(&asked_extra), &show(&signed_extra)));
    }
    if asked.amount != signed.amount {
        return Err(mismatch(
            "amount",
            &asked.amount.to_string(),
            &signed.amount.to_string(),
        ));
    }
    Ok(())
}
