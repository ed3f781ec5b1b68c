//! MCP offers (`type: mcp`): the tools of `spec.mcp`, their checks, and the gateway's tool
//! table (docs/design/agents.md). A tool is paid at `payment.price` unless it has its own
//! `price` or is `free`; its arguments are POSTed as JSON to `<upstream.url><path>` (`path`
//! defaults to `/<name>`), or, with `spec.mcp.upstream: mcp`, the upstream is an MCP server and
//! every tool of it is sold (the declared ones as declared, the others at `payment.price`).

use std::sync::Arc;

use obol_gateway::mcp::{MAX_TOOLS, Tool, Tools, valid_tool_name};
use obol_gateway::{Discovery, Offer};
use obol_x402::token::TokenRegistry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::offer::{OfferType, RoutePrice, ServiceOffer, ServiceOfferSpec};
use crate::routes::{RouteError, payment_options};
use crate::validate::{FieldError, price_problems, route_path_problem};

#[cfg(test)]
mod documents;
pub mod listing;

/// The longest tool description.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// `spec.mcp`: what an MCP offer sells.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpSpec {
    /// What `spec.upstream.url` is: an HTTP API (each tool POSTed to) or an MCP server (every
    /// tool of it sold).
    #[serde(default, skip_serializing_if = "McpUpstream::is_default")]
    pub upstream: McpUpstream,
    /// The tools (at most [`MAX_TOOLS`], names unique): every tool sold, or, for an MCP
    /// upstream, the prices of those not at the offer's price (may be empty).
    #[serde(default)]
    pub tools: Vec<McpToolSpec>,
}

/// What an MCP offer's upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum McpUpstream {
    /// An HTTP API: a call POSTs the tool's JSON arguments to `<upstream.url><path>`.
    #[default]
    Http,
    /// A streamable-HTTP MCP server at `upstream.url`: its tools are listed and called through.
    Mcp,
}

impl McpUpstream {
    fn is_default(&self) -> bool {
        *self == Self::Http
    }
}

/// One tool of an MCP offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpToolSpec {
    /// `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: String,
    /// What it does (`tools/list`, the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its own price per call instead of `payment.price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<RoutePrice>,
    /// Served without payment (`ping`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free: bool,
    /// The JSON Schema of its arguments (`{"type": "object", …}`; default: any object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
    /// Below the upstream URL, where its arguments are POSTed (default `/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl McpToolSpec {
    /// A tool named `name` at the offer's price, POSTed to `/<name>`.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: None,
            price: None,
            free: false,
            input_schema: None,
            path: None,
        }
    }

    /// Where its arguments go below the upstream URL.
    pub fn effective_path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/{}", self.name))
    }
}

/// Whether `offer` sells an upstream MCP server's tools.
pub fn is_mcp_server(offer: &ServiceOffer) -> bool {
    offer.spec.type_ == OfferType::Mcp
        && offer
            .spec
            .mcp
            .as_ref()
            .is_some_and(|mcp| mcp.upstream == McpUpstream::Mcp)
}

/// The `initialize` request the health probe sends an upstream MCP server.
pub fn initialize_request() -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "obol-stack health probe", "version": env!("CARGO_PKG_VERSION")}
        }
    })
}

/// Checks `spec.mcp` against `spec.type`: present exactly for `type: mcp`, no `routes` beside
/// it, and each tool's fields.
pub(crate) fn check(spec: &ServiceOfferSpec, errors: &mut Vec<FieldError>) {
    let mut fail = |field: String, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };
    let mcp = match (spec.type_, &spec.mcp) {
        (OfferType::Mcp, Some(mcp)) => mcp,
        (OfferType::Mcp, None) => {
            return fail(
                "spec.mcp".into(),
                "is required for mcp offers: spec.mcp.tools lists what is sold".into(),
            );
        }
        (other, Some(_)) => {
            return fail(
                "spec.mcp".into(),
                format!(
                    "is only for type mcp (this offer is {}); set type: mcp",
                    other.as_str()
                ),
            );
        }
        (_, None) => return,
    };
    if !spec.routes.is_empty() {
        fail(
            "spec.routes".into(),
            "an mcp offer is priced per tool (spec.mcp.tools[].price), not per route".into(),
        );
    }
    let least = match mcp.upstream {
        McpUpstream::Http => 1,
        McpUpstream::Mcp => 0,
    };
    if mcp.tools.len() < least || mcp.tools.len() > MAX_TOOLS {
        fail(
            "spec.mcp.tools".into(),
            format!(
                "declares {} tools; between {least} and {MAX_TOOLS}",
                mcp.tools.len()
            ),
        );
    }
    for (i, tool) in mcp.tools.iter().enumerate() {
        let field = |name: &str| format!("spec.mcp.tools[{i}].{name}");
        if !valid_tool_name(&tool.name) {
            fail(
                field("name"),
                format!(
                    "{:?} must be 1 to 64 of A-Z a-z 0-9 _ -",
                    tool.name.chars().take(80).collect::<String>()
                ),
            );
        } else if let Some(j) = mcp.tools[..i].iter().position(|t| t.name == tool.name) {
            fail(
                field("name"),
                format!("{:?} is already declared by spec.mcp.tools[{j}]", tool.name),
            );
        }
        if tool
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            fail(
                field("description"),
                format!("is longer than {MAX_DESCRIPTION_CHARS} characters"),
            );
        }
        match (&tool.price, tool.free) {
            (Some(_), true) => fail(
                field("price"),
                "a free tool has no price; drop one of price and free".into(),
            ),
            (Some(price), false) => {
                for (part, message) in price_problems(&price.fields()) {
                    let name = match part {
                        "" => "price".to_owned(),
                        part => format!("price.{part}"),
                    };
                    fail(field(&name), message);
                }
            }
            (None, _) => {}
        }
        if let Some(schema) = &tool.input_schema
            && schema.get("type").and_then(Value::as_str) != Some("object")
        {
            fail(
                field("inputSchema"),
                "must be an object schema ({\"type\": \"object\", …})".into(),
            );
        }
        if tool.path.is_some() && mcp.upstream == McpUpstream::Mcp {
            fail(
                field("path"),
                "an MCP upstream is called by tool name, not by path".into(),
            );
        } else if let Some(path) = &tool.path {
            let problem = route_path_problem(path).or_else(|| {
                path.contains('*')
                    .then(|| "is a path, not a pattern: no '*'".to_owned())
            });
            if let Some(problem) = problem {
                fail(field("path"), problem);
            }
        }
    }
}

/// `base` as the offer a call of `tool` (or, without one, of an undeclared upstream tool) is
/// priced by: described as the tool, answering JSON, without the tool table.
fn priced(base: &Offer, tool: Option<&McpToolSpec>) -> Offer {
    let (description, discovery) = match tool {
        Some(tool) => {
            let own = tool.description.as_deref().unwrap_or("");
            let schema = tool
                .input_schema
                .clone()
                .unwrap_or_else(listing::any_object);
            let discovery = Discovery {
                bazaar: Some(listing::bazaar(&tool.name, own, &schema)),
                ..base.discovery.as_deref().cloned().unwrap_or_default()
            };
            (described(&tool.name, own), Some(Arc::new(discovery)))
        }
        None => (format!("A tool of {}", base.name), base.discovery.clone()),
    };
    Offer {
        description,
        mime_type: "application/json".into(),
        discovery,
        mcp: None,
        ..base.clone()
    }
}

/// What a paid tool's PaymentRequired says it is: its description, else its name.
pub(crate) fn described(name: &str, description: &str) -> String {
    match description {
        "" => format!("Tool: {name}"),
        own => own.to_owned(),
    }
}

/// The gateway's tool table of an MCP offer: each tool free, or `base` re-priced at the tool's
/// price (the offer's own when the tool has none), described as the tool.
pub fn gateway_tools(
    registry: &TokenRegistry,
    offer: &ServiceOffer,
    base: &Offer,
) -> Result<Tools, RouteError> {
    let Some(mcp) = &offer.spec.mcp else {
        return Ok(Tools::default());
    };
    let tools = mcp
        .tools
        .iter()
        .map(|spec| {
            let mut tool = Tool::free(&spec.name);
            tool.description = spec.description.clone().unwrap_or_default();
            if let Some(schema) = &spec.input_schema {
                tool.input_schema = schema.clone();
            }
            tool.path = spec.effective_path();
            if !spec.free {
                let options = match &spec.price {
                    Some(price) => payment_options(registry, offer, Some(&price.fields()))?,
                    None => base.options.clone(),
                };
                tool.priced = Some(Arc::new(Offer {
                    options,
                    ..priced(base, Some(spec))
                }));
            }
            Ok(tool)
        })
        .collect::<Result<Vec<_>, RouteError>>()?;
    Ok(match mcp.upstream {
        McpUpstream::Http => Tools::new(tools),
        McpUpstream::Mcp => Tools::proxying(tools, Arc::new(priced(base, None))),
    })
}

#[cfg(test)]
mod tests {
    use obol_gateway::OfferKind;
    use serde_json::json;

    use super::*;
    use crate::routes::gateway_routes;
    use crate::secrets::NoSecrets;
    use crate::validate::tests::offer;
    use crate::validate::validate_offer;

    fn mcp_offer(tools: Value) -> ServiceOffer {
        let mut o = offer();
        o.spec.type_ = OfferType::Mcp;
        let mut spec = Map::new();
        spec.insert("tools".into(), tools);
        o.spec.mcp = Some(serde_json::from_value(Value::Object(spec)).unwrap());
        o
    }

    fn problems(o: &ServiceOffer) -> Vec<String> {
        match validate_offer(o) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect(),
        }
    }

    #[test]
    fn a_valid_mcp_offer_passes() {
        let o = mcp_offer(json!([
            {"name": "forecast", "price": "0.01", "description": "Weather",
             "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "ping", "free": true},
            {"name": "summary", "path": "/v1/summarize"}
        ]));
        assert_eq!(problems(&o), Vec::<String>::new());
    }

    #[test]
    fn spec_mcp_goes_with_type_mcp_only() {
        let mut o = mcp_offer(json!([{"name": "a"}]));
        o.spec.mcp = None;
        assert_eq!(
            problems(&o),
            ["spec.mcp: is required for mcp offers: spec.mcp.tools lists what is sold"]
        );
        let mut o = mcp_offer(json!([{"name": "a"}]));
        o.spec.type_ = OfferType::Http;
        assert_eq!(
            problems(&o),
            ["spec.mcp: is only for type mcp (this offer is http); set type: mcp"]
        );
    }

    #[test]
    fn each_tool_is_checked() {
        let mut o = mcp_offer(json!([
            {"name": "a b"},
            {"name": "dup"},
            {"name": "dup"},
            {"name": "both", "price": "0.1", "free": true},
            {"name": "cheap", "price": "-1"},
            {"name": "schema", "inputSchema": {"type": "string"}},
            {"name": "glob", "path": "/x/*"},
            {"name": "long", "description": "x".repeat(MAX_DESCRIPTION_CHARS + 1)}
        ]));
        o.spec.routes = vec![crate::offer::RouteSpec::everything_paid()];
        let found = problems(&o);
        let fields: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.routes",
                "spec.mcp.tools[0].name",
                "spec.mcp.tools[2].name",
                "spec.mcp.tools[3].price",
                "spec.mcp.tools[4].price",
                "spec.mcp.tools[5].inputSchema",
                "spec.mcp.tools[6].path",
                "spec.mcp.tools[7].description",
            ],
            "{found:#?}"
        );
        assert!(found[2].contains("already declared by spec.mcp.tools[1]"));
        assert!(problems(&mcp_offer(json!([])))[0].contains("declares 0 tools"));
    }

    #[test]
    fn an_mcp_upstream_needs_no_tools_and_no_paths() {
        let mut o = mcp_offer(json!([]));
        o.spec.mcp.as_mut().unwrap().upstream = McpUpstream::Mcp;
        assert_eq!(problems(&o), Vec::<String>::new());
        let mut o = mcp_offer(json!([{"name": "a", "path": "/a"}]));
        o.spec.mcp.as_mut().unwrap().upstream = McpUpstream::Mcp;
        assert_eq!(
            problems(&o),
            ["spec.mcp.tools[0].path: an MCP upstream is called by tool name, not by path"]
        );
        let mut o = mcp_offer(json!([{"name": "cheap", "price": "0.0001"}]));
        o.spec.mcp.as_mut().unwrap().upstream = McpUpstream::Mcp;
        let routes = gateway_routes(
            &TokenRegistry::builtin(),
            &NoSecrets,
            &Default::default(),
            &o,
        )
        .unwrap();
        let tools = routes[0].offer.mcp.as_ref().unwrap();
        assert!(tools.proxies());
        let amount = |name: &str| {
            tools
                .pricing(name)
                .unwrap()
                .priced
                .as_ref()
                .unwrap()
                .options[0]
                .requirements
                .amount
                .0
                .to_string()
        };
        assert_eq!(amount("cheap"), "100");
        assert_eq!(amount("anything_else"), "1000", "the offer's price");
    }

    #[test]
    fn unknown_tool_fields_are_refused() {
        let mut value = serde_json::to_value(&mcp_offer(json!([{"name": "a"}])).spec).unwrap();
        value["mcp"]["tools"][0]["prise"] = json!("0.1");
        let error = serde_json::from_value::<ServiceOfferSpec>(value)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field spec.mcp.tools[0].prise"),
            "{error}"
        );
    }

    #[test]
    fn the_gateway_gets_one_endpoint_and_a_priced_table() {
        let o = mcp_offer(json!([
            {"name": "own", "price": "0.01", "description": "Its own price"},
            {"name": "dflt"},
            {"name": "ping", "free": true}
        ]));
        let routes = gateway_routes(
            &TokenRegistry::builtin(),
            &NoSecrets,
            &Default::default(),
            &o,
        )
        .unwrap();
        assert_eq!(routes.len(), 1);
        let route = &routes[0];
        assert_eq!(route.pattern, "/services/echo");
        assert_eq!(route.offer.kind, OfferKind::Mcp);
        let tools = route.offer.mcp.as_ref().unwrap();
        let amount = |name: &str| {
            tools.get(name).unwrap().priced.as_ref().unwrap().options[0]
                .requirements
                .amount
                .0
                .to_string()
        };
        assert_eq!(amount("own"), "10000");
        assert_eq!(amount("dflt"), "1000", "the offer's price");
        assert!(tools.get("ping").unwrap().priced.is_none());
        let own = tools.get("own").unwrap();
        assert_eq!(own.path, "/own");
        assert_eq!(own.priced.as_ref().unwrap().description, "Its own price");
        assert!(own.priced.as_ref().unwrap().mcp.is_none());
    }
}
