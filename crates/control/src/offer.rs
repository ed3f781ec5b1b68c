//! `ServiceOffer`: what a seller sells, at what price, where it is served (obol-stack.md §3.1).

use obol_x402::metering::{NoUsage, TokenRates};
use obol_x402::money::{Decimal, MoneyError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::resource::{Condition, Object, Spec};
use crate::strict::{Unsupported, strict_spec};

/// What an offer sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OfferType {
    /// An arbitrary HTTP API (the default).
    #[default]
    Http,
    /// An OpenAI-compatible model.
    Inference,
    /// Fine-tuning jobs.
    FineTuning,
    /// An agent.
    Agent,
    /// MCP tools (`spec.mcp`), each call paid on its own.
    Mcp,
}

impl OfferType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Inference => "inference",
            Self::FineTuning => "fine-tuning",
            Self::Agent => "agent",
            Self::Mcp => "mcp",
        }
    }
}

/// The model an inference offer serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Model name as the upstream knows it.
    pub name: String,
    /// `ollama`, `vllm` or `tgi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["ollama", "vllm", "tgi"]))]
    pub runtime: Option<String>,
}

/// Where paid requests go: a URL (embedded mode) or a Kubernetes service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// `http(s)://host:port[/base]` (embedded mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Service name (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service namespace (defaults to the offer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Health path probed by the reconciler (default `/health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    /// The seller's own credential for the upstream, by reference (ours; the original derives
    /// it from fixed Kubernetes Secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<UpstreamAuthSpec>,
}

/// The DNS domain of a Kubernetes cluster's Services unless configured otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

impl UpstreamSpec {
    /// The in-cluster URL of an upstream given in the original's Kubernetes form
    /// (`service`, `namespace` defaulting to the offer's, `port`): the Service's cluster DNS
    /// name, `http://<service>.<namespace>.svc.<domain>:<port>`. `None` for the URL form or
    /// without a service and port.
    pub fn cluster_url(&self, offer_namespace: &str, domain: &str) -> Option<String> {
        if self.url.is_some() {
            return None;
        }
        let service = self.service.as_deref()?;
        let port = self.port.filter(|p| *p > 0)?;
        let namespace = self.namespace.as_deref().unwrap_or(offer_namespace);
        Some(format!("http://{service}.{namespace}.svc.{domain}:{port}"))
    }
}

/// A credential sent to the upstream with every proxied request and health probe. Only the
/// reference is stored; the value stays in the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamAuthSpec {
    /// The secret (in the offer's namespace) and its key.
    pub secret_ref: SecretRef,
    /// The header it is sent as (default `Authorization`; a bare token there gets `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

impl UpstreamAuthSpec {
    /// The header, `Authorization` unless another is named.
    pub fn header(&self) -> &str {
        self.header.as_deref().unwrap_or("Authorization")
    }
}

/// One key of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    /// The secret's name.
    pub name: String,
    /// The key inside it.
    pub key: String,
}

/// Token details when not the chain's default USDC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetSpec {
    /// Token contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Ticker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// `eip3009` or `permit2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["eip3009", "permit2"]))]
    pub transfer_method: Option<String>,
    /// EIP-712 domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_name: Option<String>,
    /// EIP-712 domain version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip712_version: Option<String>,
}

/// Exactly one price, as a decimal string in token units.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceSpec {
    /// Per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request: Option<String>,
    /// Per million tokens.
    #[serde(default, rename = "perMTok", skip_serializing_if = "Option::is_none")]
    pub per_mtok: Option<String>,
    /// Per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<String>,
    /// Per epoch (not supported; refused by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_epoch: Option<String>,
    /// Per million prompt tokens (with `perMTokOutput`, instead of `perMTok`): metered offers
    /// charge prompt and completion tokens at their own rates.
    #[serde(
        default,
        rename = "perMTokInput",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_mtok_input: Option<String>,
    /// Per million completion tokens (with `perMTokInput`).
    #[serde(
        default,
        rename = "perMTokOutput",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_mtok_output: Option<String>,
}

impl PriceSpec {
    /// The per-million-token price an `exact` (flat-estimate) payment is computed from:
    /// `perMTok`, else the completion rate `perMTokOutput`.
    pub fn flat_per_mtok(&self) -> Option<&str> {
        self.per_mtok.as_deref().or(self.per_mtok_output.as_deref())
    }

    /// The per-token rates of a metered offer: `perMTok` for both, or `perMTokInput` and
    /// `perMTokOutput`; `None` when the price is not per token.
    pub fn token_rates(&self) -> Option<Result<TokenRates, MoneyError>> {
        let rate = |text: &str| text.parse::<Decimal>();
        match (
            self.per_mtok.as_deref(),
            self.per_mtok_input.as_deref(),
            self.per_mtok_output.as_deref(),
        ) {
            (Some(both), None, None) => Some(rate(both).map(TokenRates::flat)),
            (None, Some(input), Some(output)) => Some(rate(input).and_then(|input| {
                Ok(TokenRates {
                    input,
                    output: rate(output)?,
                })
            })),
            _ => None,
        }
    }
}

/// How the offer is paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSpec {
    /// `exact`.
    #[serde(default = "exact")]
    #[schemars(extend("enum" = ["exact"]))]
    pub scheme: String,
    /// Network name, alias or CAIP-2 id.
    pub network: String,
    /// Recipient.
    #[schemars(pattern(crate::validate::ADDRESS_PATTERN))]
    pub pay_to: String,
    /// Payment validity budget (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_timeout_seconds: Option<u64>,
    /// Token (default: the chain's USDC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetSpec>,
    /// The price.
    pub price: PriceSpec,
    /// When payments are settled (default `serveFirst`).
    #[serde(default, skip_serializing_if = "SettleTiming::is_default")]
    pub settle: SettleTiming,
    /// Metered billing: also offer the `upto` scheme (inference priced per token), the buyer
    /// signing a ceiling and paying for the tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<UptoSpec>,
}

/// `payment.upto`: how a metered (`upto`) payment is bounded and what a call reporting no
/// usage costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UptoSpec {
    /// The most tokens one call may use (default
    /// [`obol_x402::metering::DEFAULT_MAX_TOKENS`]): the ceiling is this many tokens at the
    /// dearer rate; a request asking for more (`max_tokens`) is refused before the upstream
    /// runs, one not saying is capped to fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// What a call whose answer reports no usage costs: `estimate` (default, the flat
    /// 1000-token estimate) or `ceiling`.
    #[serde(default, skip_serializing_if = "NoUsage::is_default")]
    #[schemars(schema_with = "crate::crd::no_usage_schema")]
    pub no_usage: NoUsage,
}

impl UptoSpec {
    /// `maxTokens`, or the default.
    pub fn max_tokens(&self) -> u64 {
        self.max_tokens
            .unwrap_or(obol_x402::metering::DEFAULT_MAX_TOKENS)
    }
}

/// When a paid request is settled: after the upstream answered below 400 (`serveFirst`, a
/// failed call is never charged) or before it is called (`settleFirst`, for expensive or
/// irreversible work; a failure after the charge is logged as a refund owed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SettleTiming {
    /// Serve, then settle.
    #[default]
    ServeFirst,
    /// Settle, then serve.
    SettleFirst,
}

impl SettleTiming {
    fn is_default(&self) -> bool {
        *self == Self::ServeFirst
    }
}

fn exact() -> String {
    "exact".to_owned()
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GateSpec {
    /// Paid per request (the default).
    #[default]
    Paid,
    /// Served without payment.
    Free,
    /// Signed-in wallets only (Sign-In-With-X).
    Auth,
}

impl GateSpec {
    fn is_default(&self) -> bool {
        *self == Self::Paid
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Free => "free",
            Self::Auth => "auth",
        }
    }
}

/// A route's own price: a decimal per-request amount (`"0.5"`), or a price object like
/// `payment.price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RoutePrice {
    /// Per request, in token units.
    PerRequest(String),
    /// Like `payment.price`.
    Fields(PriceSpec),
}

impl RoutePrice {
    /// The price as `payment.price`'s fields.
    pub fn fields(&self) -> PriceSpec {
        match self {
            Self::PerRequest(amount) => PriceSpec {
                per_request: Some(amount.clone()),
                ..PriceSpec::default()
            },
            Self::Fields(fields) => fields.clone(),
        }
    }
}

/// One route of an offer: a path below the offer's path, the methods it answers, its gate and
/// price. Declaring routes makes them the whole table of the offer: a path under the offer
/// that none covers is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Below the offer's path: `/*` (the offer itself and everything below it), `/submit`
    /// (exactly), `/v1/*/info` (`*` = one segment).
    #[schemars(pattern(crate::validate::ROUTE_PATH_PATTERN), length(max = crate::validate::MAX_PATH_LEN))]
    pub path: String,
    /// `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`; none = every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::crd::methods_schema")]
    pub methods: Vec<String>,
    /// `paid` (default), `free` or `auth`.
    #[serde(default, skip_serializing_if = "GateSpec::is_default")]
    pub gate: GateSpec,
    /// This route's price instead of `payment.price` (paid routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<RoutePrice>,
    /// What the route does (catalog, `/skill.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::validate::MAX_SUMMARY_CHARS))]
    pub summary: Option<String>,
    /// Free calls per signed-in wallet per day before payment is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_quota: Option<u32>,
}

impl RouteSpec {
    /// The route an offer without declared routes has: everything, paid.
    pub fn everything_paid() -> Self {
        Self {
            path: "/*".into(),
            methods: Vec::new(),
            gate: GateSpec::Paid,
            price: None,
            summary: None,
            free_quota: None,
        }
    }
}

/// How an offer describes itself to buyers and indexers (ours; docs/design/discovery.md): the
/// x402 Bazaar extension of its 402s, its OpenAPI operations, the discovery documents.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverySpec {
    /// A short name (printable ASCII, at most 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Up to five tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// An http(s) icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// What a call sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputSpec>,
    /// What a call answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
}

/// A call's input: the method, and the query parameters (`GET`, `HEAD`, `DELETE`) or the body
/// (`POST`, `PUT`, `PATCH`) as JSON Schema 2020-12 objects, with an example.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputSpec {
    /// The HTTP method (default `GET`, or `POST` for inference offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Schema of the query parameters (query methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Value>,
    /// `json` (default), `form-data` or `text` (body methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<String>,
    /// Schema of the body (body methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Schema of request headers the upstream reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// Example query parameters or body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
}

/// A call's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputSpec {
    /// Its format (default `json`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// An example answer (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
    /// Schema of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// Limits over all requests of an offer (the original applies them as Traefik middlewares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Requests served at once; one more is refused with 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Requests per second, bursts of twice as many; more are refused with 429 and
    /// `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
}

/// The largest `limits` value accepted.
pub const MAX_LIMIT: u32 = 10_000;

/// ERC-8004 registration settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSpec {
    /// Whether the offer is published in the agent registration.
    #[serde(default)]
    pub enabled: bool,
    /// Agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Agent description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// OASF skills.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// OASF domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Extra metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// Catalog ordering.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingSpec {
    /// Higher first.
    #[serde(default)]
    pub weight: i64,
    /// Category label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// The `ServiceOffer` spec. Deserializing refuses every field it does not implement, naming it
/// (the original's not yet: `UNSUPPORTED_FIELDS`); see `crate::strict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct ServiceOfferSpec {
    /// What is sold.
    #[serde(default, rename = "type")]
    pub type_: OfferType,
    /// The model (inference offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// Where paid requests go.
    pub upstream: UpstreamSpec,
    /// How it is paid.
    pub payment: PaymentSpec,
    /// Every way it can be paid (several tokens or chains); when present, `payments[0]` is
    /// `payment`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<PaymentSpec>,
    /// Public path (default `/services/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::validate::PATH_PATTERN), length(max = crate::validate::MAX_PATH_LEN))]
    pub path: Option<String>,
    /// Routes below the path (at most [`MAX_ROUTES`]); none: everything is paid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ROUTES))]
    pub routes: Vec<RouteSpec>,
    /// Concurrency and rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// How it describes itself to buyers and indexers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySpec>,
    /// A vanity hostname: requests whose `Host` is it are served this offer at `/` (its page
    /// at `/`, its `/openapi.json` and `/.well-known/x402`, everything else below its path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::validate::HOSTNAME_PATTERN), length(max = crate::validate::MAX_HOSTNAME_LEN))]
    pub hostname: Option<String>,
    /// ERC-8004 registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationSpec>,
    /// Catalog ordering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingSpec>,
    /// Drain start (RFC 3339): the offer stops being sold after `drainAt + drainGracePeriod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_at: Option<String>,
    /// Drain grace period (`1h`, `30m`, `0s`; default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_grace_period: Option<String>,
    /// Free-form provenance, echoed in the registration document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Map<String, Value>>,
    /// Human description for the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The tools of a `type: mcp` offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<crate::mcp::McpSpec>,
}

/// Fields of the original's `ServiceOffer` spec (obol-stack.md §3.1) that are refused until
/// they are implemented, with what to do instead.
pub(crate) const UNSUPPORTED_FIELDS: &[Unsupported] = &[
    Unsupported {
        path: "branding",
        hint: "",
    },
    Unsupported {
        path: "async",
        hint: "",
    },
    Unsupported {
        path: "agent",
        hint: "sell the agent's HTTP endpoint with spec.upstream.url",
    },
    Unsupported {
        path: "registration.services",
        hint: "the registration document lists each offer's endpoint as a web service",
    },
    Unsupported {
        path: "registration.supportedTrust",
        hint: "",
    },
];

strict_spec!(ServiceOfferSpec, UNSUPPORTED_FIELDS);

/// What the reconciler observed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOfferStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The effective public path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// ERC-8004 agent id on the offer's chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The registration transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_tx_hash: Option<String>,
    /// The generation these conditions describe.
    #[serde(default)]
    pub observed_generation: i64,
    /// What the offer's metered (`upto`) calls used and were charged, in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<OfferUsage>,
    /// The metered (`upto`) ways to pay its 402 lists: one per payment asking for `upto` whose
    /// chain has a facilitator settling it (none, and the offer is paid `exact` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metered: Vec<MeteredStatus>,
}

/// One entry of `status.metered`: a metered way to pay as the gateway offers it, so the
/// storefront and the discovery documents list what the 402 does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeteredStatus {
    /// The payment's network, as its spec names it.
    pub network: String,
    /// The most one call is charged, in token units with the symbol (`0.002458 USDC`).
    pub ceiling: String,
    /// The most tokens one call may use.
    pub max_tokens: u64,
    /// Who settles it: the facilitator's address the buyer's authorization names.
    pub facilitator_address: String,
}

/// `status.usage` (the original's proposed fields): the offer's settled metered calls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferUsage {
    /// Settled metered calls.
    pub requests: u64,
    /// Prompt tokens they reported.
    pub prompt_tokens: u64,
    /// Completion tokens they reported.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// What they were charged, in token units with the symbol (`0.000069 USDC`).
    pub charged: String,
}

impl ServiceOfferSpec {
    /// An offer of the `upstream` URL (embedded mode) at `per_request` token units per call on
    /// `network`, paid to `pay_to` in the chain's default token, settled after serving;
    /// everything else unset.
    pub fn per_request(
        type_: OfferType,
        upstream: &str,
        network: &str,
        pay_to: &str,
        per_request: &str,
    ) -> Self {
        Self {
            type_,
            model: None,
            upstream: UpstreamSpec {
                url: Some(upstream.to_owned()),
                ..UpstreamSpec::default()
            },
            payment: PaymentSpec {
                scheme: "exact".into(),
                network: network.to_owned(),
                pay_to: pay_to.to_owned(),
                max_timeout_seconds: None,
                settle: SettleTiming::ServeFirst,
                asset: None,
                price: PriceSpec {
                    per_request: Some(per_request.to_owned()),
                    ..PriceSpec::default()
                },
                upto: None,
            },
            payments: Vec::new(),
            path: None,
            routes: Vec::new(),
            limits: None,
            discovery: None,
            hostname: None,
            registration: None,
            listing: None,
            drain_at: None,
            drain_grace_period: None,
            provenance: None,
            description: None,
            mcp: None,
        }
    }
}

impl Spec for ServiceOfferSpec {
    const KIND: &'static str = "ServiceOffer";
    type Status = ServiceOfferStatus;
}

/// A `ServiceOffer`.
pub type ServiceOffer = Object<ServiceOfferSpec>;

/// The most routes an offer may declare.
pub const MAX_ROUTES: usize = 128;

/// The route path below an offer reserved for sign-in (Sign-In-With-X endpoints).
pub const SIGN_IN_PATH: &str = "/auth";

/// Path roots no offer may claim.
pub const RESERVED_ROOTS: [&str; 5] =
    ["/api", "/openapi.json", "/skill.md", "/rpc", "/.well-known"];

impl ServiceOffer {
    /// The public path: `spec.path` ([`normalize_path`]) or `/services/<name>`.
    pub fn effective_path(&self) -> String {
        match self.spec.path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => normalize_path(path),
            None => format!("/services/{}", self.metadata.name),
        }
    }

    /// The declared routes, or the one route of an offer without any ([`RouteSpec::everything_paid`]).
    pub fn effective_routes(&self) -> Vec<RouteSpec> {
        if self.spec.routes.is_empty() {
            vec![RouteSpec::everything_paid()]
        } else {
            self.spec.routes.clone()
        }
    }

    /// `payments`, or `[payment]` when it is empty.
    pub fn effective_payments(&self) -> &[PaymentSpec] {
        if self.spec.payments.is_empty() {
            std::slice::from_ref(&self.spec.payment)
        } else {
            &self.spec.payments
        }
    }

    /// The health path probed on the upstream.
    pub fn health_path(&self) -> String {
        self.spec
            .upstream
            .health_path
            .clone()
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/health".to_owned())
    }
}

/// The form offer paths are served and compared in: `/` first, empty and `.` segments
/// dropped, `..` removing the segment before it, no trailing `/` (`/services//x/./` →
/// `/services/x`). Case is kept: paths are case-sensitive (RFC 3986), and the gateway matches
/// them so. Validation refuses paths that need any of this; it matters for offers stored before.
pub fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// True when `path` is `/`, `/services`, or under a reserved root.
pub fn is_reserved(path: &str) -> bool {
    path == "/"
        || path == "/services"
        || RESERVED_ROOTS
            .iter()
            .any(|root| path == *root || path.starts_with(&format!("{root}/")))
}

/// Whether a route path claims the sign-in endpoints below its offer (`/auth`, `/auth/…`).
pub fn is_sign_in_path(path: &str) -> bool {
    path == SIGN_IN_PATH
        || path
            .strip_prefix(SIGN_IN_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}
