//! Paid MCP tool calls: an rmcp streamable-HTTP server (stateless, JSON answers) at an MCP
//! offer's path. `tools/list` lists the offer's tools with their prices; `tools/call` of a paid
//! tool takes the payment in `params._meta["x402/payment"]` through [`Shared::take`], POSTs the
//! arguments to the upstream through the paygate's own upstream service, and settles through
//! [`Shared::settle`] only when the upstream succeeded: the double-serve guard, the payer's
//! exposure, settle-after-success and no-settle-on-error are the HTTP paygate's, not a copy.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse as _;
use http_body_util::BodyExt as _;
use obol_x402::wire::SettleResponse;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ResultType, ServerCapabilities,
    ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service as _, ServiceExt as _};

use super::{NotCharged, PAYER_HEADER, Refused, Shared};
use crate::challenge::{self, PaymentFailure};
use crate::error::GatewayError;
use crate::matching;
use crate::mcp::{
    PAYMENT_META, PAYMENT_REQUIRED_RESULT, RECEIPT_META, Tool, Tools, X402_EXTENSION, resource_url,
};
use crate::metrics::{Counter, Labels};
use crate::route::{Offer, SettleMode};

/// The paygate's upstream service, shareable with the MCP handler.
pub(super) type Upstream = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The largest JSON-RPC message an MCP offer accepts.
const MAX_MESSAGE: usize = 1024 * 1024;

/// Where the payment of a call travels, as named in refusals.
const CARRIER: &str = "params._meta[\"x402/payment\"]";

impl Shared {
    /// A request at an MCP offer's path: the offer's MCP server answers it.
    pub(super) async fn serve_mcp(
        self: Arc<Self>,
        request: Request<Body>,
        upstream: Upstream,
        offer: Arc<Offer>,
    ) -> Response<Body> {
        let Some(tools) = offer.mcp.clone() else {
            return GatewayError::not_found().into_response();
        };
        // rmcp runs the call in a task of its own, which goes on when the buyer hangs up: the
        // call must know, so that an answer nobody receives is never charged.
        let hang_up = HangUp(Arc::new(AtomicBool::new(false)));
        let server = Server {
            shared: self,
            offer,
            tools,
            upstream,
            hung_up: hang_up.0.clone(),
        };
        // Hosts are the gateway's business (its router and vanity hostnames); sessions are not
        // kept, so any replica answers any call.
        let config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .with_sse_retry(None)
            .with_max_request_body_bytes(MAX_MESSAGE);
        let mut service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        let response = match service.call(request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
        hang_up.answered();
        response
    }
}

/// Set when the request's future is dropped before its answer: the buyer hung up.
struct HangUp(Arc<AtomicBool>);

impl HangUp {
    /// The answer is on its way: nobody hung up.
    fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One MCP offer's server, made for each request.
#[derive(Clone)]
struct Server {
    shared: Arc<Shared>,
    offer: Arc<Offer>,
    tools: Arc<Tools>,
    upstream: Upstream,
    /// The buyer hung up: nothing more is charged.
    hung_up: Arc<AtomicBool>,
}

/// What the upstream made of a call.
struct Answer {
    /// It answered below 400.
    ok: bool,
    result: CallToolResult,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                format!("obol-stack/{}", self.offer.name),
                env!("CARGO_PKG_VERSION"),
            ));
        if !self.offer.description.is_empty() {
            info = info.with_instructions(self.offer.description.clone());
        }
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        if !self.tools.proxies() {
            return Ok(ListToolsResult::with_all_items(
                self.tools.iter().map(listed).collect(),
            ));
        }
        let theirs = self
            .shared
            .mcp_upstreams
            .list(&self.offer)
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let tools = theirs
            .into_iter()
            .filter_map(|mut tool| {
                let pricing = self.tools.pricing(&tool.name)?;
                let description =
                    pricing.listed_description(tool.description.as_deref().unwrap_or(""));
                tool.description = Some(description.into());
                Some(tool)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tools.pricing(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool named {:?} here (tools/list names them)",
                    request.name.chars().take(64).collect::<String>()
                ),
                None,
            ));
        };
        let payment = request
            .meta
            .as_ref()
            .and_then(|meta| meta.0.get(PAYMENT_META))
            .or_else(|| context.meta.0.get(PAYMENT_META))
            .cloned();
        let arguments = request.arguments.unwrap_or_default();
        let client = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| super::client_of(&parts.extensions));
        let mut result = self.call(&tool, arguments, payment, client).await;
        // The extension binding: a client that advertises x402's MCP extension gets the
        // PaymentRequired as its own result type (still readable as a tool error by others).
        let extended = context
            .client_capabilities()
            .and_then(|caps| caps.extensions)
            .is_some_and(|extensions| extensions.contains_key(X402_EXTENSION));
        if extended && asks_payment(&result) {
            result.result_type = serde_json::from_value(Value::from(PAYMENT_REQUIRED_RESULT)).ok();
        }
        Ok(result.into())
    }
}

impl Server {
    /// A call of `tool`: free, or paid exactly as an HTTP request is.
    async fn call(
        &self,
        tool: &Tool,
        arguments: JsonObject,
        payment: Option<Value>,
        client: Option<std::net::IpAddr>,
    ) -> CallToolResult {
        let Some(priced) = &tool.priced else {
            return self.forward(tool, &arguments, None).await.result;
        };
        let resource = resource_url(&tool.name);
        let unpaid = Labels::new(priced, None);
        unpaid.count(Counter::Requests);
        let Some(payment) = payment else {
            unpaid.count(Counter::PaymentRequired);
            return required(priced, &resource, None);
        };
        let presented = match matching::from_json(payment, CARRIER) {
            Ok(presented) => presented,
            Err(error) => {
                unpaid.failure("invalid_payment_header");
                let failure = PaymentFailure {
                    reason: "invalid_payment",
                    detail: error.detail.unwrap_or_default(),
                    hint: Some("send a PaymentPayload object answering one of accepts[]"),
                };
                return required(priced, &resource, Some(&failure));
            }
        };
        let paid = match self
            .shared
            .take(priced, &presented, &resource, client)
            .await
        {
            Ok(paid) => paid,
            Err(refused) => return refusal(refused, priced, &resource),
        };
        let payer = paid.payer();
        if paid.retry || priced.settle == SettleMode::SettleFirst {
            if self.gone() {
                return answer_lost();
            }
            let charged = match self.shared.charge_first(paid).await {
                Ok(charged) => charged,
                Err(refused) => return not_charged(&refused, priced, &resource),
            };
            let answer = self.forward(tool, &arguments, Some(&payer)).await;
            charged.served(answer.ok, priced, &format_args!("tool {}", tool.name));
            return with_receipt(answer.result, &charged.receipt);
        }
        let answer = self.forward(tool, &arguments, Some(&payer)).await;
        if !answer.ok {
            paid.labels.count(Counter::UpstreamFailedAfterVerify);
            // Not charged: dropping `paid` frees the claim so the buyer can retry with it.
            return answer.result;
        }
        if self.gone() {
            // Not charged: the answer is not delivered; dropping `paid` frees the claim.
            return answer_lost();
        }
        paid.labels.count(Counter::PaymentVerified);
        match self.shared.settle(paid, false).await {
            Ok((receipt, _)) => with_receipt(answer.result, &receipt),
            Err(refused) => not_charged(&refused, priced, &resource),
        }
    }

    /// Whether the buyer hung up.
    fn gone(&self) -> bool {
        self.hung_up.load(Ordering::Acquire)
    }

    /// Calls the tool upstream: the upstream MCP server's tool of the same name, or a POST of
    /// the arguments to the tool's path.
    async fn forward(&self, tool: &Tool, arguments: &JsonObject, payer: Option<&str>) -> Answer {
        if !self.tools.proxies() {
            return self.post(tool, arguments, payer).await;
        }
        let upstreams = &self.shared.mcp_upstreams;
        match upstreams
            .call(&self.offer, &tool.name, arguments.clone())
            .await
        {
            Ok(mut result) => {
                // Their metadata stays theirs; ours (a receipt) is added after settlement.
                if let Some(meta) = result.meta.as_mut() {
                    meta.0.remove(RECEIPT_META);
                }
                // As negotiated with our client, not as the upstream did with us (a
                // handshake-era upstream leaves the type out; rmcp drops it again for
                // handshake-era clients of ours).
                result.result_type = Some(ResultType::COMPLETE);
                Answer {
                    ok: result.is_error != Some(true),
                    result,
                }
            }
            Err(error) => failed(&GatewayError::upstream_unavailable(error.to_string())),
        }
    }

    /// POSTs the arguments to the tool's upstream path through the paygate's upstream service
    /// (the offer's upstream URL, credential, timeout and body limit), and reads the answer.
    async fn post(&self, tool: &Tool, arguments: &JsonObject, payer: Option<&str>) -> Answer {
        let path = format!(
            "{}{}",
            self.offer.strip_prefix.trim_end_matches('/'),
            tool.path
        );
        let body = serde_json::to_vec(arguments).unwrap_or_default();
        let mut request = match Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Body::from(body))
        {
            Ok(request) => request,
            Err(e) => return failed(&GatewayError::upstream_unavailable(e.to_string())),
        };
        if let Some(payer) = payer.and_then(|p| HeaderValue::from_str(p).ok()) {
            request.headers_mut().insert(PAYER_HEADER, payer);
        }
        request.extensions_mut().insert(self.offer.clone());
        let response = match self.upstream.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let limited = http_body_util::Limited::new(
            response.into_body(),
            self.shared.config.max_buffered_response,
        );
        let bytes = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return failed(&GatewayError::upstream_unavailable(format!(
                    "the upstream response could not be read: {e}"
                )));
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.as_u16() >= 400 {
            return Answer {
                ok: false,
                result: CallToolResult::error(vec![ContentBlock::text(format!(
                    "the upstream answered {status}: {text}"
                ))]),
            };
        }
        let structured = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object);
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = structured;
        Answer { ok: true, result }
    }
}

/// Whether `result` is a PaymentRequired (built by [`required`]).
fn asks_payment(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
        && result
            .structured_content
            .as_ref()
            .is_some_and(|v| v.get("x402Version").is_some() && v.get("accepts").is_some())
}

/// `tool` as `tools/list` shows it: its schema and a description naming its price.
fn listed(tool: &Tool) -> McpTool {
    McpTool::new(
        tool.name.clone(),
        tool.listed_description(""),
        Arc::new(tool.input_schema.clone()),
    )
}

/// The PaymentRequired of `offer`'s tool at `resource` as a tool result: `isError`, the
/// object in `structuredContent` and its JSON in `content[0].text` (the x402 MCP binding).
fn required(offer: &Offer, resource: &str, failure: Option<&PaymentFailure>) -> CallToolResult {
    if failure.is_some() {
        Labels::new(offer, None).count(Counter::PaymentFailed);
    }
    let required = challenge::payment_required(offer, resource.to_owned(), failure);
    let value = serde_json::to_value(&required).unwrap_or_default();
    let mut result = CallToolResult::error(vec![ContentBlock::text(value.to_string())]);
    result.structured_content = Some(value);
    result
}

/// A failure that is not a re-challenge, as an error result (`{error, reason, detail?, hint?,
/// retriable}` in its text and structured content).
fn failed(error: &GatewayError) -> Answer {
    let value = serde_json::to_value(error).unwrap_or_default();
    let mut result = CallToolResult::error(vec![ContentBlock::text(value.to_string())]);
    result.structured_content = Some(value);
    Answer { ok: false, result }
}

/// What a call whose buyer hung up comes to (nobody reads it).
fn answer_lost() -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(
        "the caller hung up before the answer; not charged",
    )])
}

/// A refused payment as a tool result.
fn refusal(refused: Refused, offer: &Offer, resource: &str) -> CallToolResult {
    match refused {
        Refused::Rechallenge { failure, .. } => required(offer, resource, Some(&failure)),
        Refused::Error(error) => failed(&error).result,
    }
}

/// A settlement that did not charge, as a tool result (the upstream's answer withheld), with
/// the receipt when there is one.
fn not_charged(refused: &NotCharged, offer: &Offer, resource: &str) -> CallToolResult {
    let result = refusal(refused.refusal(), offer, resource);
    match refused.receipt() {
        Some(receipt) => with_receipt(result, receipt),
        None => result,
    }
}

/// `result` with the settlement receipt in `_meta["x402/payment-response"]`.
fn with_receipt(mut result: CallToolResult, receipt: &SettleResponse) -> CallToolResult {
    let mut meta = result.meta.take().unwrap_or_default();
    if let Ok(value) = serde_json::to_value(receipt) {
        meta.0.insert(RECEIPT_META.to_owned(), value);
    }
    result.meta = Some(meta);
    result
}
