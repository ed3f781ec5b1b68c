//! The discovery documents beside the storefront (shared/spec/extensions.md §3), all from the
//! listed offers (Ready or operationally ready, not drained) and priced by the 402s' own code:
//!
//! | path | reader | shape |
//! | --- | --- | --- |
//! | `/.well-known/x402` | the original's consumers (v0.14) | `{x402Version: 2, resources: [{resource, type, method, description, x402Version, accepts}]}` |
//! | `/.well-known/x402.json` | the x402 foundation draft | `{x402Version: 2, lastUpdated, items: [{resource: {url, description, mimeType, serviceName?, tags?}, type, accepts, input?, output?, requires?}]}` |
//! | `/llms.txt` | language models (llmstxt.org) | Markdown: what is sold, prices, how to pay, links |
//!
//! x402scan reads `/openapi.json` first, then `/.well-known/x402`, then the DNS TXT record
//! [`dns_txt`] names.

use std::fmt::Write as _;

use obol_x402::network;
use obol_x402::token::TokenRegistry;
use serde_json::{Value, json};

use crate::discovery::{bazaar, effective_io};
use crate::offer::{GateSpec, OfferType, ServiceOffer};
use crate::routes::{listed_options, payment_options};
use crate::storefront::{description, display_name, endpoint, listed, one_line, price_text};
use obol_config::stack::Branding;

/// The offer's `accepts`, CAIP-2 networks, as its 402 lists them (metered options included).
fn accepts(tokens: &TokenRegistry, offer: &ServiceOffer) -> Vec<Value> {
    listed_options(tokens, offer)
        .into_iter()
        .map(|option| {
            let mut requirement = option.requirements;
            requirement.network = network::normalize(&requirement.network);
            serde_json::to_value(requirement).unwrap_or_default()
        })
        .collect()
}

/// The method a buyer calls the offer with.
fn method(offer: &ServiceOffer) -> String {
    effective_io(offer)
        .and_then(|(input, _)| input.method)
        .unwrap_or_else(|| match offer.spec.type_ {
            OfferType::Http => "GET".into(),
            _ => "POST".into(),
        })
}

/// `/.well-known/x402`, the original's shape.
pub fn x402_resources(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
) -> Value {
    let resources: Vec<Value> = listed(offers, now)
        .into_iter()
        .flat_map(|offer| {
            if offer.spec.type_ == OfferType::Mcp {
                return crate::mcp::listing::resources(tokens, offer, &endpoint(base_url, offer));
            }
            vec![json!({
                "resource": endpoint(base_url, offer),
                "type": "http",
                "method": method(offer),
                "description": description(offer),
                "x402Version": 2,
                "accepts": accepts(tokens, offer),
            })]
        })
        .collect();
    json!({"x402Version": 2, "resources": resources})
}

/// `/.well-known/x402.json`, the x402 foundation draft.
pub fn x402_json(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
) -> Value {
    let items: Vec<Value> = listed(offers, now)
        .into_iter()
        .flat_map(|offer| {
            if offer.spec.type_ == OfferType::Mcp {
                return crate::mcp::listing::items(tokens, offer, &endpoint(base_url, offer));
            }
            let discovery = offer.spec.discovery.as_ref();
            let mut resource = json!({
                "url": endpoint(base_url, offer),
                "description": description(offer),
                "mimeType": "application/json",
            });
            if let Some(name) = discovery.and_then(|d| d.service_name.as_ref()) {
                resource["serviceName"] = name.clone().into();
            }
            if let Some(tags) = discovery.map(|d| &d.tags).filter(|t| !t.is_empty()) {
                resource["tags"] = json!(tags);
            }
            let mut item =
                json!({"resource": resource, "type": "http", "accepts": accepts(tokens, offer)});
            if let Some(info) = bazaar(offer).map(|b| b["info"].clone()) {
                item["input"] = info["input"].clone();
                if let Some(output) = info.get("output") {
                    item["output"] = output.clone();
                }
            }
            let signs_in = offer.spec.routes.iter().any(|r| {
                r.gate == GateSpec::Auth
                    || (r.gate == GateSpec::Paid && r.free_quota.unwrap_or(0) > 0)
            });
            if signs_in {
                item["requires"] = json!(["sign-in-with-x"]);
            }
            vec![item]
        })
        .collect();
    json!({
        "x402Version": 2,
        "lastUpdated": obol_config::time::rfc3339(now),
        "items": items,
    })
}

/// `/llms.txt`: a short Markdown index for language models.
pub fn llms_txt(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
    branding: &Branding,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", one_line(display_name(branding)));
    let _ = writeln!(
        md,
        "> Paid APIs and models, paid per call in stablecoins with x402: call an endpoint, answer its `402 Payment Required` with a signed payment in `PAYMENT-SIGNATURE`, get the answer and a `PAYMENT-RESPONSE` receipt.\n"
    );
    let _ = writeln!(md, "## Services\n");
    let listed = listed(offers, now);
    if listed.is_empty() {
        let _ = writeln!(md, "No services are available right now.");
    }
    for offer in listed {
        if offer.spec.type_ == OfferType::Mcp {
            let tools: Vec<String> = crate::mcp::listing::tools(tokens, offer)
                .iter()
                .map(|tool| format!("`{}` {}", tool.name, tool.price))
                .collect();
            let _ = writeln!(
                md,
                "- [{}]({}): {} — MCP tools (streamable HTTP, paid per call in `params._meta[\"x402/payment\"]`): {}",
                offer.metadata.name,
                endpoint(base_url, offer),
                description(offer),
                tools.join(", "),
            );
            continue;
        }
        let options = payment_options(tokens, offer, None).unwrap_or_default();
        let mut prices: Vec<String> = options
            .iter()
            .zip(offer.effective_payments())
            .map(|(option, payment)| {
                format!(
                    "{} on {}",
                    price_text(&payment.price, &option.asset_symbol),
                    payment.network
                )
            })
            .collect();
        prices.extend(offer.status.metered.iter().map(|m| {
            format!(
                "up to {} per call on {}, charged per token (`upto`)",
                m.ceiling, m.network
            )
        }));
        let _ = writeln!(
            md,
            "- [{}]({}): {} — {} ({} to call)",
            offer.metadata.name,
            endpoint(base_url, offer),
            description(offer),
            prices.join(", or "),
            method(offer),
        );
    }
    let _ = writeln!(md, "\n## Docs\n");
    for (name, path, what) in [
        (
            "skill.md",
            "/skill.md",
            "how to pay, step by step, and every service in detail",
        ),
        (
            "OpenAPI",
            "/openapi.json",
            "every operation with its input, output and price",
        ),
        (
            "x402 resources",
            "/.well-known/x402",
            "the services with their payment requirements",
        ),
        ("Catalog", "/api/services.json", "the storefront's data"),
    ] {
        let _ = writeln!(md, "- [{name}]({base_url}{path}): {what}");
    }
    md
}

/// The DNS record that points x402 indexers at a host's `/.well-known/x402`:
/// `_x402.<host>` `TXT "v=x4021;url=<origin>/.well-known/x402"`.
pub fn dns_txt(origin: &str) -> Option<(String, String)> {
    let url = url::Url::parse(origin).ok()?;
    let host = url.host_str()?;
    Some((
        format!("_x402.{host}"),
        format!(
            "\"v=x4021;url={}/.well-known/x402\"",
            origin.trim_end_matches('/')
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Settlers, metered_status};
    use crate::validate::tests::served;

    /// `served(name)` as a metered inference offer (0.15 / 0.60 USDC per million tokens) whose
    /// chain's facilitator settles `upto`, recorded by the reconciler.
    fn metered(tokens: &TokenRegistry, name: &str) -> ServiceOffer {
        let mut offer = served(name);
        offer.spec.type_ = OfferType::Inference;
        offer.spec.model = Some(serde_json::from_value(json!({"name": "m"})).unwrap());
        offer.spec.payment.price =
            serde_json::from_value(json!({"perMTokInput": "0.15", "perMTokOutput": "0.6"}))
                .unwrap();
        offer.spec.payment.upto = Some(crate::offer::UptoSpec::default());
        let settler = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
            .parse()
            .unwrap();
        offer.status.metered = metered_status(tokens, &Settlers::from([(84532, settler)]), &offer);
        offer
    }

    #[test]
    fn metered_offers_list_their_upto_option_beside_exact() {
        let tokens = TokenRegistry::builtin();
        let offers = [metered(&tokens, "llm")];
        let original = x402_resources(&tokens, "https://s.example", &offers, 0);
        let accepts = &original["resources"][0]["accepts"];
        assert_eq!(accepts.as_array().map(Vec::len), Some(2), "{accepts}");
        assert_eq!(accepts[0]["scheme"], "exact");
        assert_eq!(accepts[1]["scheme"], "upto");
        assert_eq!(accepts[1]["amount"], "2458");
        assert_eq!(accepts[1]["network"], "eip155:84532");
        assert_eq!(
            accepts[1]["extra"]["facilitatorAddress"],
            "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
        );
        let draft = x402_json(&tokens, "https://s.example", &offers, 0);
        assert_eq!(draft["items"][0]["accepts"], *accepts);

        let llms = llms_txt(
            &tokens,
            "https://s.example",
            &offers,
            0,
            &Branding::default(),
        );
        assert!(
            llms.contains(
                "or up to 0.002458 USDC per call on base-sepolia, charged per token (`upto`)"
            ),
            "{llms}"
        );
        let catalog = crate::storefront::services_json(
            &tokens,
            "https://s.example",
            &offers,
            0,
            &Branding::default(),
        );
        let entry = &catalog["services"][0];
        assert_eq!(entry["payments"][1]["scheme"], "upto");
        assert_eq!(
            entry["payments"][1]["price"],
            "up to 0.002458 USDC per call, charged per token"
        );
        assert_eq!(
            entry["buy"][2],
            "obol buy inference https://s.example/services/llm --model m --metered --count 10"
        );

        // Not recorded (no facilitator settles upto on the chain): exact only, no hint.
        let mut exact_only = metered(&tokens, "llm");
        exact_only.status.metered.clear();
        let original = x402_resources(&tokens, "https://s.example", &[exact_only], 0);
        assert_eq!(
            original["resources"][0]["accepts"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn the_documents_list_what_is_sold_at_the_402_prices() {
        let tokens = TokenRegistry::builtin();
        let mut quota = served("quota");
        quota.spec.routes =
            serde_json::from_value(json!([{"path": "/*", "freeQuota": 2}])).unwrap();
        let offers = [served("echo"), quota];
        let original = x402_resources(&tokens, "https://s.example", &offers, 0);
        assert_eq!(
            original["resources"][0]["resource"],
            "https://s.example/services/echo"
        );
        assert_eq!(original["resources"][0]["method"], "GET");
        assert_eq!(original["resources"][0]["accepts"][0]["amount"], "1000");
        assert_eq!(
            original["resources"][0]["accepts"][0]["network"],
            "eip155:84532"
        );

        let draft = x402_json(&tokens, "https://s.example", &offers, 0);
        assert_eq!(
            draft["items"][0]["resource"]["url"],
            "https://s.example/services/echo"
        );
        assert!(draft["items"][0].get("requires").is_none());
        assert_eq!(draft["items"][1]["requires"], json!(["sign-in-with-x"]));

        let llms = llms_txt(
            &tokens,
            "https://s.example",
            &offers,
            0,
            &Branding::default(),
        );
        assert!(
            llms.contains("- [echo](https://s.example/services/echo): x402 payment-gated http service — 0.001 USDC/request on base-sepolia (GET to call)"),
            "{llms}"
        );
        assert!(
            llms.contains("- [OpenAPI](https://s.example/openapi.json)"),
            "{llms}"
        );

        assert_eq!(
            dns_txt("https://s.example"),
            Some((
                "_x402.s.example".into(),
                "\"v=x4021;url=https://s.example/.well-known/x402\"".into()
            ))
        );
        let unlisted = served("gone");
        let mut gone = unlisted;
        gone.status.conditions.clear();
        assert_eq!(
            x402_resources(&tokens, "https://s.example", &[gone], 0)["resources"],
            json!([])
        );
    }
}
