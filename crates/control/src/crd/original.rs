//! The original's `ServiceOffer` fields that our spec refuses as "not supported yet"
//! (`offer::UNSUPPORTED_FIELDS`), described for the CRD only (obol-stack.md §3.1).
//!
//! The CRD admits every generation of the original's manifests, so the API server must accept
//! these fields; it stores them, and our store's strict reading names them when the controller
//! loads the object. The shapes follow the original's field table, so a misspelt field below
//! them is still refused by the API server. None of these types is ever (de)serialized.

use schemars::generate::SchemaGenerator;
use schemars::{JsonSchema, Schema};

/// A field added to the generated spec schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extra {
    /// The object it belongs to, as property names below `spec` (empty: `spec` itself).
    pub(crate) parent: &'static [&'static str],
    /// Its name.
    pub(crate) name: &'static str,
    /// Its schema.
    pub(crate) schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Extra {
    /// `registration.services`: the form `offer::UNSUPPORTED_FIELDS` names it in.
    pub(crate) fn path(&self) -> String {
        let mut parts = self.parent.to_vec();
        parts.push(self.name);
        parts.join(".")
    }
}

/// The original's fields of the `ServiceOffer` spec that our types lack.
pub(crate) const SERVICE_OFFER_EXTRAS: [Extra; 5] = [
    Extra {
        parent: &[],
        name: "branding",
        schema: |g| g.subschema_for::<Branding>(),
    },
    Extra {
        parent: &[],
        name: "async",
        schema: |g| g.subschema_for::<Async>(),
    },
    Extra {
        parent: &[],
        name: "agent",
        schema: |g| g.subschema_for::<AgentOffer>(),
    },
    Extra {
        parent: &["registration"],
        name: "services",
        schema: |g| g.subschema_for::<Vec<RegistrationService>>(),
    },
    Extra {
        parent: &["registration"],
        name: "supportedTrust",
        schema: |g| g.subschema_for::<Vec<String>>(),
    },
];

/// The storefront's look for this offer (the original's; not supported yet).
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[allow(dead_code)]
struct Branding {
    display_name: Option<String>,
    tagline: Option<String>,
    logo_url: Option<String>,
    theme: Option<Theme>,
    accent_color: Option<String>,
    favicon_url: Option<String>,
    og_image_url: Option<String>,
    description: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum Theme {
    Light,
    Dark,
    Obol,
}

/// The asynchronous job broker (the original's; not supported yet).
#[derive(JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[allow(dead_code)]
struct Async {
    enabled: Option<bool>,
    result_visibility: Option<ResultVisibility>,
    /// How long results are kept (a duration such as `72h`).
    ttl: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum ResultVisibility {
    Payer,
    Public,
}

/// The `Agent` a `type: agent` offer sells (the original's; not supported yet: sell the
/// agent's HTTP endpoint with `spec.upstream.url`).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AgentOffer {
    #[schemars(rename = "ref")]
    reference: Option<AgentRef>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct AgentRef {
    name: String,
    namespace: Option<String>,
}

/// A service of the registration document (the original's; not supported yet: the document
/// lists each offer's endpoint as a `web` service). `name`: `web`, `A2A`, `MCP`, `OASF`,
/// `ENS`, `DID`, `email`, ….
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RegistrationService {
    name: String,
    endpoint: String,
    version: Option<String>,
}
