//! MCP offers: the tools an offer sells and the x402 MCP binding's names (shared/spec/
//! extensions.md §4): a payment travels in `params._meta["x402/payment"]`, its receipt in
//! `result._meta["x402/payment-response"]`, and an unpaid call of a paid tool is answered with
//! a tool result carrying the PaymentRequired (`isError`, `structuredContent`, and the same JSON
//! in `content[0].text`). The calls themselves are served by the paygate
//! (`paygate::mcp`), through the same take/settle path as every paid HTTP request. A proxying
//! offer's tools are its upstream MCP server's ([`upstream`]), priced by the declared ones.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::route::Offer;

pub mod upstream;

/// Where a tool call's payment travels: `params._meta[PAYMENT_META]`.
pub const PAYMENT_META: &str = "x402/payment";

/// Where a paid call's receipt travels: `result._meta[RECEIPT_META]` (and, when a settlement
/// was refused, in the PaymentRequired it is answered with).
pub const RECEIPT_META: &str = "x402/payment-response";

/// The MCP extension a client advertises (`capabilities.extensions`) to get an unpaid call's
/// PaymentRequired as a result of its own type, [`PAYMENT_REQUIRED_RESULT`].
pub const X402_EXTENSION: &str = "org.x402/payment";

/// The `resultType` of a PaymentRequired for clients with [`X402_EXTENSION`].
pub const PAYMENT_REQUIRED_RESULT: &str = "payment_required";

/// The most tools an offer may sell.
pub const MAX_TOOLS: usize = 128;

/// A tool's resource URL in its PaymentRequired: `mcp://tool/<name>`.
pub fn resource_url(tool: &str) -> String {
    format!("mcp://tool/{tool}")
}

/// Whether `name` can name a tool: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One tool of an MCP offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Its name (see [`valid_tool_name`]).
    pub name: String,
    /// What it does, for `tools/list`.
    pub description: String,
    /// The JSON Schema of its arguments (an object schema).
    pub input_schema: Map<String, Value>,
    /// Where its arguments are POSTed, below the offer's upstream (`/<name>` unless declared;
    /// `/` is the upstream URL itself).
    pub path: String,
    /// The offer re-priced at this tool's price (`options` are the tool's); `None`: free.
    pub priced: Option<Arc<Offer>>,
}

impl Tool {
    /// A free tool named `name`, POSTed to `/<name>`, taking any object.
    pub fn free(name: &str) -> Self {
        let mut schema = Map::new();
        schema.insert("type".into(), Value::String("object".into()));
        Self {
            name: name.into(),
            description: String::new(),
            input_schema: schema,
            path: format!("/{name}"),
            priced: None,
        }
    }

    /// The tool at `priced`'s price.
    pub fn paid(name: &str, priced: Arc<Offer>) -> Self {
        Self {
            priced: Some(priced),
            ..Self::free(name)
        }
    }

    /// Its `tools/list` description: its own (else `fallback`, an upstream server's), and what
    /// a call costs.
    pub fn listed_description(&self, fallback: &str) -> String {
        let price = match &self.priced {
            None => "Free.".to_owned(),
            Some(offer) => {
                let prices: Vec<String> = offer
                    .options
                    .iter()
                    .map(|o| {
                        format!(
                            "{} on {}",
                            o.price.label(&o.asset_symbol),
                            o.requirements.network
                        )
                    })
                    .collect();
                format!("Paid with x402: {} per call.", prices.join(" or "))
            }
        };
        match (self.description.trim(), fallback.trim()) {
            ("", "") => price,
            ("", theirs) => format!("{theirs} {price}"),
            (own, _) => format!("{own} {price}"),
        }
    }
}

/// The tools of an MCP offer, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    tools: Vec<Tool>,
    /// Set when the upstream is an MCP server whose every tool is sold: the offer priced for
    /// the tools not declared here.
    proxy: Option<Arc<Offer>>,
}

impl Tools {
    /// The table of `tools`; with two of one name, the first is kept.
    pub fn new(mut tools: Vec<Tool>) -> Self {
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools.dedup_by(|a, b| a.name == b.name);
        Self { tools, proxy: None }
    }

    /// The tools of an upstream MCP server: those in `declared` as declared, any other at
    /// `default`'s price.
    pub fn proxying(declared: Vec<Tool>, default: Arc<Offer>) -> Self {
        Self {
            proxy: Some(default),
            ..Self::new(declared)
        }
    }

    /// Whether the upstream is an MCP server (calls go to its tool of the same name).
    pub fn proxies(&self) -> bool {
        self.proxy.is_some()
    }

    /// The declared tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools
            .binary_search_by(|tool| tool.name.as_str().cmp(name))
            .ok()
            .map(|index| &self.tools[index])
    }

    /// How a call of `name` is priced: the declared tool, or (proxying) the upstream's tool at
    /// the default price; `None`: not sold here.
    pub fn pricing(&self, name: &str) -> Option<Cow<'_, Tool>> {
        if let Some(tool) = self.get(name) {
            return Some(Cow::Borrowed(tool));
        }
        let default = self.proxy.as_ref()?;
        valid_tool_name(name).then(|| Cow::Owned(Tool::paid(name, default.clone())))
    }

    /// Every tool, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter()
    }

    /// The number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// True without tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names() {
        for good in ["ping", "get_weather", "a-b", &"x".repeat(64)] {
            assert!(valid_tool_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", "a.b", &"x".repeat(65)] {
            assert!(!valid_tool_name(bad), "{bad}");
        }
    }

    #[test]
    fn lookup_by_name_keeps_the_first_of_a_name() {
        let mut first = Tool::free("b");
        first.description = "first".into();
        let mut second = Tool::free("b");
        second.description = "second".into();
        let tools = Tools::new(vec![Tool::free("c"), first, Tool::free("a"), second]);
        assert_eq!(tools.len(), 3);
        assert_eq!(
            tools.get("b").map(|t| t.description.as_str()),
            Some("first")
        );
        assert!(tools.get("d").is_none());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn a_proxy_prices_undeclared_tools_at_its_default() {
        let default = Arc::new(Offer::at_services(
            "p",
            crate::OfferKind::Mcp,
            "http://127.0.0.1:9/mcp".parse().unwrap(),
            Vec::new(),
        ));
        let plain = Tools::new(vec![Tool::free("ping")]);
        assert!(plain.pricing("other").is_none());
        let proxy = Tools::proxying(vec![Tool::free("ping")], default);
        assert!(proxy.proxies());
        assert!(
            proxy.pricing("ping").unwrap().priced.is_none(),
            "as declared"
        );
        assert!(
            proxy.pricing("other").unwrap().priced.is_some(),
            "at the default"
        );
        assert!(proxy.pricing("not a name").is_none());
    }

    #[test]
    fn free_tools_say_so() {
        let mut tool = Tool::free("ping");
        assert_eq!(tool.listed_description(""), "Free.");
        assert_eq!(tool.listed_description("Theirs."), "Theirs. Free.");
        tool.description = "Answers pong.".into();
        assert_eq!(tool.listed_description("Theirs."), "Answers pong. Free.");
    }
}
