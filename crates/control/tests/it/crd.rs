//! The generated CRDs: the committed files are the types' output, the schemas are structural,
//! the original's manifests of every generation are admitted and broken ones refused.
//!
//! No API server runs here, so [`validate`] applies a CRD's `openAPIV3Schema` the way the API
//! server does with strict field validation (`kubectl apply`'s default): unknown fields are
//! errors unless a node preserves them, `null` is pruned (no field is `nullable`), and every
//! keyword the generator emits is checked; one it does not know fails the test rather than
//! being ignored.

use std::collections::BTreeSet;
use std::path::PathBuf;

use obol_control::crd;
use obol_control::validate::ADDRESS_PATTERN;
use obol_testkit::accounts::PAY_TO;
use serde_json::{Value, json};

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/base/crds")
}

fn crd_of(kind: &str) -> Value {
    crd::crds()
        .unwrap()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap()
}

fn schema_of(kind: &str) -> Value {
    crd_of(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The errors of `value` against `schema`, each `path: problem`.
fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    const KNOWN: [&str; 15] = [
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "maxItems",
        "format",
        "default",
    ];
    let node = schema.as_object().unwrap();
    for key in node.keys() {
        assert!(
            KNOWN.contains(&key.as_str()) || key == PRESERVE,
            "{path}: the validator does not know {key}"
        );
    }
    let preserve = node.get(PRESERVE) == Some(&Value::Bool(true));
    let mut fail = |problem: String| errors.push(format!("{path}: {problem}"));
    let type_ = node.get("type").and_then(Value::as_str);
    let type_ok = match (type_, value) {
        (None, _) => preserve,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        _ => false,
    };
    if !type_ok {
        return fail(format!("{value} is not of type {type_:?}"));
    }
    if let Some(Value::Array(members)) = node.get("enum")
        && !members.contains(value)
    {
        fail(format!("{value} is not one of {members:?}"));
    }
    if let (Some(pattern), Value::String(text)) = (node.get("pattern"), value) {
        let pattern = regex::Regex::new(pattern.as_str().unwrap()).unwrap();
        if !pattern.is_match(text) {
            fail(format!("{text:?} does not match {pattern}"));
        }
    }
    let bound = |key: &str| node.get(key).and_then(Value::as_f64);
    let size = match value {
        Value::String(text) => Some(text.chars().count() as f64),
        _ => None,
    };
    if size.zip(bound("maxLength")).is_some_and(|(n, max)| n > max) {
        fail("is too long".to_owned());
    }
    if size.zip(bound("minLength")).is_some_and(|(n, min)| n < min) {
        fail("is too short".to_owned());
    }
    if let Some(number) = value.as_f64() {
        if bound("minimum").is_some_and(|min| number < min) {
            fail(format!("{number} is below the minimum"));
        }
        if bound("maximum").is_some_and(|max| number > max) {
            fail(format!("{number} is above the maximum"));
        }
    }
    match value {
        Value::Array(items) => {
            if bound("maxItems").is_some_and(|max| items.len() as f64 > max) {
                fail(format!("{} items are too many", items.len()));
            }
            if let Some(item_schema) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(fields) => check_object(node, fields, preserve, path, errors),
        _ => {}
    }
}

fn check_object(
    node: &serde_json::Map<String, Value>,
    fields: &serde_json::Map<String, Value>,
    preserve: bool,
    path: &str,
    errors: &mut Vec<String>,
) {
    let join = |name: &str| match path {
        "" => name.to_owned(),
        _ => format!("{path}.{name}"),
    };
    let properties = node.get("properties").and_then(Value::as_object);
    for required in node
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = required.as_str().unwrap();
        if fields.get(name).is_none_or(Value::is_null) {
            errors.push(format!("{}: is required", join(name)));
        }
    }
    for (name, field) in fields {
        if field.is_null() {
            continue; // pruned: no field is nullable
        }
        match (
            properties.and_then(|p| p.get(name)),
            node.get("additionalProperties"),
        ) {
            (Some(schema), _) | (None, Some(schema)) => check(schema, field, &join(name), errors),
            (None, None) if preserve || path == "metadata" => {}
            (None, None) => errors.push(format!("{}: unknown field", join(name))),
        }
    }
}

/// An offer of the original's first generation: a Kubernetes upstream, one price, registration
/// off, paused by the annotation that `drainAt` later replaced.
fn older_offer() -> Value {
    json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {
            "name": "flow-qwen", "namespace": "llm",
            "annotations": {"obol.org/paused": "true"},
            "finalizers": ["monetize.obol.org/finalizer"]
        },
        "spec": {
            "type": "inference",
            "model": {"name": "qwen3:0.6b", "runtime": "ollama"},
            "upstream": {"service": "ollama", "namespace": "llm", "port": 11434, "healthPath": "/api/tags"},
            "payment": {
                "scheme": "exact", "network": "base-sepolia", "payTo": PAY_TO,
                "maxTimeoutSeconds": 300, "price": {"perRequest": "0.001"}
            },
            "path": "/services/flow-qwen",
            "registration": {"enabled": false}
        }
    })
}

/// An offer of the newest generation using every field of the original's table (§3.1), with
/// the status the original's controller writes.
fn newest_offer() -> Value {
    let payment = json!({
        "scheme": "exact", "network": "base", "payTo": PAY_TO, "maxTimeoutSeconds": 120,
        "asset": {
            "address": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "symbol": "USDC",
            "decimals": 6, "transferMethod": "eip3009", "eip712Name": "USD Coin", "eip712Version": "2"
        },
        "price": {"perRequest": "0.001", "perMTok": "1.5", "perHour": "2", "perEpoch": "10"}
    });
    json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "shop", "namespace": "sellers", "labels": {"obol.org/demo": "true"}},
        "spec": {
            "type": "http",
            "upstream": {"service": "shop", "namespace": "sellers", "port": 8080, "healthPath": "/health"},
            "payment": payment,
            "payments": [payment, {"network": "base-sepolia", "payTo": PAY_TO, "price": {"perMTok": "2"}}],
            "listing": {"weight": 10, "category": "tools"},
            "routes": [
                {"path": "/*"},
                {"path": "/health", "methods": ["GET", "HEAD"], "gate": "free", "summary": "Liveness"},
                {"path": "/v1/*/report", "methods": ["POST"], "gate": "auth", "freeQuota": 0,
                 "price": {"perRequest": "0.01"}},
                {"path": "/cheap", "price": "0.0001"}
            ],
            "path": "/services/shop",
            "hostname": "shop.example.com",
            "branding": {
                "displayName": "Shop", "tagline": "Things", "logoUrl": "https://example.com/l.png",
                "theme": "dark", "accentColor": "#ff0000", "faviconUrl": "https://example.com/f.ico",
                "ogImageUrl": "https://example.com/og.png", "description": "A shop"
            },
            "provenance": {"source": "git", "commit": {"sha": "abc", "dirty": false}},
            "registration": {
                "enabled": true, "name": "Shop agent", "description": "Sells things",
                "image": "https://example.com/a.png",
                "services": [{"name": "web", "endpoint": "https://shop.example.com", "version": "1"},
                             {"name": "MCP", "endpoint": "https://shop.example.com/mcp"}],
                "supportedTrust": ["reputation", "crypto-economic", "tee-attestation"],
                "skills": ["retail"], "domains": ["commerce"], "metadata": {"tier": 1, "x": ["y"]}
            },
            "async": {"enabled": true, "resultVisibility": "payer", "ttl": "72h"},
            "limits": {"maxInFlight": 4, "rps": 20},
            "drainAt": "2026-01-01T00:00:00Z",
            "drainGracePeriod": "1h"
        },
        "status": {
            "observedGeneration": 3,
            "endpoint": "/services/shop",
            "agentId": "5003",
            "registrationTxHash": "0xabc",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
                            "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "agentResolution": {"model": "m", "skills": ["s"], "runtime": "hermes", "endpoint": "e"}
        }
    })
}

/// A `type: agent` offer: the agent by reference, no upstream.
fn agent_offer() -> Value {
    json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "obol-agent", "namespace": "hermes"},
        "spec": {
            "type": "agent",
            "agent": {"ref": {"name": "obol-agent", "namespace": "hermes"}},
            "payment": {"network": "base", "payTo": PAY_TO, "price": {"perRequest": "0.05"}}
        }
    })
}

#[test]
fn committed_crds_match_the_types() {
    let hint = "the CRDs drifted from the Rust types: run `obol kube crds --out deploy/kubernetes/base/crds` and commit the result";
    let dir = deploy_dir();
    let expected = crd::files().unwrap();
    for (name, content) in &expected {
        let committed = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; {hint}"));
        assert!(committed == *content, "{name} differs; {hint}");
    }
    let names: BTreeSet<String> = expected.into_iter().map(|(name, _)| name).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(&name),
            "{name} is not generated any more; {hint}"
        );
    }
}

/// Kubernetes' structural-schema rules, for every node.
fn assert_structural(node: &Value, path: &str) {
    let object = node.as_object().unwrap();
    for forbidden in [
        "$ref",
        "$defs",
        "definitions",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "nullable",
        "title",
        "const",
    ] {
        assert!(!object.contains_key(forbidden), "{path} has {forbidden}");
    }
    assert!(
        object.contains_key("type") || object.get(PRESERVE) == Some(&Value::Bool(true)),
        "{path} has no type"
    );
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, field) in properties {
            assert_structural(field, &format!("{path}.{name}"));
        }
        for required in object
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(
                properties.contains_key(required.as_str().unwrap()),
                "{path}: {required} is required but not declared"
            );
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = object.get(key) {
            assert_structural(child, &format!("{path}[]"));
        }
    }
}

#[test]
fn every_crd_is_structural_with_the_originals_names_and_columns() {
    let expected = [
        ("ServiceOffer", "serviceoffers", "so", 6),
        ("PurchaseRequest", "purchaserequests", "pr", 6),
        ("AgentIdentity", "agentidentities", "aid", 0),
    ];
    for (kind, plural, short, columns) in expected {
        let crd = crd_of(kind);
        assert_eq!(crd["metadata"]["name"], format!("{plural}.obol.org"));
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!([short]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"], json!({"status": {}}));
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_structural(schema, kind);
        let printed = version["additionalPrinterColumns"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(printed, columns, "{kind}'s columns");
        // Each column reads a field the schema declares (the part before any filter).
        for column in version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = column["jsonPath"].as_str().unwrap();
            let fields = path.split('[').next().unwrap().trim_start_matches('.');
            let mut node = schema;
            for field in fields
                .split('.')
                .filter(|f| *f != "metadata" && !f.is_empty())
            {
                if field == "creationTimestamp" {
                    break;
                }
                node = &node["properties"][field];
                assert!(
                    node.is_object(),
                    "{kind}: column {path} reads an undeclared field"
                );
            }
        }
    }
}

#[test]
fn original_service_offers_of_every_generation_are_admitted() {
    let schema = schema_of("ServiceOffer");
    for (name, offer) in [
        ("older", older_offer()),
        ("newest", newest_offer()),
        ("agent", agent_offer()),
    ] {
        assert_eq!(validate(&schema, &offer), Vec::<String>::new(), "{name}");
    }
    // What the CRD admits and our spec implements, the store reads too.
    serde_json::from_value::<obol_control::ServiceOffer>(older_offer()).unwrap();
}

#[test]
fn broken_service_offers_are_refused_naming_the_field() {
    let schema = schema_of("ServiceOffer");
    let cases = [
        ("/spec/payment/payTo", json!("0x1234"), "spec.payment.payTo"),
        (
            "/spec/payment/payTo",
            json!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BCab"),
            "spec.payment.payTo",
        ),
        ("/spec/upstream/port", json!(70000), "spec.upstream.port"),
        ("/spec/upstream/port", json!(0), "spec.upstream.port"),
        (
            "/spec/routes",
            json!([{"path": "health"}]),
            "spec.routes[0].path",
        ),
        (
            "/spec/routes",
            json!([{"path": "/x", "gate": "maybe"}]),
            "spec.routes[0].gate",
        ),
        (
            "/spec/routes",
            json!([{"path": "/x", "methods": ["FETCH"]}]),
            "spec.routes[0].methods[0]",
        ),
        (
            "/spec/routes",
            json!(vec![json!({"path": "/x"}); 129]),
            "spec.routes",
        ),
        ("/spec/path", json!("/services/a b"), "spec.path"),
        ("/spec/hostname", json!("Shop.Example.com"), "spec.hostname"),
        ("/spec/type", json!("rental"), "spec.type"),
        (
            "/spec/model",
            json!({"name": "m", "runtime": "llamafile"}),
            "spec.model.runtime",
        ),
        ("/spec/payment/scheme", json!("upto"), "spec.payment.scheme"),
        (
            "/spec/payment/asset",
            json!({"decimals": 256}),
            "spec.payment.asset.decimals",
        ),
        ("/spec/branding/theme", json!("neon"), "spec.branding.theme"),
        (
            "/spec/pricing",
            json!({"perRequest": "1"}),
            "spec.pricing: unknown field",
        ),
        ("/spec/payment", Value::Null, "spec.payment: is required"),
    ];
    for (pointer, replacement, expected) in cases {
        let mut offer = newest_offer();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        offer.pointer_mut(parent).unwrap()[field] = replacement;
        let errors = validate(&schema, &offer);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{pointer}: expected an error at {expected}, got {errors:?}"
        );
    }
}

#[test]
fn original_purchases_and_identities_are_admitted() {
    let purchase = json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "PurchaseRequest",
        "metadata": {"name": "qwen", "namespace": "hermes-obol-agent", "finalizers": ["obol.org/purchase-finalizer"]},
        "spec": {
            "endpoint": "https://seller.example.com/services/qwen/v1/chat/completions",
            "model": "qwen3:0.6b",
            "count": 50,
            "preSignedAuths": [{
                "id": "a1", "payment": {"x402Version": 2, "payload": {"signature": "0x01"}},
                "signature": "0x01", "from": PAY_TO, "to": PAY_TO, "value": "1000",
                "validAfter": "0", "validBefore": "4294967295", "nonce": "0x02"
            }],
            "autoRefill": {"enabled": true, "threshold": 5, "count": 20, "maxTotal": 500, "maxSpendPerDay": "1000000"},
            "payment": {
                "network": "eip155:84532", "payTo": PAY_TO, "price": "1000",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "assetSymbol": "USDC",
                "assetDecimals": 6, "assetTransferMethod": "eip3009", "eip712Name": "USDC", "eip712Version": "2"
            }
        },
        "status": {"observedGeneration": 1, "publicModel": "paid/qwen3:0.6b", "remaining": 49, "spent": 1,
                   "totalSigned": 50, "totalSpent": "0.001", "probedAt": "2026-01-01T00:00:00Z",
                   "probedPrice": "1000", "walletBalance": "5", "signerAddress": PAY_TO}
    });
    let schema = schema_of("PurchaseRequest");
    assert_eq!(validate(&schema, &purchase), Vec::<String>::new());
    let mut too_many = purchase;
    too_many["spec"]["count"] = json!(2501);
    assert!(validate(&schema, &too_many)[0].starts_with("spec.count"));

    let identity = json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "AgentIdentity",
        "metadata": {"name": "default", "namespace": "x402"},
        "status": {"registrations": [{"chain": "base-sepolia", "agentId": "5003"}]}
    });
    assert_eq!(
        validate(&schema_of("AgentIdentity"), &identity),
        Vec::<String>::new()
    );
}

#[test]
fn the_address_pattern_is_what_validation_accepts() {
    let pattern = regex::Regex::new(ADDRESS_PATTERN).unwrap();
    for text in [
        PAY_TO,
        "0x1234",
        "0X3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BG",
        "",
    ] {
        assert_eq!(
            pattern.is_match(text),
            obol_control::validate::is_address(text),
            "{text}"
        );
    }
}
