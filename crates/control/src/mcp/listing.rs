//! How MCP offers appear where buyers look: the catalog's `mcp` object (and from it `/skill.md`
//! and the page), one `/.well-known/x402` resource and one `/.well-known/x402.json` item per
//! paid tool (`mcp://tool/<name>`, as its PaymentRequired names it), and the Bazaar `mcp`
//! input each paid tool's PaymentRequired carries. Prices come from the same
//! [`payment_options`] the gateway charges.

use std::fmt::Write as _;

use obol_gateway::PaymentOption;
use obol_gateway::mcp::resource_url;
use obol_x402::network;
use obol_x402::token::TokenRegistry;
use serde_json::{Map, Value, json};

use super::{McpToolSpec, McpUpstream, described};
use crate::offer::ServiceOffer;
use crate::routes::payment_options;
use crate::storefront::{one_line, price_text};

/// The MCP transport our endpoints speak.
pub const TRANSPORT: &str = "streamable-http";

/// The MCP version the registration document names (the oldest our endpoints speak; newer
/// ones are negotiated).
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// One declared tool as buyers see it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its description (may be empty).
    pub description: String,
    /// `"0.002 USDC/request"`, or `"free"`.
    pub price: String,
    /// The ways to pay for one call (empty when free).
    pub options: Vec<PaymentOption>,
    /// Its arguments' JSON Schema.
    pub input_schema: Map<String, Value>,
}

impl Listed {
    /// Whether a call is free.
    pub fn free(&self) -> bool {
        self.options.is_empty()
    }
}

/// The arguments' schema of a tool that declares none: any object.
pub fn any_object() -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    schema
}

/// The declared tools of an MCP offer with their prices, in the token of the offer's first
/// payment (a tool whose price cannot be built is left out: the offer is not served then).
pub fn tools(tokens: &TokenRegistry, offer: &ServiceOffer) -> Vec<Listed> {
    let Some(mcp) = &offer.spec.mcp else {
        return Vec::new();
    };
    mcp.tools
        .iter()
        .filter_map(|tool| listed(tokens, offer, tool))
        .collect()
}

fn listed(tokens: &TokenRegistry, offer: &ServiceOffer, tool: &McpToolSpec) -> Option<Listed> {
    let (price, options) = if tool.free {
        ("free".to_owned(), Vec::new())
    } else {
        let fields = tool.price.as_ref().map(|p| p.fields());
        let options = payment_options(tokens, offer, fields.as_ref()).ok()?;
        let symbol = options.first()?.asset_symbol.clone();
        let price = fields.as_ref().unwrap_or(&offer.spec.payment.price);
        (price_text(price, &symbol), options)
    };
    Some(Listed {
        name: tool.name.clone(),
        description: tool.description.clone().unwrap_or_default(),
        price,
        options,
        input_schema: tool.input_schema.clone().unwrap_or_else(any_object),
    })
}

/// What a call of a tool the offer does not declare costs (a proxied server's), if any.
fn others(tokens: &TokenRegistry, offer: &ServiceOffer) -> Option<String> {
    let mcp = offer.spec.mcp.as_ref()?;
    if mcp.upstream != McpUpstream::Mcp {
        return None;
    }
    let symbol = payment_options(tokens, offer, None)
        .ok()?
        .first()?
        .asset_symbol
        .clone();
    Some(price_text(&offer.spec.payment.price, &symbol))
}

/// The Bazaar extension of a paid tool's PaymentRequired: the `mcp` input (tool name, its
/// description, its arguments' schema, the transport) and the JSON Schema of that input.
pub fn bazaar(name: &str, description: &str, input_schema: &Map<String, Value>) -> Value {
    let mut input = json!({
        "type": "mcp",
        "toolName": name,
        "transport": TRANSPORT,
        "inputSchema": input_schema,
    });
    let mut properties = json!({
        "type": {"type": "string", "const": "mcp"},
        "toolName": {"type": "string"},
        "transport": {"type": "string", "enum": [TRANSPORT]},
        "inputSchema": {"type": "object"},
    });
    if !description.is_empty() {
        input["description"] = description.into();
        properties["description"] = json!({"type": "string"});
    }
    json!({
        "info": {"input": input},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": properties,
                    "required": ["type", "toolName", "inputSchema"],
                    "additionalProperties": false,
                }
            },
            "required": ["input"],
        }
    })
}

/// A tool's `accepts`, CAIP-2 networks, as its PaymentRequired lists them.
fn accepts(tool: &Listed) -> Vec<Value> {
    tool.options
        .iter()
        .map(|option| {
            let mut requirement = option.requirements.clone();
            requirement.network = network::normalize(&requirement.network);
            serde_json::to_value(requirement).unwrap_or_default()
        })
        .collect()
}

/// The catalog entry's `mcp` object: where to connect and each tool with its price.
pub fn catalog(tokens: &TokenRegistry, offer: &ServiceOffer, endpoint: &str) -> Option<Value> {
    offer.spec.mcp.as_ref()?;
    let tools: Vec<Value> = tools(tokens, offer)
        .iter()
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description,
                "price": tool.price,
                "free": tool.free(),
                "resource": resource_url(&tool.name),
                "inputSchema": tool.input_schema,
            })
        })
        .collect();
    let mut value = json!({"endpoint": endpoint, "transport": TRANSPORT, "tools": tools});
    if let Some(price) = others(tokens, offer) {
        value["otherTools"] = price.into();
    }
    Some(value)
}

/// `/skill.md` lines of an MCP catalog entry's `mcp` object.
pub fn skill_lines(mcp: &Value) -> String {
    let mut md = String::new();
    let endpoint = mcp["endpoint"].as_str().unwrap_or("");
    let _ = writeln!(
        md,
        "- MCP: streamable HTTP at `{endpoint}` (`tools/list`, `tools/call`); a paid tool's unpaid call answers a PaymentRequired result (`isError`, `structuredContent`); send the signed payment in `params._meta[\"x402/payment\"]`, the receipt comes back in `result._meta[\"x402/payment-response\"]`."
    );
    let _ = writeln!(md, "- Tools:");
    for tool in mcp["tools"].as_array().into_iter().flatten() {
        let description = tool["description"].as_str().unwrap_or("");
        let _ = writeln!(
            md,
            "  - `{}` — {}{}",
            tool["name"].as_str().unwrap_or(""),
            tool["price"].as_str().unwrap_or(""),
            if description.is_empty() {
                String::new()
            } else {
                format!(": {}", one_line(description))
            }
        );
    }
    if let Some(price) = mcp["otherTools"].as_str() {
        let _ = writeln!(
            md,
            "  - every other tool of the server (see `tools/list`) — {price}"
        );
    }
    md
}

/// A `curl` that lists an MCP endpoint's tools (one JSON-RPC request, no session needed).
pub fn curl_tools_list(endpoint: &str) -> String {
    format!(
        "curl -s {endpoint} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: {PROTOCOL_VERSION}' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'"
    )
}

/// `/.well-known/x402` resources (the original's shape): one per paid tool.
pub fn resources(tokens: &TokenRegistry, offer: &ServiceOffer, endpoint: &str) -> Vec<Value> {
    tools(tokens, offer)
        .iter()
        .filter(|tool| !tool.free())
        .map(|tool| {
            json!({
                "resource": resource_url(&tool.name),
                "type": "mcp",
                "endpoint": endpoint,
                "toolName": tool.name,
                "description": described(&tool.name, &tool.description),
                "x402Version": 2,
                "accepts": accepts(tool),
            })
        })
        .collect()
}

/// `/.well-known/x402.json` items (the x402 draft): one per paid tool, its input the Bazaar
/// `mcp` input, the endpoint beside it.
pub fn items(tokens: &TokenRegistry, offer: &ServiceOffer, endpoint: &str) -> Vec<Value> {
    tools(tokens, offer)
        .iter()
        .filter(|tool| !tool.free())
        .map(|tool| {
            let description = described(&tool.name, &tool.description);
            json!({
                "resource": {
                    "url": resource_url(&tool.name),
                    "description": description,
                    "mimeType": "application/json",
                },
                "type": "mcp",
                "endpoint": endpoint,
                "accepts": accepts(tool),
                "input": bazaar(&tool.name, &tool.description, &tool.input_schema)["info"]["input"],
            })
        })
        .collect()
}
