//! Validation rules, field by field.

use super::*;
use crate::offer::{ServiceOfferSpec, UpstreamSpec};
use obol_testkit::accounts::PAY_TO;

pub(crate) fn offer() -> ServiceOffer {
    ServiceOffer::new(
        "default",
        "echo",
        ServiceOfferSpec::per_request(
            OfferType::Http,
            "http://127.0.0.1:9000",
            "base-sepolia",
            PAY_TO,
            "0.001",
        ),
    )
}

/// [`offer`] named `name`, every condition up to `RoutePublished` True: served.
pub(crate) fn served(name: &str) -> ServiceOffer {
    let mut o = offer();
    o.metadata.name = name.into();
    for t in [
        "ModelReady",
        "UpstreamHealthy",
        "PaymentGateReady",
        "RoutePublished",
    ] {
        crate::resource::set_condition(
            &mut o.status.conditions,
            t,
            crate::resource::ConditionStatus::True,
            "Reconciled",
            "",
        );
    }
    o
}

fn fields(offer: &ServiceOffer) -> Vec<Cow<'static, str>> {
    validate_offer(offer).err().map_or_else(Vec::new, |e| {
        e.errors.into_iter().map(|f| f.field).collect()
    })
}

#[test]
fn a_good_offer_passes() {
    assert_eq!(validate_offer(&offer()), Ok(()));
    assert_eq!(offer().effective_path(), "/services/echo");
}

#[test]
fn each_rule_names_its_field() {
    let mut o = offer();
    o.metadata.name = "Bad_Name".into();
    assert_eq!(fields(&o), ["metadata.name"]);

    let mut o = offer();
    o.spec.payment.pay_to = "0x123".into();
    assert_eq!(fields(&o), ["spec.payment.payTo"]);

    let mut o = offer();
    o.spec.payment.price.per_hour = Some("1".into());
    let err = validate_offer(&o).unwrap_err().to_string();
    assert!(
        err.contains("several prices given (perRequest, perHour)"),
        "{err}"
    );

    let mut o = offer();
    o.spec.payment.price.per_request = None;
    assert_eq!(fields(&o), ["spec.payment.price"]);

    let mut o = offer();
    o.spec.path = Some("/api/x".into());
    assert_eq!(fields(&o), ["spec.path"]);
    o.spec.path = Some("/services".into());
    assert_eq!(fields(&o), ["spec.path"]);
    o.spec.path = Some("/has space".into());
    assert_eq!(fields(&o), ["spec.path"]);

    let mut o = offer();
    o.spec.payment.network = "nowhere".into();
    assert_eq!(fields(&o), ["spec.payment.network"]);

    let mut o = offer();
    o.spec.upstream = UpstreamSpec::default();
    assert_eq!(fields(&o), ["spec.upstream"]);

    let mut o = offer();
    o.spec.type_ = OfferType::Inference;
    assert_eq!(fields(&o), ["spec.model.name"]);

    let mut o = offer();
    o.metadata.name = "x".repeat(64);
    o.spec.payment.pay_to = "nope".into();
    assert_eq!(
        fields(&o),
        ["metadata.name", "spec.payment.payTo"],
        "all errors at once"
    );
}

#[test]
fn payments_list_every_way_to_pay_starting_with_payment() {
    let with_payments = |payments: serde_json::Value| {
        let mut o = offer();
        o.spec.payments = serde_json::from_value(payments).unwrap();
        o
    };
    let first = serde_json::json!({
        "network": "eip155:84532", "payTo": "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
        "maxTimeoutSeconds": 300, "price": {"perRequest": "0.001"}
    });
    let obol = serde_json::json!({
        "network": "base-sepolia", "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "asset": {"symbol": "OBOL"}, "price": {"perRequest": "0.5"}
    });
    // The same as spec.payment once normalised (CAIP-2, address case, default validity).
    assert_eq!(
        validate_offer(&with_payments(serde_json::json!([first, obol]))),
        Ok(())
    );

    let mut other_first = first.clone();
    other_first["price"]["perRequest"] = "0.002".into();
    let mut bad_second = obol.clone();
    bad_second["payTo"] = "0x12".into();
    bad_second["price"] = serde_json::json!({});
    let mut settles_first = obol.clone();
    settles_first["settle"] = "settleFirst".into();
    for (payments, want) in [
        (
            serde_json::json!([other_first, obol]),
            vec!["spec.payments[0]"],
        ),
        (
            serde_json::json!([first, bad_second]),
            vec!["spec.payments[1].payTo", "spec.payments[1].price"],
        ),
        (serde_json::json!([first, first]), vec!["spec.payments[1]"]),
        (
            serde_json::json!([first, settles_first]),
            vec!["spec.payments[1].settle"],
        ),
    ] {
        assert_eq!(fields(&with_payments(payments.clone())), want, "{payments}");
    }
}

#[test]
fn upstream_auth_is_a_reference_with_a_usable_header() {
    use crate::offer::{SecretRef, UpstreamAuthSpec};
    let with = |name: &str, key: &str, header: Option<&str>| {
        let mut o = offer();
        o.spec.upstream.auth = Some(UpstreamAuthSpec {
            secret_ref: SecretRef {
                name: name.into(),
                key: key.into(),
            },
            header: header.map(Into::into),
        });
        fields(&o)
    };
    assert!(with("echo-upstream-auth", "value", None).is_empty());
    assert!(with("keys", "openai.key_1", Some("X-Api-Key")).is_empty());
    assert_eq!(
        with("Keys", "value", None),
        ["spec.upstream.auth.secretRef.name"]
    );
    assert_eq!(
        with("keys", "a/b", None),
        ["spec.upstream.auth.secretRef.key"]
    );
    for header in ["X-Payment-Payer", "Host", "bad header"] {
        assert_eq!(
            with("keys", "value", Some(header)),
            ["spec.upstream.auth.header"],
            "{header}"
        );
    }

    // A literal value is no field of the spec: refused as unknown, never stored.
    let mut json = serde_json::to_value(offer().spec).unwrap();
    json["upstream"]["auth"] = serde_json::json!({"value": "sk-literal"});
    let error = serde_json::from_value::<ServiceOfferSpec>(json)
        .unwrap_err()
        .to_string();
    assert!(!error.contains("sk-literal"), "{error}");
}

#[test]
fn hostnames_are_lower_case_dns_names() {
    for good in ["api.example.com", "a-1.b.example", "x.y"] {
        assert_eq!(hostname_problem(good), None, "{good}");
    }
    for bad in [
        "localhost",
        "API.example.com",
        "api.example.com:443",
        "https://api.example.com",
        "api.example.com.",
        "-api.example.com",
        "api..example.com",
        "10.0.0.1",
        "::1",
        "a_b.example.com",
        &format!("{}.com", "a".repeat(64)),
    ] {
        assert!(hostname_problem(bad).is_some(), "{bad}");
    }
    let mut o = offer();
    o.spec.hostname = Some("Bad Host".into());
    assert_eq!(fields(&o), ["spec.hostname"]);
}

#[test]
fn limits_are_between_one_and_the_maximum() {
    let mut o = offer();
    o.spec.limits = Some(crate::offer::LimitsSpec {
        max_in_flight: Some(8),
        rps: Some(MAX_LIMIT),
    });
    assert_eq!(validate_offer(&o), Ok(()));
    o.spec.limits = Some(crate::offer::LimitsSpec {
        max_in_flight: Some(0),
        rps: Some(MAX_LIMIT + 1),
    });
    assert_eq!(fields(&o), ["spec.limits.maxInFlight", "spec.limits.rps"]);
}

#[test]
fn routes_are_checked_field_by_field() {
    let with_routes = |routes: serde_json::Value| {
        let mut o = offer();
        o.spec.routes = serde_json::from_value(routes).unwrap();
        o
    };
    let good = with_routes(serde_json::json!([
        {"path": "/*", "gate": "free", "methods": ["GET"]},
        {"path": "/", "methods": ["POST"]},
        {"path": "/submit", "methods": ["POST"], "price": "0.5", "summary": "Submit a job"},
        {"path": "/submit", "methods": ["GET"]},
        {"path": "/v1/*/info", "price": {"perRequest": "0.002"}},
        {"path": "/files/*.json", "freeQuota": 0},
        {"path": "/search", "freeQuota": 5},
        {"path": "/me", "gate": "auth", "summary": "For signed-in wallets"}
    ]));
    assert_eq!(validate_offer(&good), Ok(()));

    for (routes, field, says) in [
        (
            serde_json::json!([{"path": "submit"}]),
            "spec.routes[0].path",
            "must match",
        ),
        (
            serde_json::json!([{"path": "/a//b"}]),
            "spec.routes[0].path",
            "empty segment",
        ),
        (
            serde_json::json!([{"path": "/a/"}]),
            "spec.routes[0].path",
            "trailing",
        ),
        (
            serde_json::json!([{"path": "/a/../b"}]),
            "spec.routes[0].path",
            "\"..\"",
        ),
        (
            serde_json::json!([{"path": "/a*b*"}]),
            "spec.routes[0].path",
            "one '*'",
        ),
        (
            serde_json::json!([{"path": "/auth"}]),
            "spec.routes[0].path",
            "sign-in",
        ),
        (
            serde_json::json!([{"path": "/auth/verify"}]),
            "spec.routes[0].path",
            "sign-in",
        ),
        (
            serde_json::json!([{"path": "/x", "methods": ["FETCH"]}]),
            "spec.routes[0].methods",
            "\"FETCH\" is not one of",
        ),
        (
            serde_json::json!([{"path": "/x", "methods": ["get"]}]),
            "spec.routes[0].methods",
            "upper case",
        ),
        (
            serde_json::json!([{"path": "/x", "price": "0"}]),
            "spec.routes[0].price",
            "greater than zero",
        ),
        (
            serde_json::json!([{"path": "/x", "price": "abc"}]),
            "spec.routes[0].price",
            "",
        ),
        (
            serde_json::json!([{"path": "/x", "price": {"perEpoch": "1", "perRequest": "1"}}]),
            "spec.routes[0].price.perEpoch",
            "not supported",
        ),
        (
            serde_json::json!([{"path": "/x", "summary": "s".repeat(301)}]),
            "spec.routes[0].summary",
            "300",
        ),
        (
            serde_json::json!([{"path": "/x"}, {"path": "/x", "methods": ["GET"]}]),
            "spec.routes[1].path",
            "spec.routes[0]",
        ),
    ] {
        let o = with_routes(routes.clone());
        let error = validate_offer(&o).unwrap_err();
        assert_eq!(fields(&o), [field], "{routes}");
        assert!(error.to_string().contains(says), "{routes}: {error}");
    }
    let many: Vec<serde_json::Value> = (0..=MAX_ROUTES)
        .map(|i| serde_json::json!({"path": format!("/r{i}")}))
        .collect();
    assert_eq!(fields(&with_routes(many.into())), ["spec.routes"]);
}

#[test]
fn offer_paths_must_be_in_normal_form() {
    let problem = |path: &str| {
        let mut o = offer();
        o.spec.path = Some(path.into());
        validate_offer(&o).err().map(|e| {
            assert_eq!(fields(&o), ["spec.path"], "{path}");
            e.to_string()
        })
    };
    for good in [
        "/services/x",
        "/services/x/",
        "/services/x/premium",
        "/v1/chat.completions",
        "/a_b-c/d.e",
    ] {
        assert_eq!(problem(good), None, "{good}");
    }
    for (bad, says) in [
        ("/services//x", "empty segment ('//')"),
        ("/services/x//", "empty segment ('//')"),
        ("/services/./x", "\".\" segment"),
        ("/services/x/..", "\"..\" segment"),
        ("/services/../api", "\"..\" segment"),
        ("/services/x/*", "must not contain '*'"),
        ("/services/*/x", "must not contain '*'"),
        ("/services/x*", "must not contain '*'"),
        ("services/x", "must match ^/[a-zA-Z0-9/_.-]*$"),
        ("/services/x?y", "must match ^/[a-zA-Z0-9/_.-]*$"),
        ("/services/%2e%2e", "must match ^/[a-zA-Z0-9/_.-]*$"),
        ("", "must match ^/[a-zA-Z0-9/_.-]*$"),
    ] {
        let error = problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(error.contains("spec.path: "), "{error}");
        assert!(error.contains(says), "{bad:?}: {error}");
    }
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert!(problem(&long).unwrap().contains("longer than 512 bytes"));
}

#[test]
fn purchases_are_checked_field_by_field() {
    use crate::purchase::{PurchasePayment, PurchaseRequestSpec};
    let good = PurchaseRequest::new(
        "buy",
        "qwen",
        PurchaseRequestSpec {
            endpoint: "http://127.0.0.1:8080/services/llm".into(),
            model: "qwen3:0.6b".into(),
            count: 5,
            pre_signed_auths: Vec::new(),
            auto_refill: None,
            payment: PurchasePayment::of(&obol_testkit::x402::requirement("USDC", 1000, PAY_TO)),
        },
    );
    assert_eq!(validate_purchase(&good), Ok(()));
    let mut bad = good;
    bad.metadata.name = "Qwen!".into();
    bad.spec.model = " ".into();
    bad.spec.count = 0;
    bad.spec.endpoint = "ftp://x".into();
    bad.spec.payment.network = "moon".into();
    bad.spec.payment.pay_to = "0x12".into();
    bad.spec.payment.asset = "usdc".into();
    bad.spec.payment.price = "0".into();
    bad.spec.auto_refill = Some(crate::purchase::AutoRefill {
        enabled: true,
        ..crate::purchase::AutoRefill::default()
    });
    let error = validate_purchase(&bad).unwrap_err();
    let fields: Vec<&str> = error.errors.iter().map(|f| f.field.as_ref()).collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "spec.model",
            "spec.count",
            "spec.autoRefill.count",
            "spec.autoRefill.threshold",
            "spec.autoRefill.maxSpendPerDay",
            "spec.payment.network",
            "spec.payment.payTo",
            "spec.payment.asset",
            "spec.payment.price",
            "spec.endpoint"
        ]
    );
    assert!(
        error
            .to_string()
            .starts_with("invalid PurchaseRequest: metadata.name")
    );
}

#[test]
fn identities_are_checked() {
    let mut identity = crate::identity::default_identity();
    identity.status.upsert("base-sepolia", "5003").unwrap();
    identity.status.upsert("devnet", "0").unwrap();
    assert_eq!(validate_identity(&identity), Ok(()));
    identity.spec.image = Some("javascript:alert(1)".into());
    identity.status.upsert("moon base", "x1").unwrap();
    identity
        .status
        .registrations
        .push(identity.status.registrations[0].clone());
    let error = validate_identity(&identity).unwrap_err();
    let fields: Vec<&str> = error.errors.iter().map(|f| f.field.as_ref()).collect();
    assert_eq!(
        fields,
        [
            "spec.image",
            "status.registrations[].chain",
            "status.registrations[].agentId",
            "status.registrations[].chain"
        ]
    );
}

#[test]
fn metered_billing_needs_an_inference_offer_priced_per_token() {
    let metered = |price: serde_json::Value, upto: serde_json::Value| {
        let mut o = offer();
        o.spec.type_ = OfferType::Inference;
        o.spec.model = Some(crate::offer::ModelSpec {
            name: "m".into(),
            runtime: None,
        });
        o.spec.payment.price = serde_json::from_value(price).unwrap();
        o.spec.payment.upto = Some(serde_json::from_value(upto).unwrap());
        o
    };
    let split = serde_json::json!({"perMTokInput": "0.15", "perMTokOutput": "0.6"});
    assert_eq!(
        fields(&metered(split.clone(), serde_json::json!({}))),
        Vec::<&str>::new()
    );
    assert_eq!(
        fields(&metered(
            serde_json::json!({"perMTok": "1"}),
            serde_json::json!({"maxTokens": 8192, "noUsage": "ceiling"})
        )),
        Vec::<&str>::new()
    );
    assert_eq!(
        fields(&metered(
            serde_json::json!({"perRequest": "0.001"}),
            serde_json::json!({})
        )),
        ["spec.payment.upto"]
    );
    assert_eq!(
        fields(&metered(split.clone(), serde_json::json!({"maxTokens": 0}))),
        ["spec.payment.upto.maxTokens"]
    );
    assert_eq!(
        fields(&metered(
            serde_json::json!({"perMTokInput": "0.15"}),
            serde_json::json!({})
        )),
        [
            "spec.payment.price.perMTokOutput",
            "spec.payment.price",
            "spec.payment.upto"
        ]
    );
    assert_eq!(
        fields(&metered(
            serde_json::json!({"perMTok": "1", "perMTokInput": "0.15", "perMTokOutput": "0.6"}),
            serde_json::json!({})
        )),
        ["spec.payment.price.perMTok", "spec.payment.upto"]
    );
    let mut http = metered(split, serde_json::json!({}));
    http.spec.type_ = OfferType::Http;
    assert_eq!(fields(&http), ["spec.payment.upto"]);
}
