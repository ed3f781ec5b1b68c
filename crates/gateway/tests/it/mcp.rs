//! Paid MCP tools over streamable HTTP (JSON-RPC by hand, so every field is checked): the x402
//! MCP binding on the same money path as HTTP — a paid call is charged exactly once, after the
//! upstream succeeded; replays, bad payments and upstream failures cost nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use obol_gateway::mcp::{Tool, Tools};
use obol_gateway::{Gate, Methods, Offer, OfferKind, Route, RouteTable};
use obol_testkit::x402::signed;
use obol_x402::signer::{ValidityWindow, random_nonce};
use obol_x402::wire::v2;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::{Fixture, PAY_TO, now, offer, spawn};

/// An MCP offer at `/services/tools`: `echo` (1000 atomic), `dear` (2500 atomic, own price),
/// `fail` (the upstream answers 500), `ping` (free), `slow` (answers after 300 ms); all POST to
/// the test upstream.
fn tools_route(upstream: &str) -> Route {
    let base = offer("tools", upstream, OfferKind::Mcp, "USDC", "1000").offer;
    let priced = |amount: &str| {
        let mut priced = (*base).clone();
        priced.options = offer("tools", upstream, OfferKind::Mcp, "USDC", amount)
            .offer
            .options
            .clone();
        Arc::new(priced)
    };
    let at = |mut tool: Tool, path: &str| {
        tool.path = path.into();
        tool
    };
    let tools = Tools::new(vec![
        at(Tool::paid("echo", priced("1000")), "/echo"),
        at(Tool::paid("dear", priced("2500")), "/echo"),
        at(Tool::paid("fail", priced("1000")), "/fail"),
        at(Tool::free("ping"), "/echo"),
        at(Tool::paid("slow", priced("1000")), "/slow"),
    ]);
    let offer = Offer {
        mcp: Some(Arc::new(tools)),
        ..(*base).clone()
    };
    Route {
        pattern: "/services/tools".into(),
        methods: Methods::ANY,
        gate: Gate::Free,
        offer: Arc::new(offer),
        free_quota: None,
    }
}

async fn fixture() -> Fixture {
    let fixture = Fixture::start().await;
    fixture
        .routes
        .store(RouteTable::new(vec![tools_route(&fixture.upstream)]));
    fixture
}

/// One JSON-RPC request to the offer's MCP endpoint; the whole answer.
async fn rpc(fixture: &Fixture, method: &str, params: Value) -> Value {
    rpc_at(fixture, "/services/tools", method, params).await
}

/// [`rpc`] to the MCP endpoint at `path`.
async fn rpc_at(fixture: &Fixture, path: &str, method: &str, params: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fixture.gateway))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{method}");
    response.json().await.unwrap()
}

/// `tools/call` of `name`, with `payment` in `_meta` when given; the result.
async fn call(fixture: &Fixture, name: &str, payment: Option<Value>) -> Value {
    call_at(
        fixture,
        "/services/tools",
        name,
        json!({"city": "Lisbon"}),
        payment,
    )
    .await
}

/// [`call`] at `path` with `arguments`.
async fn call_at(
    fixture: &Fixture,
    path: &str,
    name: &str,
    arguments: Value,
    payment: Option<Value>,
) -> Value {
    let mut params = json!({"name": name, "arguments": arguments});
    if let Some(payment) = payment {
        params["_meta"] = json!({"x402/payment": payment});
    }
    let answer = rpc_at(fixture, path, "tools/call", params).await;
    answer["result"].clone()
}

/// The PaymentRequired of an unpaid call's result.
fn required_of(result: &Value) -> v2::PaymentRequired {
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap();
    let from_text: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        from_text, result["structuredContent"],
        "the same JSON twice"
    );
    serde_json::from_value(result["structuredContent"].clone()).unwrap()
}

fn failure_reason(result: &Value) -> String {
    let required = required_of(result);
    required.extensions.unwrap()["paymentFailure"]["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A signed payment for the first option of `required`, as the `_meta` value.
fn pay(fixture: &Fixture, buyer: usize, required: &v2::PaymentRequired) -> Value {
    let resource = Some(required.resource.clone());
    let (buyer, window) = (fixture.buyer(buyer), obol_testkit::x402::live());
    let payload = signed(
        &buyer,
        &required.accepts[0],
        resource,
        window,
        random_nonce(),
    );
    serde_json::to_value(payload).unwrap()
}

#[tokio::test]
async fn tools_are_listed_with_their_prices() {
    let fixture = fixture().await;
    let answer = rpc(&fixture, "tools/list", json!({})).await;
    let tools = answer["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dear", "echo", "fail", "ping", "slow"]);
    assert_eq!(tools[3]["description"], "Free.");
    assert!(
        tools[1]["description"]
            .as_str()
            .unwrap()
            .starts_with("Paid with x402: 0.001 USDC"),
        "{}",
        tools[1]
    );
    assert_eq!(tools[1]["inputSchema"], json!({"type": "object"}));
}

#[tokio::test]
async fn a_paid_tool_is_charged_exactly_once_after_the_upstream_answered() {
    let fixture = fixture().await;
    let unpaid = call(&fixture, "dear", None).await;
    let required = required_of(&unpaid);
    assert_eq!(required.resource.url, "mcp://tool/dear");
    assert_eq!(required.accepts[0].amount.0.to_string(), "2500");
    assert_eq!(
        fixture.log.calls.load(Ordering::SeqCst),
        0,
        "never served unpaid"
    );

    let before = fixture.usdc(PAY_TO).await;
    let payment = pay(&fixture, 1, &required);
    let paid = call(&fixture, "dear", Some(payment.clone())).await;
    assert_ne!(paid["isError"], true, "{paid}");
    assert_eq!(paid["structuredContent"]["ok"], true);
    let seen = &paid["structuredContent"]["headers"];
    assert_eq!(
        seen["x-payment-payer"].as_str().unwrap().to_lowercase(),
        fixture.buyer(1).address().to_string().to_lowercase()
    );
    assert_eq!(
        seen["authorization"], "Bearer upstream-secret",
        "the seller's key"
    );
    assert_eq!(seen["content-type"], "application/json");
    let receipt = &paid["_meta"]["x402/payment-response"];
    assert_eq!(receipt["success"], true, "{paid}");
    assert!(receipt["transaction"].as_str().unwrap().starts_with("0x"));
    let after = fixture.usdc(PAY_TO).await;
    assert_eq!(after - before, obol_x402::primitives::U256::from(2500u64));

    // The same payment again: refused, not served, not charged.
    let calls = fixture.log.calls.load(Ordering::SeqCst);
    let replay = call(&fixture, "dear", Some(payment)).await;
    assert_eq!(failure_reason(&replay), "payment_already_used");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), calls);
    assert_eq!(fixture.usdc(PAY_TO).await, after);
    assert_eq!(fixture.probe.settled(), 1);
}

#[tokio::test]
async fn a_short_lived_payment_and_an_escaping_path_are_refused_before_anything_runs() {
    let fixture = fixture().await;
    let required = required_of(&call(&fixture, "echo", None).await);
    let window = ValidityWindow {
        valid_after: 0,
        valid_before: now() + 8,
    };
    let resource = Some(required.resource.clone());
    let payload = signed(
        &fixture.buyer(1),
        &required.accepts[0],
        resource,
        window,
        random_nonce(),
    );
    let payment = serde_json::to_value(payload).unwrap();
    let refused = call(&fixture, "echo", Some(payment)).await;
    assert_eq!(failure_reason(&refused), "authorization_expires_too_soon");
    // (A literal `..` never leaves the client: URL libraries resolve it.)
    for path in ["/services/tools/%2e%2e/x", "/services/tools%2f..%2fx"] {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", fixture.gateway))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_client_error(),
            "{path}: {}",
            answer.status()
        );
    }
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
    assert_eq!(fixture.probe.verified(), 0);
}

#[tokio::test]
async fn a_payment_for_another_price_or_no_payment_at_all_is_rechallenged() {
    let fixture = fixture().await;
    let cheap = required_of(&call(&fixture, "echo", None).await);
    let payment = pay(&fixture, 2, &cheap);
    let wrong = call(&fixture, "dear", Some(payment)).await;
    assert_eq!(failure_reason(&wrong), "no_matching_requirement");

    for junk in [json!("not json"), json!({"x402Version": 2}), json!(7)] {
        let refused = call(&fixture, "echo", Some(junk)).await;
        assert_eq!(failure_reason(&refused), "invalid_payment");
    }
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 0);
    assert_eq!(fixture.probe.verified(), 0);
}

#[tokio::test]
async fn an_upstream_failure_is_not_charged_and_frees_the_payment() {
    let fixture = fixture().await;
    let required = required_of(&call(&fixture, "fail", None).await);
    let payment = pay(&fixture, 3, &required);
    let before = fixture.usdc(PAY_TO).await;
    let failed = call(&fixture, "fail", Some(payment.clone())).await;
    assert_eq!(failed["isError"], true);
    assert!(
        failed["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{failed}"
    );
    assert!(failed["_meta"].get("x402/payment-response").is_none());
    // Not used up: the same authorization pays for a call that succeeds (same price).
    let echo = call(&fixture, "echo", Some(payment)).await;
    assert_eq!(echo["_meta"]["x402/payment-response"]["success"], true);
    assert_eq!(fixture.probe.settled(), 1);
    assert_eq!(
        fixture.usdc(PAY_TO).await - before,
        obol_x402::primitives::U256::from(1000u64)
    );
}

#[tokio::test]
async fn free_tools_need_no_payment_and_unknown_tools_are_protocol_errors() {
    let fixture = fixture().await;
    let ping = call(&fixture, "ping", None).await;
    assert_ne!(ping["isError"], true, "{ping}");
    assert_eq!(ping["structuredContent"]["ok"], true);
    assert_eq!(
        ping["structuredContent"]["headers"]["x-payment-payer"],
        Value::Null
    );

    let answer = rpc(
        &fixture,
        "tools/call",
        json!({"name": "nope", "arguments": {}}),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(obol_testkit::json::error_message(&answer).contains("nope"));
    assert_eq!(fixture.probe.verified(), 0);
}

#[tokio::test]
async fn one_payment_used_twice_at_once_is_served_once() {
    let fixture = fixture().await;
    let required = required_of(&call(&fixture, "slow", None).await);
    let payment = pay(&fixture, 4, &required);
    let (a, b) = tokio::join!(
        call(&fixture, "slow", Some(payment.clone())),
        call(&fixture, "slow", Some(payment))
    );
    let (served, refused) = if a["isError"] == true { (b, a) } else { (a, b) };
    assert_eq!(
        served["_meta"]["x402/payment-response"]["success"], true,
        "{served}"
    );
    assert_eq!(failure_reason(&refused), "payment_in_flight");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fixture.probe.settled(), 1);
}

/// An upstream MCP server (rmcp, with sessions): `add` sums `a` and `b`, `boom` fails, `hello`
/// greets; it records the `Authorization` it was sent.
#[derive(Clone, Default)]
struct Upstream {
    authorization: Arc<Mutex<Vec<String>>>,
}

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = |v: Value| Arc::new(v.as_object().unwrap().clone());
        Ok(ListToolsResult::with_all_items(vec![
            McpTool::new(
                "add",
                "Adds two numbers.",
                schema(
                    json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
                ),
            ),
            McpTool::new("boom", "Always fails.", schema(json!({"type": "object"}))),
            McpTool::new("hello", "Greets.", schema(json!({"type": "object"}))),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(parts) = context.extensions.get::<axum::http::request::Parts>() {
            let seen = parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            self.authorization.lock().unwrap().push(seen);
        }
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "add" => {
                let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
                CallToolResult::success(vec![ContentBlock::text(sum.to_string())])
            }
            "boom" => CallToolResult::error(vec![ContentBlock::text("it broke")]),
            "hello" => CallToolResult::success(vec![ContentBlock::text("hello")]),
            other => {
                return Err(ErrorData::invalid_params(format!("no tool {other}"), None));
            }
        };
        Ok(result.into())
    }
}

/// Serves `upstream` at `/mcp` on a free port; returns the endpoint's URL.
async fn upstream_mcp(upstream: Upstream) -> String {
    let service = StreamableHttpService::new(
        move || Ok(upstream.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    format!("{}/mcp", spawn(router).await)
}

/// An offer at `/services/proxy` selling every tool of the MCP server at `upstream` (1000 atomic
/// each), `hello` declared free.
fn proxy_route(upstream: &str) -> Route {
    let base = offer("proxy", upstream, OfferKind::Mcp, "USDC", "1000").offer;
    let tools = Tools::proxying(vec![Tool::free("hello")], base.clone());
    Route {
        pattern: "/services/proxy".into(),
        methods: Methods::ANY,
        gate: Gate::Free,
        offer: Arc::new(Offer {
            mcp: Some(Arc::new(tools)),
            ..(*base).clone()
        }),
        free_quota: None,
    }
}

#[tokio::test]
async fn a_whole_upstream_mcp_server_is_sold_tool_by_tool() {
    let fixture = Fixture::start().await;
    let upstream = Upstream::default();
    let url = upstream_mcp(upstream.clone()).await;
    fixture
        .routes
        .store(RouteTable::new(vec![proxy_route(&url)]));
    let at = "/services/proxy";

    let listed = rpc_at(&fixture, at, "tools/list", json!({})).await;
    let tools = listed["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["add", "boom", "hello"]);
    assert!(
        tools[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Adds two numbers. Paid with x402: 0.001 USDC"),
        "{}",
        tools[0]
    );
    assert_eq!(tools[0]["inputSchema"]["properties"]["a"]["type"], "number");
    assert_eq!(tools[2]["description"], "Greets. Free.");

    let args = json!({"a": 2, "b": 3});
    let unpaid = call_at(&fixture, at, "add", args.clone(), None).await;
    let required = required_of(&unpaid);
    assert_eq!(required.resource.url, "mcp://tool/add");
    assert!(
        upstream.authorization.lock().unwrap().is_empty(),
        "never called unpaid"
    );

    let before = fixture.usdc(PAY_TO).await;
    let paid = call_at(
        &fixture,
        at,
        "add",
        args.clone(),
        Some(pay(&fixture, 5, &required)),
    )
    .await;
    assert_eq!(paid["content"][0]["text"], "5", "{paid}");
    assert_eq!(
        paid["_meta"]["x402/payment-response"]["success"], true,
        "{paid}"
    );
    assert_eq!(
        fixture.usdc(PAY_TO).await - before,
        obol_x402::primitives::U256::from(1000u64)
    );
    assert_eq!(
        upstream.authorization.lock().unwrap().as_slice(),
        ["Bearer upstream-secret"],
        "the seller's key reaches the upstream server"
    );

    // The upstream's tool error is not charged.
    let boom_required = required_of(&call_at(&fixture, at, "boom", json!({}), None).await);
    let boom = call_at(
        &fixture,
        at,
        "boom",
        json!({}),
        Some(pay(&fixture, 6, &boom_required)),
    )
    .await;
    assert_eq!(boom["isError"], true);
    assert_eq!(boom["content"][0]["text"], "it broke");
    assert!(
        boom.get("_meta")
            .is_none_or(|m| m.get("x402/payment-response").is_none())
    );
    assert_eq!(fixture.probe.settled(), 1);

    let hello = call_at(&fixture, at, "hello", json!({}), None).await;
    assert_eq!(hello["content"][0]["text"], "hello", "{hello}");
}

#[tokio::test]
async fn an_unreachable_upstream_mcp_server_is_an_error_never_a_charge() {
    let fixture = Fixture::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", listener.local_addr().unwrap())
    };
    fixture
        .routes
        .store(RouteTable::new(vec![proxy_route(&closed)]));
    let at = "/services/proxy";
    let listed = rpc_at(&fixture, at, "tools/list", json!({})).await;
    assert!(
        obol_testkit::json::error_message(&listed).contains("cannot reach the upstream MCP server"),
        "{listed}"
    );
    let required = required_of(&call_at(&fixture, at, "add", json!({}), None).await);
    let payment = pay(&fixture, 7, &required);
    let failed = call_at(&fixture, at, "add", json!({}), Some(payment)).await;
    assert_eq!(failed["isError"], true);
    assert_eq!(
        failed["structuredContent"]["reason"], "upstream_unavailable",
        "{failed}"
    );
    assert_eq!(fixture.probe.settled(), 0);
}

/// A client advertising x402's MCP extension (`capabilities.extensions["org.x402/payment"]`, sent
/// per request on the 2026-07-28 protocol) gets the PaymentRequired as a `payment_required`
/// result; a client without it gets the plain tool-error binding.
#[tokio::test]
async fn the_extension_binding_answers_payment_required_to_clients_that_ask() {
    let fixture = fixture().await;
    let unpaid =
        |capabilities: Value| {
            let fixture = &fixture;
            async move {
                let response = reqwest::Client::new()
                .post(format!("{}/services/tools", fixture.gateway))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "echo")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                    "name": "echo", "arguments": {},
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": capabilities,
                        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
                    }
                }}))
                .send()
                .await
                .unwrap();
                assert_eq!(response.status(), 200);
                let answer: Value = response.json().await.unwrap();
                answer["result"].clone()
            }
        };
    let extended = unpaid(json!({"extensions": {"org.x402/payment": {}}})).await;
    assert_eq!(extended["resultType"], "payment_required", "{extended}");
    assert_eq!(
        required_of(&extended).accepts[0].amount.0.to_string(),
        "1000"
    );
    let plain = unpaid(json!({})).await;
    assert_ne!(plain["resultType"], "payment_required", "{plain}");
    assert_eq!(required_of(&plain).resource.url, "mcp://tool/echo");
}

/// A buyer who hangs up while the tool runs is not charged for the answer it never got.
#[tokio::test]
async fn a_call_abandoned_mid_answer_is_not_charged() {
    let fixture = fixture().await;
    let required = required_of(&call(&fixture, "slow", None).await);
    let payment = pay(&fixture, 5, &required);
    let mut params = json!({"name": "slow", "arguments": {}});
    params["_meta"] = json!({"x402/payment": payment});
    let request = reqwest::Client::new()
        .post(format!("{}/services/tools", fixture.gateway))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}))
        .send();
    let abandoned = tokio::time::timeout(std::time::Duration::from_millis(100), request).await;
    assert!(abandoned.is_err(), "hung up before the answer");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(fixture.probe.settled(), 0, "not charged");
}
