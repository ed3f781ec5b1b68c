//! Catalog, `/skill.md` and page rendering, field by field.

use super::*;
use crate::offer::{ListingSpec, RegistrationSpec};
use crate::resource::{ConditionStatus, set_condition};
use crate::validate::tests::served;

fn serving(name: &str, weight: i64) -> ServiceOffer {
    let mut o = served(name);
    o.spec.listing = Some(ListingSpec {
        weight,
        category: None,
    });
    o
}

#[test]
fn lists_operationally_ready_offers_by_weight() {
    let mut pending = serving("pending", 0);
    pending.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    set_condition(
        &mut pending.status.conditions,
        "Registered",
        ConditionStatus::False,
        "AwaitingExternalRegistration",
        "",
    );
    let mut unhealthy = serving("unhealthy", 100);
    set_condition(
        &mut unhealthy.status.conditions,
        "UpstreamHealthy",
        ConditionStatus::False,
        "Unhealthy",
        "",
    );
    let mut drained = serving("drained", 50);
    drained.spec.drain_at = Some("2020-01-01T00:00:00Z".into());
    let offers = vec![
        serving("a", 0),
        pending,
        serving("heavy", 10),
        unhealthy,
        drained,
    ];
    let catalog = services_json(
        &TokenRegistry::builtin(),
        "https://s.example",
        &offers,
        1_800_000_000,
        &Branding::default(),
    );
    let names = obol_testkit::json::strings(&catalog["services"], "name");
    assert_eq!(names, ["heavy", "a", "pending"]);
    let pending = &catalog["services"][2];
    assert_eq!(pending["registrationPending"], true);
    assert_eq!(pending["priceAtomicUnits"], "1000");
    assert_eq!(pending["chainId"], 84532);
    let empty = services_json(
        &TokenRegistry::builtin(),
        "https://s.example",
        &[],
        0,
        &Branding::default(),
    );
    assert_eq!(empty["services"], serde_json::json!([]));
    assert_eq!(empty["displayName"], "Obol Stack");
    assert!(
        skill_md(&TokenRegistry::builtin(), "x", &[], 0, &Branding::default())
            .contains("No services currently available.")
    );
}

#[test]
fn html_escapes_what_sellers_write() {
    let mut o = serving("x", 0);
    o.spec.description = Some("<script>alert('x')</script>".into());
    let page = html(
        &TokenRegistry::builtin(),
        "https://s.example",
        &[o],
        1_800_000_000,
        &Branding::default(),
    );
    assert!(!page.contains("<script>alert"), "escaped");
    assert!(page.contains("&lt;script&gt;"));
}

#[test]
fn declared_routes_are_listed_with_their_gates_and_prices() {
    let mut o = serving("api", 0);
    o.spec.routes = serde_json::from_value(serde_json::json!([
        {"path": "/*", "gate": "free", "methods": ["GET"], "summary": "Read"},
        {"path": "/submit", "methods": ["POST"], "price": "0.5"},
        {"path": "/"}
    ]))
    .unwrap();
    let tokens = TokenRegistry::builtin();
    let catalog = services_json(
        &tokens,
        "https://s.example",
        &[o.clone()],
        1_800_000_000,
        &Branding::default(),
    );
    assert_eq!(
        catalog["services"][0]["routes"],
        serde_json::json!([
            {"path": "/services/api/*", "methods": ["GET"], "gate": "free", "price": "free", "summary": "Read"},
            {"path": "/services/api/submit", "methods": ["POST"], "gate": "paid", "price": "0.5 USDC/request", "summary": ""},
            {"path": "/services/api", "methods": ["*"], "gate": "paid", "price": "0.001 USDC/request", "summary": ""}
        ])
    );
    let md = skill_md(
        &tokens,
        "https://s.example",
        std::slice::from_ref(&o),
        1_800_000_000,
        &Branding::default(),
    );
    assert!(
        md.contains("  - `GET /services/api/*` — free: Read"),
        "{md}"
    );
    assert!(
        md.contains("  - `POST /services/api/submit` — 0.5 USDC/request"),
        "{md}"
    );
    assert!(!md.contains("Sign-In-With-X"), "no auth route: {md}");
    o.spec
        .routes
        .push(serde_json::from_value(serde_json::json!({"path": "/me", "gate": "auth"})).unwrap());
    let md = skill_md(
        &tokens,
        "https://s.example",
        &[o],
        1_800_000_000,
        &Branding::default(),
    );
    assert!(
        md.contains("  - `* /services/api/me` — signed-in wallets"),
        "{md}"
    );
    assert!(
        md.contains("`POST https://s.example/services/api/auth/verify`"),
        "{md}"
    );
}

#[test]
fn every_way_to_pay_is_listed() {
    let mut o = serving("multi", 0);
    let first = serde_json::to_value(&o.spec.payment).unwrap();
    o.spec.payments = serde_json::from_value(serde_json::json!([first, {
        "network": "base-sepolia", "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "asset": {"symbol": "OBOL"}, "price": {"perRequest": "0.5"}
    }]))
    .unwrap();
    let tokens = TokenRegistry::builtin();
    let catalog = services_json(
        &tokens,
        "https://s.example",
        &[o.clone()],
        1_800_000_000,
        &Branding::default(),
    );
    let payments = catalog["services"][0]["payments"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = payments
        .iter()
        .map(|p| (p["price"].as_str().unwrap(), p["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("0.001 USDC/request", "1000"),
            ("0.5 OBOL/request", "500000000000000000")
        ]
    );
    let md = skill_md(
        &tokens,
        "https://s.example",
        &[o],
        1_800_000_000,
        &Branding::default(),
    );
    assert!(
        md.contains("  - 0.5 OBOL/request on `eip155:84532`"),
        "{md}"
    );
}

#[test]
fn branding_is_shown_and_escaped_everywhere() {
    let branding = Branding {
        display_name: Some("<script>alert(1)</script> Shop".into()),
        tagline: Some("Fresh & \"quoted\"".into()),
        logo_url: Some("https://shop.example/logo.png?a=1&b=\"2\"".into()),
        theme: Some("light".into()),
        accent_color: Some("#ff6600".into()),
        description: Some("About <b>us</b>".into()),
        contact_email: Some("sales@shop.example".into()),
        ..Branding::default()
    };
    let tokens = TokenRegistry::builtin();
    let page = html(&tokens, "https://s.example", &[], 0, &branding);
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; Shop</title>"));
    assert!(page.contains("Fresh &amp; &quot;quoted&quot;"));
    assert!(page.contains(
        r#"<img class="logo" src="https://shop.example/logo.png?a=1&amp;b=&quot;2&quot;" alt="">"#
    ));
    assert!(page.contains("button{background:#ff6600}"));
    assert!(page.contains("body{background:#f7f7f9"), "light theme");
    assert!(page.contains("About &lt;b&gt;us&lt;/b&gt;"));
    assert!(page.contains(r#"<a href="mailto:sales@shop.example">"#));
    let catalog = services_json(&tokens, "https://s.example", &[], 0, &branding);
    assert_eq!(catalog["displayName"], "<script>alert(1)</script> Shop");
    assert_eq!(catalog["theme"], "light");
    let md = skill_md(&tokens, "https://s.example", &[], 0, &branding);
    assert!(md.starts_with("# &lt;script&gt;alert(1)&lt;/script&gt; Shop Service Catalog\n"));
    assert!(md.contains("Contact: <sales@shop.example>"));
}
