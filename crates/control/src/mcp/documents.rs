//! MCP offers in every document buyers read: the catalog, `/skill.md`, the page, the
//! `/.well-known/x402*` documents, `/llms.txt`, `/openapi.json` and the registration document,
//! and the Bazaar `mcp` input of each paid tool's PaymentRequired.

use obol_config::stack::Branding;
use obol_x402::token::TokenRegistry;
use serde_json::{Value, json};

use super::McpSpec;
use crate::identity::{AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY};
use crate::offer::{OfferType, RegistrationSpec, ServiceOffer};
use crate::routes::gateway_routes;
use crate::secrets::NoSecrets;
use crate::storefront::{html, openapi_json, services_json, skill_md};
use crate::validate::tests::served;
use crate::wellknown::{llms_txt, x402_json, x402_resources};

const BASE: &str = "https://seller.example";
const NOW: u64 = 1_800_000_000;

/// A served MCP offer `tools`: `forecast` at 0.01, `summary` at the offer's 0.001, `ping` free.
fn tools_offer() -> ServiceOffer {
    let mut o = served("tools");
    o.spec.type_ = OfferType::Mcp;
    o.spec.mcp = Some(
        serde_json::from_value::<McpSpec>(json!({"tools": [
            {"name": "forecast", "price": "0.01", "description": "Weather for a city",
             "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "summary"},
            {"name": "ping", "free": true}
        ]}))
        .unwrap(),
    );
    o.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    o
}

fn tokens() -> TokenRegistry {
    TokenRegistry::builtin()
}

#[test]
fn the_catalog_lists_each_tool_with_its_price() {
    let catalog = services_json(&tokens(), BASE, &[tools_offer()], NOW, &Branding::default());
    let entry = &catalog["services"][0];
    assert_eq!(entry["type"], "mcp");
    let mcp = &entry["mcp"];
    assert_eq!(mcp["endpoint"], "https://seller.example/services/tools");
    assert_eq!(mcp["transport"], "streamable-http");
    let tools: Vec<(&str, &str, &str)> = mcp["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["price"].as_str().unwrap(),
                t["resource"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [
            ("forecast", "0.01 USDC/request", "mcp://tool/forecast"),
            ("summary", "0.001 USDC/request", "mcp://tool/summary"),
            ("ping", "free", "mcp://tool/ping"),
        ]
    );
    assert_eq!(
        mcp["tools"][0]["inputSchema"]["properties"]["city"]["type"],
        "string"
    );
    assert!(mcp.get("otherTools").is_none());
}

#[test]
fn skill_md_page_and_llms_txt_name_the_tools() {
    let offers = [tools_offer()];
    let md = skill_md(&tokens(), BASE, &offers, NOW, &Branding::default());
    assert!(
        md.contains("MCP tools over streamable HTTP at `https://seller.example/services/tools`"),
        "{md}"
    );
    assert!(
        md.contains("  - `forecast` — 0.01 USDC/request: Weather for a city"),
        "{md}"
    );
    assert!(md.contains("  - `ping` — free"), "{md}");
    assert!(md.contains("params._meta[\"x402/payment\"]"), "{md}");
    assert!(
        md.contains(r#"-d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'"#),
        "{md}"
    );
    let page = html(&tokens(), BASE, &offers, NOW, &Branding::default());
    assert!(
        page.contains("<li><code>forecast</code> 0.01 USDC/request</li>"),
        "{page}"
    );
    assert!(page.contains("curl (list the tools)"));
    let llms = llms_txt(&tokens(), BASE, &offers, NOW, &Branding::default());
    assert!(
        llms.contains("MCP tools (streamable HTTP, paid per call in `params._meta[\"x402/payment\"]`): `forecast` 0.01 USDC/request, `summary` 0.001 USDC/request, `ping` free"),
        "{llms}"
    );
}

#[test]
fn well_known_documents_list_each_paid_tool() {
    let offers = [tools_offer()];
    let resources = x402_resources(&tokens(), BASE, &offers, NOW);
    let listed = obol_testkit::json::strings(&resources["resources"], "resource");
    assert_eq!(
        listed,
        ["mcp://tool/forecast", "mcp://tool/summary"],
        "free tools are not sold"
    );
    let forecast = &resources["resources"][0];
    assert_eq!(forecast["type"], "mcp");
    assert_eq!(
        forecast["endpoint"],
        "https://seller.example/services/tools"
    );
    assert_eq!(forecast["accepts"][0]["amount"], "10000");
    assert_eq!(forecast["accepts"][0]["network"], "eip155:84532");

    let draft = x402_json(&tokens(), BASE, &offers, NOW);
    let item = &draft["items"][0];
    assert_eq!(item["type"], "mcp");
    assert_eq!(item["resource"]["url"], "mcp://tool/forecast");
    assert_eq!(item["resource"]["description"], "Weather for a city");
    assert_eq!(item["input"]["toolName"], "forecast");
    assert_eq!(item["input"]["transport"], "streamable-http");
    assert_eq!(
        draft["items"][1]["resource"]["description"],
        "Tool: summary"
    );
}

#[test]
fn openapi_leaves_mcp_offers_out_and_the_registration_names_an_mcp_service() {
    let offers = [tools_offer()];
    let doc = openapi_json(&tokens(), BASE, &offers, NOW);
    assert_eq!(doc["paths"], json!({}), "JSON-RPC is not a REST operation");

    let identity = AgentIdentity::new(
        DEFAULT_IDENTITY.0,
        DEFAULT_IDENTITY.1,
        AgentIdentitySpec::default(),
    );
    let doc = crate::registration::document(&offers, &identity, BASE, |_| None, NOW);
    let services = serde_json::to_value(&doc.services).unwrap();
    assert_eq!(
        services[0],
        json!({"name": "MCP", "endpoint": "https://seller.example/services/tools", "version": "2025-06-18"})
    );
}

#[test]
fn each_paid_tool_describes_itself_in_its_402() {
    let routes =
        gateway_routes(&tokens(), &NoSecrets, &Default::default(), &tools_offer()).unwrap();
    let tools = routes[0].offer.mcp.as_ref().unwrap();
    let forecast = tools.get("forecast").unwrap().priced.as_ref().unwrap();
    let bazaar = forecast.discovery.as_ref().unwrap().bazaar.clone().unwrap();
    let input = &bazaar["info"]["input"];
    assert_eq!(input["type"], "mcp");
    assert_eq!(input["toolName"], "forecast");
    assert_eq!(input["description"], "Weather for a city");
    assert_eq!(input["inputSchema"]["properties"]["city"]["type"], "string");
    assert_eq!(
        bazaar["schema"]["properties"]["input"]["required"],
        json!(["type", "toolName", "inputSchema"])
    );
    let summary = tools.get("summary").unwrap().priced.as_ref().unwrap();
    let input: &Value =
        &summary.discovery.as_ref().unwrap().bazaar.as_ref().unwrap()["info"]["input"];
    assert!(input.get("description").is_none());
    assert_eq!(input["inputSchema"], json!({"type": "object"}));
}
