//! Specs refuse the fields they would drop.
//!
//! serde's derive skips JSON fields a type does not know, so a manifest written for the original
//! (with `spec.routes`, say) would be accepted and lose them on its way into the store. Each spec
//! type therefore derives with `#[serde(remote = "Self")]` (the derived code becomes inherent
//! `serialize`/`deserialize` functions) and takes its trait impls from [`strict_spec!`]: the
//! derived code runs under `serde_ignored`, and every field it skipped, at any depth, makes the
//! whole spec an error naming it. Fields of the original's schema that are not implemented yet
//! say so ([`Unsupported`]); any other is an unknown field. `metadata` and `status` stay
//! tolerant (Kubernetes tools add fields there).

use serde_ignored::Path;

/// A field of the original's schema that is refused until it is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported {
    /// Path below `spec`, e.g. `routes` or `registration.services`.
    pub(crate) path: &'static str,
    /// What to do instead, or where the work is tracked (may be empty).
    pub(crate) hint: &'static str,
}

/// `a.b[2].c`: the JSON path of an ignored field, below `spec`.
fn render(path: &Path<'_>) -> String {
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        Path::Map { parent, key } => match render(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render(parent),
    }
}

/// Collects the fields a derived deserializer skips.
#[derive(Debug, Default)]
pub(crate) struct Skipped(Vec<String>);

impl Skipped {
    /// Records one skipped field (the `serde_ignored` callback).
    pub(crate) fn record(&mut self, path: &Path<'_>) {
        self.0.push(render(path));
    }

    /// `Ok` when nothing was skipped; otherwise one message naming every skipped field, the
    /// `unsupported` ones with their hint.
    pub(crate) fn verdict(&self, unsupported: &[Unsupported]) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|path| match unsupported.iter().find(|u| u.path == path) {
                Some(Unsupported { hint: "", .. }) => format!("spec.{path} is not supported yet"),
                Some(u) => format!("spec.{path} is not supported yet ({})", u.hint),
                None => format!("unknown field spec.{path}"),
            })
            .collect();
        Err(parts.join("; "))
    }
}

/// `Serialize` and `Deserialize` for a spec whose derives carry `#[serde(remote = "Self")]`:
/// serialized as derived; deserialized as derived, but refusing every field the derive skipped
/// (the second argument lists the original's fields that are refused as not supported yet).
macro_rules! strict_spec {
    ($spec:ty, $unsupported:expr) => {
        impl serde::Serialize for $spec {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$spec>::serialize(self, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $spec {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let mut skipped = $crate::strict::Skipped::default();
                let mut record = |path: serde_ignored::Path<'_>| skipped.record(&path);
                let spec = <$spec>::deserialize(serde_ignored::Deserializer::new(
                    deserializer,
                    &mut record,
                ))?;
                skipped
                    .verdict($unsupported)
                    .map_err(<D::Error as serde::de::Error>::custom)?;
                Ok(spec)
            }
        }
    };
}

pub(crate) use strict_spec;

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::identity::AgentIdentity;
    use crate::offer::{ServiceOffer, ServiceOfferSpec, UNSUPPORTED_FIELDS};
    use crate::purchase::PurchaseRequest;

    /// An offer using every field the spec implements.
    fn full_offer() -> Value {
        let mut offer = json!({
            "apiVersion": "obol.org/v1alpha1",
            "kind": "ServiceOffer",
            "metadata": {"name": "llm", "namespace": "default"},
            "spec": {
                "type": "inference",
                "model": {"name": "qwen3:0.6b", "runtime": "ollama"},
                "upstream": {
                    "url": "http://127.0.0.1:11434", "service": "ollama", "namespace": "llm",
                    "port": 11434, "healthPath": "/api/tags"
                },
                "payment": {
                    "scheme": "exact", "network": "base-sepolia",
                    "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                    "maxTimeoutSeconds": 120,
                    "asset": {
                        "address": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "symbol": "USDC",
                        "decimals": 6, "transferMethod": "eip3009", "eip712Name": "USDC",
                        "eip712Version": "2"
                    },
                    "price": {"perMTok": "0.5"},
                    "settle": "settleFirst"
                },
                "payments": [
                    "(spec.payment, set below)",
                    {"scheme": "exact", "network": "base-sepolia",
                     "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                     "asset": {"symbol": "OBOL"}, "price": {"perMTok": "2"}}
                ],
                "path": "/services/llm",
                "routes": [
                    {"path": "/*", "gate": "free", "methods": ["GET", "HEAD"]},
                    {"path": "/v1/chat/completions", "methods": ["POST"], "price": "0.5",
                     "summary": "Chat", "freeQuota": 0},
                    {"path": "/v1/*/info", "price": {"perRequest": "0.01"}}
                ],
                "limits": {"maxInFlight": 8, "rps": 20},
                "hostname": "qwen.example.com",
                "registration": {
                    "enabled": true, "name": "LLM", "description": "A model", "image": "https://x.example/i.png",
                    "skills": ["chat"], "domains": ["ai"], "metadata": {"anything": {"goes": 1}}
                },
                "listing": {"weight": 3, "category": "llm"},
                "drainAt": "2030-01-01T00:00:00Z",
                "drainGracePeriod": "30m",
                "provenance": {"free": ["form"]},
                "description": "Qwen, paid per call"
            }
        });
        // The first way to pay is `payment` itself.
        offer["spec"]["payments"][0] = offer["spec"]["payment"].clone();
        offer
    }

    fn refusal(mut object: Value, pointer: &str, value: Value) -> String {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        object.pointer_mut(parent).unwrap()[key] = value;
        match serde_json::from_value::<ServiceOffer>(object) {
            Ok(_) => panic!("{pointer} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_implemented_field_survives_a_round_trip() {
        let offer: ServiceOffer = serde_json::from_value(full_offer()).unwrap();
        let mut back = serde_json::to_value(&offer).unwrap();
        back.as_object_mut().unwrap().remove("status");
        for stored in ["generation", "resourceVersion", "creationTimestamp"] {
            back["metadata"].as_object_mut().unwrap().remove(stored);
        }
        assert_eq!(back, full_offer(), "nothing dropped, nothing added");
    }

    #[test]
    fn the_originals_unimplemented_fields_are_refused_by_name() {
        for field in UNSUPPORTED_FIELDS {
            let pointer = format!("/spec/{}", field.path.replace('.', "/"));
            let error = refusal(full_offer(), &pointer, json!([{"x": 1}]));
            let expected = format!("spec.{} is not supported yet", field.path);
            assert!(error.contains(&expected), "{error}");
        }
        let error = refusal(full_offer(), "/spec/async", json!({"enabled": true}));
        assert!(
            error.starts_with("spec.async is not supported yet"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_any_depth() {
        for pointer in [
            "/spec/foo",
            "/spec/upstream/foo",
            "/spec/model/foo",
            "/spec/payment/foo",
            "/spec/payment/price/perDay",
            "/spec/payment/asset/chainId",
            "/spec/registration/foo",
            "/spec/listing/foo",
        ] {
            let error = refusal(full_offer(), pointer, json!(1));
            let field = pointer[1..].replace('/', ".");
            assert!(error.contains(&format!("unknown field {field}")), "{error}");
        }
        let mut two = full_offer();
        two["spec"]["async"] = json!({"enabled": true});
        let error = refusal(two, "/spec/upstream/timeout", json!(5));
        assert_eq!(
            error, "unknown field spec.upstream.timeout; spec.async is not supported yet",
            "every field named, in document order"
        );
    }

    #[test]
    fn metadata_and_status_stay_tolerant() {
        let mut object = full_offer();
        object["metadata"]["uid"] = json!("1234");
        object["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
        object["status"] = json!({"conditions": [], "agentResolution": {"model": "m"}});
        let offer: ServiceOffer = serde_json::from_value(object).unwrap();
        assert_eq!(offer.metadata.name, "llm");
        let spec: ServiceOfferSpec = serde_json::from_value(full_offer()["spec"].clone()).unwrap();
        assert_eq!(offer.spec, spec);
    }

    #[test]
    fn purchases_and_identities_refuse_unknown_fields_too() {
        let purchase = json!({
            "apiVersion": "obol.org/v1alpha1", "kind": "PurchaseRequest",
            "metadata": {"name": "buy", "namespace": "llm"},
            "spec": {
                "endpoint": "http://127.0.0.1:8080/services/llm", "model": "qwen3", "count": 1,
                "preSignedAuths": [{
                    "payment": {"x402Version": 2, "whatever": true},
                    "signature": "0x", "from": "0x1", "to": "0x2", "value": "1",
                    "validAfter": "0", "validBefore": "1", "nonce": "0x3"
                }],
                "payment": {"network": "base-sepolia", "payTo": "0x2", "price": "1", "asset": "0x4"}
            }
        });
        serde_json::from_value::<PurchaseRequest>(purchase.clone()).unwrap();
        for (pointer, field) in [
            ("/spec", "spec.budget"),
            ("/spec/preSignedAuths/0", "spec.preSignedAuths[0].budget"),
            ("/spec/payment", "spec.payment.budget"),
        ] {
            let mut bad = purchase.clone();
            bad.pointer_mut(pointer).unwrap()["budget"] = json!(1);
            let error = serde_json::from_value::<PurchaseRequest>(bad)
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("unknown field {field}")), "{error}");
        }
        let identity = json!({
            "apiVersion": "obol.org/v1alpha1", "kind": "AgentIdentity",
            "metadata": {"name": "default", "namespace": "x402"},
            "spec": {"name": "Agent", "title": "x"}
        });
        let error = serde_json::from_value::<AgentIdentity>(identity)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field spec.title"), "{error}");
    }

    #[test]
    fn paths_read_like_json_paths() {
        let root = Path::Root;
        let registration = Path::Map {
            parent: &root,
            key: "registration".into(),
        };
        let some = Path::Some {
            parent: &registration,
        };
        let services = Path::Map {
            parent: &some,
            key: "services".into(),
        };
        let second = Path::Seq {
            parent: &services,
            index: 2,
        };
        let name = Path::Map {
            parent: &second,
            key: "nam".into(),
        };
        assert_eq!(render(&services), "registration.services");
        assert_eq!(render(&name), "registration.services[2].nam");
    }
}
