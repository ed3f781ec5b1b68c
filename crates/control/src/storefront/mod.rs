//! The storefront: `/api/services.json` (obol-stack.md §6.3), `/skill.md` (§6.4),
//! `/openapi.json`, and a server-rendered HTML page at `/`.
//!
//! Everything is rendered from the operationally ready offers (Ready, or every gate condition
//! True — `Registered` is not required) and the public base URL.

use std::fmt::Write as _;

use obol_gateway::challenge::escape_html;
use obol_x402::money::format_units;
use obol_x402::network;
use obol_x402::token::TokenRegistry;
use serde_json::{Value, json};

use crate::offer::{GateSpec, PriceSpec, ServiceOffer};
use crate::reconcile::parse_rfc3339;
use crate::resource::{condition, is_true};
use crate::routes::listed_options;
use crate::snippets;
use obol_config::stack::Branding;
use obol_gateway::PaymentOption;

/// Shown when nothing is listed, and as the catalog's name.
pub const DISPLAY_NAME: &str = "Obol Stack";
/// The catalog's tagline.
pub const TAGLINE: &str = "Unlock Agent and API services with digital payments.";

/// Whether an offer is listed: not deleting, not drained, and serving.
pub fn is_listed(offer: &ServiceOffer, now: u64) -> bool {
    let c = &offer.status.conditions;
    let drained = offer
        .spec
        .drain_at
        .as_deref()
        .and_then(parse_rfc3339)
        .is_some_and(|start| {
            let grace = offer
                .spec
                .drain_grace_period
                .as_deref()
                .map_or(Some(3600), crate::reconcile::parse_duration)
                .unwrap_or(3600);
            now >= start.saturating_add(grace)
        });
    !offer.metadata.is_deleting()
        && !drained
        && (is_true(c, "Ready")
            || [
                "ModelReady",
                "UpstreamHealthy",
                "PaymentGateReady",
                "RoutePublished",
            ]
            .iter()
            .all(|t| is_true(c, t)))
}

/// The listed offers, heaviest listing weight first, then by name.
pub fn listed(offers: &[ServiceOffer], now: u64) -> Vec<&ServiceOffer> {
    let mut out: Vec<&ServiceOffer> = offers.iter().filter(|o| is_listed(o, now)).collect();
    out.sort_by(|a, b| {
        let weight = |o: &ServiceOffer| o.spec.listing.as_ref().map_or(0, |l| l.weight);
        weight(b)
            .cmp(&weight(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
            .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
    });
    out
}

pub(crate) fn description(offer: &ServiceOffer) -> String {
    offer
        .spec
        .description
        .clone()
        .unwrap_or_else(|| format!("x402 payment-gated {} service", offer.spec.type_.as_str()))
}

/// Suggested ways to buy, for people and agents.
fn buy_hints(offer: &ServiceOffer, endpoint: &str) -> Value {
    let mut hints = vec![format!("obol buy pay {endpoint}")];
    if let Some(model) = &offer.spec.model {
        hints.push(format!(
            "obol buy inference {endpoint} --model {} --count 10",
            model.name
        ));
        if !offer.status.metered.is_empty() {
            hints.push(format!(
                "obol buy inference {endpoint} --model {} --metered --count 10",
                model.name
            ));
        }
    }
    json!(hints)
}

/// Where buyers call an offer: `https://<hostname>` for an offer with a vanity hostname, else
/// the stack's URL and the offer's path.
pub fn endpoint(base_url: &str, offer: &ServiceOffer) -> String {
    match &offer.spec.hostname {
        Some(host) => format!("https://{host}"),
        None => format!("{base_url}{}", offer.effective_path()),
    }
}

/// One catalog entry.
fn entry(tokens: &TokenRegistry, base_url: &str, offer: &ServiceOffer) -> Value {
    let spec = &offer.spec;
    let endpoint = endpoint(base_url, offer);
    let network_name = &spec.payment.network;
    let (unit, raw) = price_fields(&spec.payment.price);
    let options = listed_options(tokens, offer);
    let symbol = options
        .first()
        .map_or_else(|| "USDC".to_owned(), |o| o.asset_symbol.clone());
    let registration_pending = condition(&offer.status.conditions, "Registered")
        .is_some_and(|c| c.reason == "AwaitingExternalRegistration");
    let mut value = json!({
        "name": offer.metadata.name,
        "namespace": offer.metadata.namespace,
        "type": spec.type_.as_str(),
        "endpoint": endpoint,
        "price": price_text(&spec.payment.price, &symbol),
        "payTo": spec.payment.pay_to,
        "network": network_name,
        "description": description(offer),
        "registrationPending": registration_pending,
        "priceRaw": raw,
        "priceUnit": unit,
        "caip2Network": network::normalize(network_name),
        "chainId": network::evm_chain_id(network_name).ok(),
        "weight": spec.listing.as_ref().map_or(0, |l| l.weight),
        "openapiPath": "/openapi.json",
        "docsPath": "/skill.md",
        "buy": buy_hints(offer, &endpoint),
    });
    if let Some(model) = &spec.model {
        value["model"] = model.name.clone().into();
    }
    if let Some(mcp) = crate::mcp::listing::catalog(tokens, offer, &endpoint) {
        value["mcp"] = mcp;
    }
    if !spec.routes.is_empty() {
        let prefix = offer.effective_path();
        value["routes"] = spec
            .routes
            .iter()
            .map(|route| {
                let price = match route.gate {
                    GateSpec::Paid => route.price.as_ref().map_or_else(
                        || price_text(&spec.payment.price, &symbol),
                        |p| price_text(&p.fields(), &symbol),
                    ),
                    GateSpec::Free => "free".to_owned(),
                    GateSpec::Auth => "signed-in wallets".to_owned(),
                };
                let path = match route.path.as_str() {
                    "/" => prefix.clone(),
                    path => format!("{prefix}{path}"),
                };
                json!({
                    "path": path,
                    "methods": if route.methods.is_empty() { vec!["*".to_owned()] } else { route.methods.clone() },
                    "gate": route.gate.as_str(),
                    "price": price,
                    "summary": route.summary.clone().unwrap_or_default(),
                })
            })
            .collect();
    }
    if let Some(registration) = &spec.registration
        && !registration.skills.is_empty()
    {
        value["skills"] = registration.skills.clone().into();
    }
    if let Some(category) = spec.listing.as_ref().and_then(|l| l.category.clone()) {
        value["category"] = category.into();
    } else if offer.metadata.namespace == "demo" {
        value["category"] = "demo".into();
    }
    if let Some(drain) = &spec.drain_at {
        value["drainEndsAt"] = drain.clone().into();
    }
    let payments: Vec<(Value, Value)> = options
        .iter()
        .map(|option| payment_entry(tokens, option))
        .collect();
    if let Some((asset, first)) = payments.first() {
        value["asset"] = asset.clone();
        value["priceAtomicUnits"] = first["amount"].clone();
        value["payments"] = payments.iter().map(|(_, p)| p.clone()).collect();
    }
    value
}

/// One way to pay, as the catalog lists it: its token (`asset`) and the payment entry (which
/// carries the token too).
fn payment_entry(tokens: &TokenRegistry, option: &PaymentOption) -> (Value, Value) {
    let r = &option.requirements;
    let decimals = tokens
        .on_chain(network::evm_chain_id(&r.network).unwrap_or(0))
        .find(|t| t.address.to_checksum(None).eq_ignore_ascii_case(&r.asset))
        .map_or(6, |t| t.decimals);
    let (name, version) = r.eip712_domain().unwrap_or(("", ""));
    let asset = json!({
        "address": r.asset,
        "symbol": option.asset_symbol,
        "decimals": decimals,
        "transferMethod": r.transfer_method().map(|m| m.as_str()).unwrap_or("eip3009"),
        "eip712Domain": {"name": name, "version": version},
    });
    let payment = json!({
        "scheme": r.scheme, "network": r.network, "amount": r.amount.to_string(),
        "amountHuman": format_units(r.amount(), decimals), "asset": asset, "payTo": r.pay_to,
        "price": match option.metering {
            Some(_) => format!(
                "up to {} {} per call, charged per token",
                format_units(r.amount(), decimals),
                option.asset_symbol
            ),
            None => option.price.label(&option.asset_symbol),
        },
    });
    (asset, payment)
}

/// The price's unit and its decimal amount as written.
fn price_fields(price: &PriceSpec) -> (&'static str, String) {
    match (&price.per_request, &price.per_mtok, &price.per_hour) {
        (Some(v), _, _) => ("perRequest", v.clone()),
        (None, Some(v), _) => ("perMTok", v.clone()),
        (None, None, Some(v)) => ("perHour", v.clone()),
        _ => ("perRequest", String::new()),
    }
}

/// `0.001 USDC/request`; `0.15 USDC/MTok prompt, 0.6 USDC/MTok completion` for per-token
/// rates of their own.
pub fn price_text(price: &PriceSpec, symbol: &str) -> String {
    if let (Some(input), Some(output)) = (&price.per_mtok_input, &price.per_mtok_output) {
        return format!("{input} {symbol}/MTok prompt, {output} {symbol}/MTok completion");
    }
    let (unit, raw) = price_fields(price);
    let suffix = match unit {
        "perMTok" => "/MTok",
        "perHour" => "/hour",
        _ => "/request",
    };
    format!("{raw} {symbol}{suffix}")
}

/// `/api/services.json`.
pub fn services_json(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
    branding: &Branding,
) -> Value {
    let services: Vec<Value> = listed(offers, now)
        .into_iter()
        .map(|o| entry(tokens, base_url, o))
        .collect();
    let mut catalog = json!({
        "schemaVersion": "1",
        "displayName": display_name(branding),
        "tagline": branding.tagline.as_deref().unwrap_or(TAGLINE),
        "logoUrl": branding.logo_url.as_deref().unwrap_or("/obol-stack-logo.png"),
        "services": services,
    });
    for (key, value) in [
        ("theme", &branding.theme),
        ("faviconUrl", &branding.favicon_url),
        ("ogImageUrl", &branding.og_image_url),
        ("description", &branding.description),
        ("accentColor", &branding.accent_color),
        ("contactEmail", &branding.contact_email),
    ] {
        if let Some(value) = value {
            catalog[key] = value.clone().into();
        }
    }
    catalog
}

/// The stack's name: the branding's, else [`DISPLAY_NAME`].
pub fn display_name(branding: &Branding) -> &str {
    branding.display_name.as_deref().unwrap_or(DISPLAY_NAME)
}

/// `/skill.md`: how an agent finds and pays for what this stack sells.
pub fn skill_md(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
    branding: &Branding,
) -> String {
    let listed = listed(offers, now);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# {} Service Catalog\n",
        one_line(display_name(branding))
    );
    if let Some(about) = &branding.description {
        let _ = writeln!(md, "{}\n", one_line(about));
    }
    if let Some(email) = &branding.contact_email {
        let _ = writeln!(md, "Contact: <{}>\n", one_line(email));
    }
    let _ = writeln!(
        md,
        "Generated from {} ready ServiceOffer(s).\n",
        listed.len()
    );
    let _ = writeln!(
        md,
        "Machine-readable: [`/openapi.json`]({base_url}/openapi.json), [`/api/services.json`]({base_url}/api/services.json), [`/.well-known/agent-registration.json`]({base_url}/.well-known/agent-registration.json).\n"
    );
    let _ = writeln!(md, "## How to pay (x402)\n");
    let _ = writeln!(
        md,
        "1. Call the service unpaid; it answers `402 Payment Required` with `accepts[]`: `amount` (legacy `maxAmountRequired`), CAIP-2 `network`, `asset`, `payTo`, `scheme`."
    );
    let _ = writeln!(md, "2. Choose one entry of `accepts[]`.");
    let _ = writeln!(
        md,
        "3. Sign an EIP-3009 `TransferWithAuthorization` or a Permit2 witness transfer, as `extra.assetTransferMethod` says, under the EIP-712 domain in `extra` (`name`, `version`)."
    );
    let _ = writeln!(
        md,
        "4. Retry the same request with the base64 JSON payment in `X-PAYMENT` (v1) or `PAYMENT-SIGNATURE` (v2)."
    );
    let _ = writeln!(
        md,
        "5. Expect `200` with `X-PAYMENT-RESPONSE` / `PAYMENT-RESPONSE` carrying the settlement.\n"
    );
    let _ = writeln!(
        md,
        "With obol: `obol buy pay <endpoint>` for one call, or pre-sign a pool with `obol buy inference <endpoint> --model M --count N`.\n"
    );
    let _ = writeln!(md, "## Services\n");
    if listed.is_empty() {
        let _ = writeln!(md, "No services currently available.");
        return md;
    }
    let _ = writeln!(
        md,
        "| Service | Type | Model | Pay with | Status | Endpoint |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    let entries: Vec<Value> = listed.iter().map(|o| entry(tokens, base_url, o)).collect();
    for e in &entries {
        let status = if e["registrationPending"] == true {
            "ready (registration pending)"
        } else {
            "ready"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {status} | {} |",
            e["name"].as_str().unwrap_or(""),
            e["type"].as_str().unwrap_or(""),
            e["model"].as_str().unwrap_or("-"),
            e["price"].as_str().unwrap_or(""),
            e["endpoint"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(md, "\n## Service Details");
    for e in &entries {
        let endpoint = e["endpoint"].as_str().unwrap_or("");
        let _ = writeln!(md, "\n### {}\n", e["name"].as_str().unwrap_or(""));
        let _ = writeln!(md, "- Endpoint: `{endpoint}`");
        let call = match e["type"].as_str() {
            Some("inference" | "agent") => format!(
                "POST `{endpoint}/v1/chat/completions` (OpenAI-compatible, streaming supported)"
            ),
            Some("fine-tuning") => format!("multipart POST `{endpoint}`"),
            Some("mcp") => format!("MCP tools over streamable HTTP at `{endpoint}`"),
            _ => "operator-defined HTTP API under the endpoint; see /openapi.json".to_owned(),
        };
        let _ = writeln!(md, "- Call: {call}");
        let _ = writeln!(md, "- Type: {}", e["type"].as_str().unwrap_or(""));
        if let Some(model) = e["model"].as_str() {
            let _ = writeln!(md, "- Model: {model}");
        }
        if let Some(asset) = e.get("asset") {
            let _ = writeln!(
                md,
                "- Payment: {} on `{}` ({}) — pay to `{}`; token `{}` ({}, {} decimals, {})",
                e["price"].as_str().unwrap_or(""),
                e["network"].as_str().unwrap_or(""),
                e["caip2Network"].as_str().unwrap_or(""),
                e["payTo"].as_str().unwrap_or(""),
                asset["address"].as_str().unwrap_or(""),
                asset["symbol"].as_str().unwrap_or(""),
                asset["decimals"],
                asset["transferMethod"].as_str().unwrap_or("")
            );
        }
        if let Some(others) = e["payments"].as_array().filter(|p| p.len() > 1) {
            let _ = writeln!(md, "- Also payable with (each is an entry of `accepts[]`):");
            for payment in &others[1..] {
                let _ = writeln!(
                    md,
                    "  - {} on `{}` — token `{}` ({}), pay to `{}`",
                    payment["price"].as_str().unwrap_or(""),
                    payment["network"].as_str().unwrap_or(""),
                    payment["asset"]["address"].as_str().unwrap_or(""),
                    payment["asset"]["transferMethod"].as_str().unwrap_or(""),
                    payment["payTo"].as_str().unwrap_or("")
                );
            }
        }
        if let Some(mcp) = e.get("mcp") {
            md.push_str(&crate::mcp::listing::skill_lines(mcp));
        }
        if let Some(routes) = e["routes"].as_array() {
            let _ = writeln!(
                md,
                "- Routes (anything else under the endpoint is refused):"
            );
            for route in routes {
                let methods: Vec<&str> = route["methods"]
                    .as_array()
                    .map(|m| m.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let summary = route["summary"].as_str().unwrap_or("");
                let _ = writeln!(
                    md,
                    "  - `{} {}` — {}{}",
                    methods.join("|"),
                    route["path"].as_str().unwrap_or(""),
                    route["price"].as_str().unwrap_or(""),
                    if summary.is_empty() {
                        String::new()
                    } else {
                        format!(": {summary}")
                    }
                );
            }
            if routes.iter().any(|r| r["gate"] == "auth") {
                let endpoint = e["endpoint"].as_str().unwrap_or("");
                let _ = writeln!(
                    md,
                    "- Routes for signed-in wallets answer 401 with a Sign-In-With-X challenge (the x402 `sign-in-with-x` extension in `PAYMENT-REQUIRED`): sign it (EIP-4361) and resend in `SIGN-IN-WITH-X`; or `GET {endpoint}/auth/nonce`, sign, `POST {endpoint}/auth/verify` `{{\"message\", \"signature\"}}` for a 24 h session token (`Authorization: Bearer …`)."
                );
            }
        }
        if let Some(drain) = e["drainEndsAt"].as_str() {
            let _ = writeln!(md, "- Draining: no longer sold after {drain}");
        }
        let _ = writeln!(
            md,
            "- Description: {}",
            e["description"].as_str().unwrap_or("")
        );
        if e.get("mcp").is_some() {
            let _ = writeln!(
                md,
                "\n#### Try it\n\n```sh\n{}\n```",
                crate::mcp::listing::curl_tools_list(endpoint)
            );
            continue;
        }
        let _ = writeln!(
            md,
            "\n#### Try it\n\n```sh\ncurl -i {endpoint}            # 402 with the payment requirements\nobol buy pay {endpoint}        # one paid call\n```"
        );
    }
    md
}

/// `/openapi.json`: the listed offers' operations ([`crate::openapi`]).
pub fn openapi_json(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
) -> Value {
    let prefixed: Vec<(String, &ServiceOffer)> = listed(offers, now)
        .into_iter()
        .map(|o| (o.effective_path(), o))
        .collect();
    crate::openapi::document(tokens, base_url, &prefixed)
}

/// `/openapi.json` on an offer's vanity hostname: the offer alone, at `/`.
pub fn offer_openapi_json(tokens: &TokenRegistry, origin: &str, offer: &ServiceOffer) -> Value {
    crate::openapi::document(tokens, origin, &[(String::new(), offer)])
}

/// An offer card's example call and answer, and the snippets to copy: `curl` (the 402),
/// `obol buy pay`, Python with the x402 SDK.
fn try_it(offer: &ServiceOffer, endpoint: &str, charged: &Value) -> String {
    if offer.spec.type_ == crate::offer::OfferType::Mcp {
        return format!(
            "<details class=\"snippet\"><summary>curl (list the tools)</summary><pre class=\"curl\"><code>{}</code></pre><button onclick=\"navigator.clipboard.writeText(this.previousElementSibling.innerText)\">Copy</button></details>",
            escape_html(&crate::mcp::listing::curl_tools_list(endpoint))
        );
    }
    let call = snippets::example_call(offer, endpoint);
    let max = charged.as_str().unwrap_or("0.01");
    let obol = match &call.body {
        Some(body) => format!(
            "obol buy pay '{}' -X {} -d '{}' --max-amount {max}",
            call.url,
            call.method,
            body.to_string().replace('\'', r"'\''")
        ),
        None => format!("obol buy pay '{}' --max-amount {max}", call.url),
    };
    let mut html = String::new();
    let io = crate::discovery::effective_io(offer);
    if let Some(output) = io
        .as_ref()
        .and_then(|(_, o)| o.as_ref())
        .and_then(|o| o.example.as_ref())
    {
        let _ = write!(
            html,
            "<details><summary>Example answer</summary><pre>{}</pre></details>",
            escape_html(&serde_json::to_string_pretty(output).unwrap_or_default())
        );
    }
    for (class, label, code) in [
        ("curl", "curl (see the 402)", snippets::curl(&call)),
        ("obol", "obol buy pay", obol),
        ("python", "Python (x402 SDK)", snippets::python(&call)),
    ] {
        let _ = write!(
            html,
            "<details class=\"snippet\"><summary>{label}</summary><pre class=\"{class}\"><code>{}</code></pre><button onclick=\"navigator.clipboard.writeText(this.previousElementSibling.innerText)\">Copy</button></details>",
            escape_html(&code)
        );
    }
    html
}

/// The HTML storefront at `/`.
pub fn html(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[ServiceOffer],
    now: u64,
    branding: &Branding,
) -> String {
    let listed = listed(offers, now);
    let entries: Vec<Value> = listed.iter().map(|o| entry(tokens, base_url, o)).collect();
    let mut cards = String::new();
    for (offer, e) in listed.iter().zip(&entries) {
        let s = |k: &str| escape_html(e[k].as_str().unwrap_or(""));
        let asset = &e["asset"];
        let mut more = String::new();
        for payment in e["payments"].as_array().into_iter().flatten().skip(1) {
            let _ = write!(
                more,
                "<dt>Or</dt><dd class=\"price\">{} <code>{}</code></dd>",
                escape_html(payment["price"].as_str().unwrap_or("")),
                escape_html(payment["network"].as_str().unwrap_or("")),
            );
        }
        if let Some(tools) = e["mcp"]["tools"].as_array() {
            more.push_str("<dt>Tools</dt><dd><ul class=\"routes\">");
            for tool in tools {
                let _ = write!(
                    more,
                    "<li><code>{}</code> {}</li>",
                    escape_html(tool["name"].as_str().unwrap_or("")),
                    escape_html(tool["price"].as_str().unwrap_or("")),
                );
            }
            if let Some(price) = e["mcp"]["otherTools"].as_str() {
                let _ = write!(
                    more,
                    "<li>every other tool of the server {}</li>",
                    escape_html(price)
                );
            }
            more.push_str("</ul></dd>");
        }
        if let Some(routes) = e["routes"].as_array() {
            more.push_str("<dt>Routes</dt><dd><ul class=\"routes\">");
            for route in routes {
                let methods: Vec<&str> = route["methods"]
                    .as_array()
                    .map(|m| m.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let _ = write!(
                    more,
                    "<li><code>{} {}</code> {}</li>",
                    escape_html(&methods.join("|")),
                    escape_html(route["path"].as_str().unwrap_or("")),
                    escape_html(route["price"].as_str().unwrap_or("")),
                );
            }
            more.push_str("</ul></dd>");
        }
        let _ = write!(
            cards,
            r#"<article class="card"><header><h2>{name}</h2><span class="tag">{kind}</span></header>
<p class="desc">{desc}</p>
<dl><dt>Price</dt><dd class="price">{price}</dd>{more}
<dt>Network</dt><dd>{network} <code>{caip2}</code></dd>
<dt>Token</dt><dd>{symbol} <code>{asset}</code></dd>
<dt>Pay to</dt><dd><code>{pay_to}</code></dd>
<dt>Endpoint</dt><dd><code>{endpoint}</code></dd></dl>
{try_it}</article>
"#,
            try_it = try_it(
                offer,
                e["endpoint"].as_str().unwrap_or(""),
                &e["payments"][0]["amountHuman"]
            ),
            name = s("name"),
            kind = s("type"),
            desc = s("description"),
            price = s("price"),
            network = s("network"),
            caip2 = s("caip2Network"),
            symbol = escape_html(asset["symbol"].as_str().unwrap_or("")),
            asset = escape_html(asset["address"].as_str().unwrap_or("")),
            pay_to = s("payTo"),
            endpoint = s("endpoint"),
        );
    }
    if entries.is_empty() {
        cards.push_str("<p class=\"empty\">No services currently available.</p>");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>{head}
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#0f1115;color:#e8e8ea}}
main{{max-width:960px;margin:0 auto;padding:32px 20px}}
h1{{margin:0 0 4px;font-size:28px}} .tagline{{color:#9aa0aa;margin:0 0 24px}}
.links a{{color:#7cc4ff;margin-right:16px}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px;margin-top:24px}}
.card{{background:#171a21;border:1px solid #262b36;border-radius:10px;padding:16px}}
.card header{{display:flex;justify-content:space-between;align-items:center}} .card h2{{margin:0;font-size:20px}}
.tag{{background:#243447;color:#7cc4ff;border-radius:6px;padding:2px 8px;font-size:12px}}
dl{{display:grid;grid-template-columns:90px 1fr;gap:6px 10px;font-size:14px}} dt{{color:#9aa0aa}} dd{{margin:0;word-break:break-all}}
.price{{color:#9be39b;font-weight:600}} code{{font-size:12px;color:#d7d7db}}
.probe{{display:flex;gap:8px;align-items:center;background:#0f1115;border-radius:6px;padding:8px;margin-top:8px}}
.probe code{{flex:1;word-break:break-all}} button{{background:#2b6cb0;color:white;border:0;border-radius:6px;padding:4px 10px;cursor:pointer}}
.logo{{height:48px;margin-bottom:8px}} .contact a{{color:#7cc4ff}} .empty{{color:#9aa0aa}} .routes{{margin:0;padding-left:16px}}
details{{margin-top:8px}} summary{{cursor:pointer;color:#7cc4ff}} pre{{background:#0f1115;border-radius:6px;padding:8px;overflow-x:auto;font-size:12px}}
</style>
{theme}</head>
<body><main>
{logo}<h1>{title}</h1><p class="tagline">{tagline}</p>{about}
<p class="links"><a href="/skill.md">skill.md</a><a href="/api/services.json">services.json</a><a href="/openapi.json">openapi.json</a></p>
<p>Pay per request with x402: call an endpoint, receive <code>402</code> with the payment requirements, retry with a signed payment.</p>
<section class="grid">
{cards}</section>
</main></body></html>
"#,
        title = escape_html(display_name(branding)),
        tagline = escape_html(branding.tagline.as_deref().unwrap_or(TAGLINE)),
        head = branded_head(branding),
        theme = branded_style(branding),
        logo = branding
            .logo_url
            .as_deref()
            .map_or_else(String::new, |url| format!(
                "<img class=\"logo\" src=\"{}\" alt=\"\">",
                escape_html(url)
            )),
        about = branded_about(branding),
    )
}

/// The `<head>` additions of the branding: favicon and Open Graph.
fn branded_head(branding: &Branding) -> String {
    let mut head = String::new();
    if let Some(url) = &branding.favicon_url {
        let _ = write!(head, "\n<link rel=\"icon\" href=\"{}\">", escape_html(url));
    }
    let about = branding.description.as_ref().or(branding.tagline.as_ref());
    for (property, value) in [
        ("og:title", Some(display_name(branding))),
        ("og:description", about.map(String::as_str)),
        ("og:image", branding.og_image_url.as_deref()),
    ] {
        if let Some(value) = value {
            let _ = write!(
                head,
                "\n<meta property=\"{property}\" content=\"{}\">",
                escape_html(value)
            );
        }
    }
    head
}

/// The theme's colours, after the page's own style so that they win.
fn branded_style(branding: &Branding) -> String {
    let mut style = String::new();
    // Validated `#rgb`/`#rrggbb`; escaped all the same.
    let accent = branding.accent_color.as_deref().map(escape_html);
    let light = branding.theme.as_deref() == Some("light");
    if light || accent.is_some() {
        style.push_str("<style>");
        if light {
            style.push_str("body{background:#f7f7f9;color:#1b1d22}.card{background:#fff;border-color:#e1e3e8}.tagline,dt,.empty{color:#5b616e}code{color:#2b2f36}.probe,pre{background:#eef0f4}.tag{background:#e6eefb}.price{color:#15803d}");
        }
        if let Some(accent) = accent {
            let _ = write!(
                style,
                ".links a,.contact a,summary,.tag{{color:{accent}}}button{{background:{accent}}}"
            );
        }
        style.push_str("</style>\n");
    }
    style
}

/// The branding's paragraph and contact, for the page.
fn branded_about(branding: &Branding) -> String {
    let mut about = String::new();
    if let Some(text) = &branding.description {
        let _ = write!(about, "<p class=\"about\">{}</p>", escape_html(text));
    }
    if let Some(email) = &branding.contact_email {
        let _ = write!(
            about,
            "<p class=\"contact\">Contact: <a href=\"mailto:{0}\">{0}</a></p>",
            escape_html(email)
        );
    }
    about
}

/// `text` as Markdown text: on one line (headings and list items must not break), HTML
/// escaped (Markdown renders raw HTML).
pub(crate) fn one_line(text: &str) -> String {
    escape_html(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests;
