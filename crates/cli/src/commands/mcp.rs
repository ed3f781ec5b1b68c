//! `obol mcp`: an MCP server on stdio for buying agents (docs/design/agents.md). The agent gets
//! tools to look at and pay x402 sellers — `probe`, `pay` (one paid HTTP call), `call_tool`
//! (one paid tool call on a paid MCP server), `purchases`, `budget` — and never a key: the key
//! is loaded here, from the same places as `obol buy`. Every payment is bounded by a per-call
//! and a per-day cap the agent cannot raise, named in each spending tool's description and
//! result; the day's spend is counted when a payment is signed, in `<data>/spend.sqlite`, so it
//! survives restarts and is shared by every `obol mcp` of this user.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use obol_buyer::spend::{SpendError, SpendLedger, day_of};
use obol_buyer::{Offered, seller};
use obol_x402::money::{format_units, parse_units};
use obol_x402::wire::v2;
use obol_x402::{LocalSigner, TokenRegistry};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};

use super::Context;
use super::buy::{self, Call, Called, Choice, clean};
use crate::cli::McpArgs;

/// The most of a seller's answer handed to the agent.
const MAX_BODY: usize = 64 * 1024;

/// What `obol mcp` counts its payments under in the spend ledger.
const MCP_SCOPE: &str = "mcp";

/// Where an MCP payment travels, and its receipt.
const PAYMENT_META: &str = "x402/payment";
const RECEIPT_META: &str = "x402/payment-response";

pub(crate) async fn run(ctx: Context, args: McpArgs) -> anyhow::Result<ExitCode> {
    let tokens = super::tokens::registry(&ctx)?;
    // The caps must read in their token before anything is served.
    let decimals = tokens
        .iter()
        .find(|t| t.symbol.eq_ignore_ascii_case(&args.token))
        .map(|t| t.decimals)
        .with_context(|| {
            format!(
                "--token {:?} is neither built in nor confirmed (`obol buy pay|inference --token-address`)",
                args.token
            )
        })?;
    for (flag, value) in [
        ("--max-per-call", &args.max_per_call),
        ("--max-per-day", &args.max_per_day),
    ] {
        parse_units(value, decimals).with_context(|| format!("{flag} {value:?}"))?;
    }
    if let Some(addr) = args.listen
        && !addr.ip().is_loopback()
    {
        bail!("--listen {addr}: only a loopback address (whoever reaches it spends your money)");
    }
    let (signer, source) = super::wallet::load_signer(&ctx, &args.signer)?;
    let ledger = SpendLedger::open(&ctx.paths.spend_file())?;
    let http = seller::client(None, |b| b.timeout(Duration::from_secs(120)))?;
    let buyer = Buyer(Arc::new(Inner {
        ctx,
        signer,
        ledger,
        http,
        tokens,
        caps: Caps {
            token: args.token.to_ascii_uppercase(),
            per_call: args.max_per_call,
            per_day: args.max_per_day,
        },
    }));
    eprintln!(
        "obol mcp: paying as {} ({source}); at most {} {} a call and {} {} a UTC day",
        buyer.0.signer.address(),
        buyer.0.caps.per_call,
        buyer.0.caps.token,
        buyer.0.caps.per_day,
        buyer.0.caps.token,
    );
    if let Some(addr) = args.listen {
        return serve_http(buyer, addr).await;
    }
    let running = buyer
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow!("the MCP session did not start: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| anyhow!("the MCP session ended: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Streamable HTTP at `http://addr/mcp` until Ctrl-C: rmcp's `Host` check (loopback names only,
/// against DNS rebinding) and `Origin` check (any present is refused: no web page may call).
async fn serve_http(buyer: Buyer, addr: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let config = StreamableHttpServerConfig::default().enforce_origin_validation();
    let service = StreamableHttpService::new(
        move || Ok(buyer.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {addr}"))?;
    let bound = listener.local_addr()?;
    eprintln!("obol mcp: listening on http://{bound}/mcp");
    let router = axum::Router::new().nest_service("/mcp", service);
    axum::serve(listener, router)
        .with_graceful_shutdown(super::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The caps, in the units of `token`.
struct Caps {
    token: String,
    per_call: String,
    per_day: String,
}

struct Inner {
    ctx: Context,
    signer: LocalSigner,
    ledger: SpendLedger,
    http: reqwest::Client,
    /// The built-in and confirmed tokens, as read at start.
    tokens: TokenRegistry,
    caps: Caps,
}

/// The server: one per process, shared by its calls.
#[derive(Clone)]
struct Buyer(Arc<Inner>);

impl ServerHandler for Buyer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("obol-buyer", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Pays x402 sellers for you. Every payment is at most {} {} and all of them together at most {} {} a UTC day; probe first to see a price.",
                self.0.caps.per_call, self.0.caps.token, self.0.caps.per_day, self.0.caps.token
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let outcome = match request.name.as_ref() {
            "probe" => self.0.probe(&args).await,
            "discover" => self.0.discover(&args).await,
            "pay" => self.0.pay(&args).await,
            "call_tool" => self.0.call_remote_tool(&args).await,
            "buy" => self.0.buy(&args).await,
            "cancel" => self.0.cancel(&args).await,
            "refill" => self.0.refill(&args).await,
            "call" => self.0.call_purchase(&args).await,
            "purchases" => super::purchase::rows(&self.0.ctx)
                .await
                .map(|rows| json!({"purchases": rows})),
            "budget" => self.0.budget(),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named {:?}", clean(other)),
                    None,
                ));
            }
        };
        Ok(match outcome {
            Ok(value) => result(value, false),
            Err(error) => result(json!({"error": clean(&format!("{error:#}"))}), true),
        }
        .into())
    }
}

/// A tool result: the JSON as structured content and as text.
fn result(value: Value, is_error: bool) -> CallToolResult {
    let text = vec![ContentBlock::text(value.to_string())];
    let mut result = if is_error {
        CallToolResult::error(text)
    } else {
        CallToolResult::success(text)
    };
    result.structured_content = Some(value);
    result
}

fn schema(value: Value) -> Arc<JsonObject> {
    Arc::new(match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

fn text<'a>(args: &'a JsonObject, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

fn required<'a>(args: &'a JsonObject, key: &str) -> anyhow::Result<&'a str> {
    text(args, key).with_context(|| format!("`{key}` (a string) is required"))
}

impl Inner {
    fn tools(&self) -> Vec<Tool> {
        let caps = format!(
            "Costs at most maxAmount (default and ceiling: {per_call} {token}); refused when today's payments would pass {per_day} {token}.",
            per_call = self.caps.per_call,
            per_day = self.caps.per_day,
            token = self.caps.token
        );
        let max = json!({"type": "string", "description": format!("the most this call may cost, in {}", self.caps.token)});
        vec![
            Tool::new(
                "discover",
                "Finds sellers: agents registered on a chain's ERC-8004 Identity Registry whose registration documents advertise x402 services, with their offers and prices. Free.",
                schema(json!({"type": "object", "properties": {
                    "chain": {"type": "string", "description": "a chain with an RPC endpoint here (e.g. base, base-sepolia)"},
                    "fromBlock": {"type": "integer", "minimum": 0},
                    "allowPrivate": {"type": "boolean", "description": "also read sellers at private or loopback addresses"},
                }, "required": ["chain"]})),
            ),
            Tool::new(
                "probe",
                "What an x402 URL charges, without paying: every accepted payment with its price. Free.",
                schema(
                    json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
                ),
            ),
            Tool::new(
                "pay",
                format!(
                    "One HTTP call to an x402 URL, paid if it asks for payment; returns the status, the body and the receipt. {caps}"
                ),
                schema(json!({"type": "object", "properties": {
                    "url": {"type": "string"},
                    "method": {"type": "string", "description": "GET (default) or POST, PUT, …"},
                    "body": {"type": "string"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "maxAmount": max,
                }, "required": ["url"]})),
            ),
            Tool::new(
                "call_tool",
                format!(
                    "One call of a tool on a paid MCP server (streamable HTTP), paid if the tool asks for payment; returns the tool's result and the receipt. {caps}"
                ),
                schema(json!({"type": "object", "properties": {
                    "endpoint": {"type": "string", "description": "the MCP server's URL"},
                    "tool": {"type": "string"},
                    "arguments": {"type": "object"},
                    "maxAmount": max,
                }, "required": ["endpoint", "tool"]})),
            ),
            Tool::new(
                "buy",
                format!(
                    "Buys `count` calls of a seller's model (1 to 1000): pre-signs them for the stack's buyer proxy, which then serves the model as `paid/<model>` at its OpenAI-compatible /v1. Costs count × the seller's price, at most maxTotal; each call's price at most {per_call} {token}; the whole batch counts against today's {per_day} {token} when signed.",
                    per_call = self.caps.per_call,
                    per_day = self.caps.per_day,
                    token = self.caps.token
                ),
                schema(json!({"type": "object", "properties": {
                    "seller": {"type": "string", "description": "the seller's storefront or inference URL"},
                    "model": {"type": "string"},
                    "count": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "maxTotal": {"type": "string", "description": format!("the most the whole batch may cost, in {}", self.caps.token)},
                }, "required": ["seller", "count", "maxTotal"]})),
            ),
            Tool::new(
                "call",
                "One chat-completions call of a bought model (`paid/<model>`) through the stack's buyer proxy, paid with the purchase's next pre-signed authorization (nothing new is signed: the purchase bounds it). Refused when the purchase is used up.",
                schema(json!({"type": "object", "properties": {
                    "model": {"type": "string", "description": "paid/<model>"},
                    "messages": {"type": "array", "items": {"type": "object"}},
                    "body": {"type": "object", "description": "the whole chat-completions body instead of model and messages"},
                }})),
            ),
            Tool::new(
                "refill",
                format!(
                    "Adds `count` calls to a purchase (`buy`'s `purchase`) at the price it was bought at: pre-signs them for the buyer proxy. Costs count × that price, at most maxTotal; counts against today's {per_day} {token} when signed.",
                    per_day = self.caps.per_day,
                    token = self.caps.token
                ),
                schema(json!({"type": "object", "properties": {
                    "purchase": {"type": "string", "description": "namespace/name, or a name in `buy`"},
                    "count": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "maxTotal": {"type": "string", "description": format!("the most the batch may cost, in {}", self.caps.token)},
                }, "required": ["purchase", "count", "maxTotal"]})),
            ),
            Tool::new(
                "cancel",
                "Cancels a purchase (`buy`'s `purchase`, e.g. `buy/m1`): the buyer proxy stops serving it and drops its unspent authorizations. Spends nothing.",
                schema(json!({"type": "object", "properties": {
                    "purchase": {"type": "string", "description": "namespace/name, or a name in `buy`"},
                }, "required": ["purchase"]})),
            ),
            Tool::new(
                "purchases",
                "The pre-signed purchases this stack holds (obol buy inference), with what remains and what was spent. Free.",
                schema(json!({"type": "object"})),
            ),
            Tool::new(
                "budget",
                "The caps and what was spent today (UTC). Free.",
                schema(json!({"type": "object"})),
            ),
        ]
    }

    async fn discover(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let request = crate::cli::BuyDiscoverArgs {
            chain: required(args, "chain")?.to_owned(),
            from_block: args.get("fromBlock").and_then(Value::as_u64),
            timeout: 30,
            allow_private: args
                .get("allowPrivate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        let found = super::discover::scan(&self.ctx, &request).await?;
        Ok(found.json(&request))
    }

    async fn probe(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let url = required(args, "url")?;
        let prober = obol_buyer::Prober::new(None, Duration::from_secs(15))?;
        let offered = prober.get(url).await?;
        let tokens = &self.tokens;
        let accepts: Vec<Value> = offered
            .accepts
            .iter()
            .map(|r| {
                json!({"price": clean(&buy::human_price(tokens, r)), "network": r.network,
                       "payTo": r.pay_to, "scheme": r.scheme, "requirement": r})
            })
            .collect();
        Ok(
            json!({"x402Version": offered.version, "resource": offered.resource, "accepts": accepts}),
        )
    }

    /// Chooses what to pay for `offered` within the caps, and counts it against the day: from
    /// here on the payment may be spent.
    /// What to pay for `offered` within the agent's `max` (default: the per-call cap).
    fn admit(&self, offered: &Offered, max: Option<&str>) -> anyhow::Result<Choice> {
        let caps = &self.caps;
        buy::choose(
            offered,
            Some(max.unwrap_or(&caps.per_call)),
            &caps.token,
            &self.tokens,
        )
    }

    async fn pay(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let url = required(args, "url")?;
        let body = text(args, "body").map(|b| b.as_bytes().to_vec());
        let method: reqwest::Method = text(args, "method")
            .unwrap_or(if body.is_some() { "POST" } else { "GET" })
            .to_ascii_uppercase()
            .parse()
            .context("method")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(given) = args.get("headers").and_then(Value::as_object) {
            for (name, value) in given {
                let value = value.as_str().context("header values are strings")?;
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .with_context(|| format!("header name {:?}", clean(name)))?,
                    value.parse().context("a header value")?,
                );
            }
        }
        let call = Call {
            method,
            url: url.to_owned(),
            headers,
            body,
        };
        let max = text(args, "maxAmount");
        let called = buy::call_paying(
            &self.ctx,
            &self.http,
            &call,
            async |offered| self.admit(offered, max),
            || Ok(self.signer.clone()),
            // An agent does not send transactions: the approval is the owner's, once.
            |_, _| Ok(false),
            |choice| self.count_spend(choice, choice.requirement.amount()),
        )
        .await
        .map_err(|e| {
            if e.to_string().contains("Permit2 approval") {
                e.context("approve Permit2 once with `obol buy pay` in a terminal")
            } else {
                e
            }
        })?;
        let (response, mut report) = match called {
            Called::Free(response) => (response, json!({"payment": null, "receipt": null})),
            Called::Paid(paid) => {
                let mut report = paid.report();
                report["note"] = paid.note().into();
                (paid.response, report)
            }
        };
        report["status"] = response.status().as_u16().into();
        report["body"] = answer_text(response).await.into();
        Ok(report)
    }

    async fn call_remote_tool(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let endpoint = required(args, "endpoint")?;
        let tool = required(args, "tool")?.to_owned();
        let arguments = args
            .get("arguments")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let config = StreamableHttpClientTransportConfig::with_uri(endpoint);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let client = ()
            .serve(transport)
            .await
            .map_err(|e| anyhow!("cannot open an MCP session with the server: {e}"))?;
        let params = CallToolRequestParams::new(tool.clone()).with_arguments(arguments.clone());
        let first = client.call_tool(params.clone()).await?;
        let Some(required) = payment_required(&first) else {
            return Ok(json!({"paid": false, "result": first}));
        };
        let offered = Offered {
            version: 2,
            resource: required.resource.clone(),
            accepts: required.accepts.clone(),
        };
        let choice = self.admit(&offered, text(args, "maxAmount"))?;
        self.count_spend(&choice, choice.requirement.amount())?;
        let payment = buy::sign_payment(&self.signer, &offered, &choice.requirement)?;
        let mut meta = rmcp::model::RequestMetaObject::default();
        meta.0
            .0
            .insert(PAYMENT_META.to_owned(), serde_json::to_value(&payment)?);
        let mut paid = params;
        paid.meta = Some(meta);
        let answer = client.call_tool(paid).await;
        let _ = client.cancel().await;
        let answer = answer.context("the paid call failed (the payment was signed and counted)")?;
        let receipt = answer
            .meta
            .as_ref()
            .and_then(|m| m.0.get(RECEIPT_META))
            .cloned();
        Ok(json!({
            "paid": true,
            "payment": {"price": choice.price, "network": choice.network,
                        "payTo": choice.requirement.pay_to,
                        "payer": self.signer.address().to_checksum(None)},
            "receipt": receipt,
            "result": answer,
        }))
    }

    /// Checks a price against the per-call cap and counts `total` against the day.
    fn count_spend(
        &self,
        choice: &Choice,
        total: obol_x402::primitives::U256,
    ) -> anyhow::Result<()> {
        let caps = &self.caps;
        let decimals = choice.token.decimals;
        if choice.requirement.amount() > parse_units(&caps.per_call, decimals)? {
            bail!(
                "refusing to pay {}: over the per-call cap of {} {}",
                choice.price,
                caps.per_call,
                caps.token
            );
        }
        let cap = parse_units(&caps.per_day, decimals)?;
        let asset = choice.requirement.asset_address()?;
        let today = day_of(obol_config::time::unix_now());
        match self
            .ledger
            .spend(MCP_SCOPE, today, choice.token.chain_id, asset, total, cap)
        {
            Ok(_) => Ok(()),
            Err(SpendError::OverCap { spent, .. }) => bail!(
                "refusing to pay {} {}: {} {} already spent today (UTC) and the daily cap is {} {}",
                format_units(total, decimals),
                caps.token,
                format_units(spent, decimals),
                caps.token,
                caps.per_day,
                caps.token
            ),
            Err(other) => Err(other.into()),
        }
    }

    async fn buy(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let seller = required(args, "seller")?;
        let count = count_of(args)?;
        let max_total = required(args, "maxTotal")?;
        let request = crate::cli::BuyInferenceArgs {
            seller: seller.to_owned(),
            model: text(args, "model").map(str::to_owned),
            count: Some(count),
            budget: None,
            token: crate::cli::TokenArgs {
                symbol: self.caps.token.clone(),
                token_address: None,
            },
            metered: false,
            name: None,
            namespace: crate::cli::DEFAULT_BUY_NAMESPACE.to_owned(),
            replace: false,
            user_agent: None,
            expected_agent_id: None,
            refill: crate::cli::RefillFlags::default(),
            sign: agent_signing(),
        };
        let done = super::purchase::buy_pool(
            &self.ctx,
            &request,
            || Ok(self.signer.clone()),
            |choice, _, approval| self.admit_batch(choice, count, max_total, approval),
        )
        .await?;
        let (purchase, buyer) = done.context("nothing bought")?;
        Ok(bought(&purchase, &buyer))
    }

    /// Refuses a batch of `count` authorizations at `choice`'s price over `max_total`, needing
    /// a Permit2 approval (`approval`), or over the caps; counts it against the day otherwise.
    fn admit_batch(
        &self,
        choice: &Choice,
        count: u32,
        max_total: &str,
        approval: bool,
    ) -> anyhow::Result<()> {
        if approval {
            bail!(
                "paying in {} needs a Permit2 approval: send it once with `obol buy pay` in a terminal",
                choice.token.symbol
            );
        }
        let total = choice
            .requirement
            .amount()
            .saturating_mul(obol_x402::primitives::U256::from(count));
        if total > parse_units(max_total, choice.token.decimals)? {
            bail!(
                "refusing to sign: {count} calls at {} cost {} {}, over maxTotal {max_total}",
                choice.price,
                format_units(total, choice.token.decimals),
                choice.token.symbol
            );
        }
        self.count_spend(choice, total)
    }

    async fn call_purchase(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let body = match args.get("body") {
            Some(Value::Object(body)) => Value::Object(body.clone()),
            _ => json!({
                "model": required(args, "model")?,
                "messages": args.get("messages").cloned().unwrap_or_else(|| json!([])),
            }),
        };
        let (_, buyer) = super::purchase::stack(&self.ctx).await?;
        let response = self
            .http
            .post(format!("http://{buyer}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .context("the buyer proxy")?;
        let status = response.status();
        let receipt = buy::receipt_of(response.headers());
        let text = answer_text(response).await;
        if !status.is_success() {
            bail!("{status}: {}", clean(&text));
        }
        Ok(json!({"status": status.as_u16(), "receipt": receipt, "body": text}))
    }

    async fn refill(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let (namespace, name) = purchase_name(required(args, "purchase")?);
        let count = count_of(args)?;
        let max_total = required(args, "maxTotal")?;
        let request = crate::cli::BuyRefillArgs {
            name: name.to_owned(),
            count,
            namespace: namespace.to_owned(),
            sign: agent_signing(),
        };
        let refilled = super::purchase::refill_pool(
            &self.ctx,
            &request,
            || Ok(self.signer.clone()),
            |token, requirement| {
                let choice = Choice {
                    requirement: requirement.clone(),
                    token: token.clone(),
                    price: format!(
                        "{} {}",
                        format_units(requirement.amount(), token.decimals),
                        token.symbol
                    ),
                    network: "",
                    metered: requirement.scheme == "upto",
                };
                self.admit_batch(&choice, count, max_total, false)
            },
        )
        .await?;
        let (purchase, buyer) = refilled.context("nothing signed")?;
        Ok(bought(&purchase, &buyer))
    }

    async fn cancel(&self, args: &JsonObject) -> anyhow::Result<Value> {
        let (namespace, name) = purchase_name(required(args, "purchase")?);
        let dropped = super::purchase::drop_purchase(&self.ctx, namespace, name).await?;
        Ok(json!({"cancelled": format!("{namespace}/{name}"), "dropped": dropped}))
    }

    fn budget(&self) -> anyhow::Result<Value> {
        let today = day_of(obol_config::time::unix_now());
        let spent: Vec<Value> = self
            .tokens
            .iter()
            .filter(|t| t.symbol.eq_ignore_ascii_case(&self.caps.token))
            .filter_map(|t| {
                let day = self
                    .ledger
                    .day(MCP_SCOPE, today, t.chain_id, t.address)
                    .ok()?;
                (day.payments > 0).then(|| {
                    json!({"chainId": t.chain_id, "spent": format_units(day.atomic, t.decimals),
                           "payments": day.payments})
                })
            })
            .collect();
        Ok(json!({
            "token": self.caps.token, "maxPerCall": self.caps.per_call,
            "maxPerDay": self.caps.per_day, "today": spent,
        }))
    }
}

/// `namespace/name`, or a name in `buy`.
fn purchase_name(given: &str) -> (&str, &str) {
    given
        .split_once('/')
        .unwrap_or((crate::cli::DEFAULT_BUY_NAMESPACE, given))
}

/// A batch's `count`: 1 to 1000.
fn count_of(args: &JsonObject) -> anyhow::Result<u32> {
    args.get("count")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=1000).contains(n))
        .context("`count` (1 to 1000) is required")
}

/// How an agent's batches are signed: without asking, and short-lived (what is not spent
/// today stops being spendable tomorrow).
fn agent_signing() -> crate::cli::PresignFlags {
    crate::cli::PresignFlags {
        ttl: "1d".to_owned(),
        signer: crate::cli::SignerArgs::default(),
        yes: true,
    }
}

/// What `buy` and `refill` answer.
fn bought(purchase: &obol_control::purchase::PurchaseRequest, buyer: &str) -> Value {
    let payment = &purchase.spec.payment;
    json!({
        "purchase": format!("{}/{}", purchase.metadata.namespace, purchase.metadata.name),
        "model": format!("paid/{}", purchase.spec.model),
        "endpoint": format!("http://{buyer}/v1"),
        "remaining": purchase.status.remaining,
        "totalSigned": purchase.status.total_signed,
        "price": payment.amount_text(payment.price.parse().unwrap_or_default()),
    })
}

/// The PaymentRequired of a tool result that asks for payment (the x402 MCP binding).
fn payment_required(result: &CallToolResult) -> Option<v2::PaymentRequired> {
    if result.is_error != Some(true) {
        return None;
    }
    let from_structured = result
        .structured_content
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    from_structured.or_else(|| {
        let text = result.content.first()?.as_text()?.text.clone();
        serde_json::from_str(&text).ok()
    })
}

/// At most [`MAX_BODY`] bytes of an answer, as text.
async fn answer_text(response: reqwest::Response) -> String {
    match response.bytes().await {
        Ok(bytes) => {
            let cut = &bytes[..bytes.len().min(MAX_BODY)];
            let mut text = String::from_utf8_lossy(cut).into_owned();
            if bytes.len() > MAX_BODY {
                text.push_str("\n[cut]");
            }
            text
        }
        Err(e) => format!("[the answer could not be read: {e}]"),
    }
}
