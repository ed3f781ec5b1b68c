//! Paid MCP tools with the official clients (PyPI `mcp` as the MCP client, the x402 Python SDK's
//! MCP session paying) on a devnet stack: the tools are listed with their prices, an unpaid call
//! gets the PaymentRequired result, a paid call is settled on the devnet for exactly the tool's
//! price, a replayed payment is refused and a free tool costs nothing. Once over an HTTP API
//! (`obol sell mcp --tool …`), once over an MCP server built with the official Python SDK
//! (`obol sell mcp --mcp-server`).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use obol_x402::primitives::{Address, U256};

use crate::interop::{
    Cleanup, Killed, Ledger, address_of, devnet_up, node_sdk, python_sdk, repo, spawn_until,
    wait_ready,
};
use crate::stack::{gateway, upstream};
use crate::{assert_contains, obol_in, stderr};

/// A call of `tool` with `arguments` and of the free tool `free` (arguments `free_arguments`).
struct Calls<'a> {
    tool: &'a str,
    arguments: &'a str,
    free: &'a str,
    free_arguments: &'a str,
}

/// A devnet stack selling `sell_args` (after `sell mcp tools`) to a buyer; returns the report of
/// `tests/interop/mcp_pay.py`, after checking what every run must show, and the amount a paid
/// call of `calls.tool` costs (atomic USDC).
async fn sold_and_paid(
    dir: &Path,
    python: &Path,
    sell_args: &[&str],
    calls: &Calls<'_>,
    price: u64,
) -> serde_json::Value {
    let endpoint = devnet_up(dir);
    crate::stack_up(dir, None, true);
    let seller = address_of(obol_devnet::DEV_KEYS[3]);
    let pay_to = seller.to_checksum(None);
    let mut args = vec!["sell", "mcp", "tools"];
    args.extend_from_slice(sell_args);
    args.extend_from_slice(&[
        "--pay-to",
        &pay_to,
        "--chain",
        "base-sepolia",
        "--no-register",
    ]);
    let out = obol_in(dir, &args, &[], None);
    assert!(out.status.success(), "sell mcp: {}", stderr(&out));
    wait_ready(dir, "tools").await;
    let url = format!("{}/services/tools", gateway(dir));

    let buyer_key = obol_devnet::DEV_KEYS[5];
    let buyer = address_of(buyer_key);
    let ledger = Ledger::new(&endpoint);
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let out = Command::new(python)
        .arg(repo().join("tests/interop/mcp_pay.py"))
        .args([
            url.as_str(),
            calls.tool,
            calls.arguments,
            calls.free,
            calls.free_arguments,
        ])
        .env("BUYER_PRIVATE_KEY", buyer_key)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "mcp_pay.py: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let unpaid = &report["unpaid"];
    assert_eq!(
        unpaid["resource"]["url"],
        format!("mcp://tool/{}", calls.tool)
    );
    assert_eq!(unpaid["accepts"][0]["amount"], price.to_string());

    let paid = &report["paid"];
    assert_eq!(paid["paymentMade"], true, "{report}");
    assert_eq!(paid["isError"], false, "{report}");
    let receipt = &paid["paymentResponse"];
    assert_eq!(receipt["success"], true, "{report}");
    let tx = receipt["transaction"].as_str().expect("a transaction");
    ledger.assert_settled(tx, obol_devnet::USDC).await;

    let replay = &report["replay"];
    assert_eq!(replay["first"]["isError"], false, "{report}");
    assert_eq!(replay["first"]["receipt"]["success"], true, "{report}");
    assert_eq!(replay["again"]["isError"], true, "{report}");
    assert_eq!(
        replay["again"]["structuredContent"]["extensions"]["paymentFailure"]["reason"],
        "payment_already_used"
    );

    let free = &report["free"];
    assert_eq!(free["paymentMade"], false, "{report}");
    assert_eq!(free["isError"], false, "{report}");

    // Two paid calls: the session's and the first of the replayed payment.
    let parties: (Address, Address) = (seller, buyer);
    ledger
        .assert_moved(obol_devnet::USDC, parties, before, U256::from(2 * price))
        .await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_mcp_sdk_pays_our_tools() {
    let Some(python) = python_sdk() else {
        return;
    };
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let _cleanup = Cleanup(dir);
    let upstream = upstream().await;
    let sell = [
        "--upstream",
        &upstream,
        "--tool",
        "weather:0.002",
        "--tool",
        "ping:free",
    ];
    let calls = Calls {
        tool: "weather",
        arguments: r#"{"city": "Lisbon"}"#,
        free: "ping",
        free_arguments: "{}",
    };
    let report = sold_and_paid(dir, &python, &sell, &calls, 2000).await;

    let tools = report["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["ping", "weather"]);
    assert!(
        tools[1]["description"]
            .as_str()
            .is_some_and(|d| d.contains("0.002 USDC")),
        "{report}"
    );
    assert_eq!(
        report["paid"]["text"][0], "{\"ok\":true}",
        "the upstream's answer"
    );
    // The tool's PaymentRequired describes the tool to the official Bazaar validator.
    if let Some(node_path) = node_sdk() {
        let mut node = Command::new("node")
            .arg(repo().join("tests/interop/bazaar-check.cjs"))
            .arg("-")
            .env("NODE_PATH", node_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs");
        let required = serde_json::to_vec(&report["unpaid"]).expect("JSON");
        node.stdin
            .take()
            .expect("stdin")
            .write_all(&required)
            .expect("written");
        let out = node.wait_with_output().expect("node ends");
        assert!(out.status.success(), "bazaar-check: {}", stderr(&out));
        let checked: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(checked["valid"], true, "{checked}");
        assert_eq!(checked["specValid"], true, "{checked}");
        assert_eq!(checked["info"]["input"]["type"], "mcp", "{checked}");
        assert_eq!(checked["info"]["input"]["toolName"], "weather", "{checked}");
    }
    println!(
        "interop: the PyPI mcp client + x402 MCP session paid a tool call in {} ms (unpaid call → sign → paid call → settled)",
        report["elapsedMs"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_mcp_server_is_sold_whole() {
    let Some(python) = python_sdk() else {
        return;
    };
    let port = obol_testkit::http::free_port();
    let _server = Killed(
        Command::new(&python)
            .arg(repo().join("tests/interop/mcp_server.py"))
            .arg(port.to_string())
            .spawn()
            .expect("the MCP server starts"),
    );
    let mut up = false;
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the Python MCP server listens on {port}");
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let _cleanup = Cleanup(dir);
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let sell = [
        "--upstream",
        &upstream,
        "--mcp-server",
        "--per-request",
        "0.003",
        "--tool",
        "shout:free",
    ];
    let calls = Calls {
        tool: "add",
        arguments: r#"{"a": 2, "b": 3}"#,
        free: "shout",
        free_arguments: r#"{"text": "hi"}"#,
    };
    let report = sold_and_paid(dir, &python, &sell, &calls, 3000).await;

    let tools = report["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["add", "shout"], "the server's own tools");
    assert!(
        tools[0]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Adds two integers. Paid with x402: 0.003 USDC")),
        "{report}"
    );
    assert_eq!(
        tools[0]["inputSchema"]["required"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(report["paid"]["text"][0], "5", "{report}");
    assert_eq!(report["free"]["text"][0], "HI", "{report}");
}

/// An agent host (the PyPI `mcp` client over stdio) drives `obol mcp` with caps of 0.0025 USDC a
/// call and 0.004 a day: it probes (free), pays an HTTP offer (0.001), is refused a payment over
/// its own `maxAmount`, pays a tool on a paid MCP server (0.002), pays again (0.001, the day now
/// at its cap), is refused the next payment, and — in a second session, the day's spend read
/// back from disk — refused again. The buyer's balance moves by exactly 0.004 USDC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pays_through_obol_mcp_within_its_caps() {
    let Some(python) = python_sdk() else {
        return;
    };
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path().join("seller");
    let dir = dir.as_path();
    let _cleanup = Cleanup(dir);
    let upstream = upstream().await;
    let endpoint = devnet_up(dir);
    crate::stack_up(dir, None, true);
    let seller = address_of(obol_devnet::DEV_KEYS[3]);
    let pay_to = seller.to_checksum(None);
    crate::interop::sell(dir, "echo", &upstream, &pay_to, "USDC", "0.001");
    let out = obol_in(
        dir,
        &[
            "sell",
            "mcp",
            "tools",
            "--upstream",
            &upstream,
            "--tool",
            "weather:0.002",
            "--pay-to",
            &pay_to,
            "--chain",
            "base-sepolia",
            "--no-register",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "sell mcp: {}", stderr(&out));
    wait_ready(dir, "echo").await;
    wait_ready(dir, "tools").await;
    let gateway = gateway(dir);

    let buyer_key = obol_devnet::DEV_KEYS[6];
    let buyer = address_of(buyer_key);
    let ledger = Ledger::new(&endpoint);
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let home = root.path().join("buyer");
    let out = Command::new(&python)
        .arg(repo().join("tests/interop/mcp_agent.py"))
        .args([
            env!("CARGO_BIN_EXE_obol"),
            &format!("{gateway}/services/echo"),
            &format!("{gateway}/services/tools"),
            "weather",
        ])
        .env("OBOL_CONFIG_DIR", home.join("config"))
        .env("OBOL_DATA_DIR", home.join("data"))
        .env("OBOL_STATE_DIR", home.join("state"))
        .env("OBOL_DEFAULT_FACILITATOR_URL", "http://127.0.0.1:9")
        .env("OBOL_PRIVATE_KEY", buyer_key)
        .env_remove("OBOL_WALLET_PASSWORD")
        .output()
        .expect("python runs");
    assert!(out.status.success(), "mcp_agent.py: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let tools = &report["tools"];
    assert!(
        tools["pay"]
            .as_str()
            .is_some_and(|d| d.contains("0.0025 USDC") && d.contains("0.004 USDC")),
        "the caps are in the description: {report}"
    );
    assert_eq!(report["probe"]["isError"], false, "{report}");
    assert_eq!(
        report["probe"]["value"]["accepts"][0]["price"],
        "0.001 USDC"
    );

    let paid = &report["pay"];
    assert_eq!(paid["isError"], false, "{report}");
    assert_eq!(paid["value"]["status"], 200);
    assert_eq!(paid["value"]["body"], "{\"ok\":true}");
    let tx = paid["value"]["receipt"]["transaction"]
        .as_str()
        .expect("a receipt");
    ledger.assert_settled(tx, obol_devnet::USDC).await;

    let refused = |step: &str, words: &str| {
        let value = &report[step];
        assert_eq!(value["isError"], true, "{step}: {report}");
        assert!(
            value["value"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(words)),
            "{step}: {report}"
        );
    };
    refused("tooMuch", "exceeds --max-amount 0.0005");

    let tool = &report["callTool"];
    assert_eq!(tool["isError"], false, "{report}");
    assert_eq!(tool["value"]["paid"], true);
    assert_eq!(tool["value"]["payment"]["price"], "0.002 USDC");
    assert_eq!(tool["value"]["receipt"]["success"], true, "{report}");
    assert_eq!(
        tool["value"]["result"]["content"][0]["text"],
        "{\"ok\":true}"
    );

    assert_eq!(report["payAgain"]["isError"], false, "{report}");
    refused("overDay", "daily cap is 0.004 USDC");
    assert_eq!(report["budget"]["value"]["today"][0]["spent"], "0.004");
    assert_eq!(report["budget"]["value"]["today"][0]["payments"], 3);
    refused("afterRestart", "0.004 USDC already spent today");
    assert_eq!(
        report["budgetAfterRestart"]["value"]["today"][0]["spent"],
        "0.004"
    );

    ledger
        .assert_moved(
            obol_devnet::USDC,
            (seller, buyer),
            before,
            U256::from(4000u64),
        )
        .await;
}

/// `obol mcp --listen`: streamable HTTP on loopback only, refusing web pages (any `Origin`) and
/// foreign `Host`s (DNS rebinding) before any tool runs.
#[tokio::test]
async fn obol_mcp_over_http_is_loopback_only_and_refuses_browsers() {
    let root = tempfile::tempdir().expect("a temp dir");
    let home = root.path();
    let key = obol_devnet::DEV_KEYS[7];
    let obol = |args: &[&str]| obol_as(home, key, args);
    let out = obol(&["mcp", "--listen", "0.0.0.0:0"])
        .output()
        .expect("obol runs");
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "only a loopback address");

    let (_server, url) = spawn_until(
        &mut obol(&["mcp", "--listen", "127.0.0.1:0"]),
        true,
        "obol mcp: listening on",
        4,
    );
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}});
    let post = |extra: Option<(&'static str, &'static str)>| {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };
    let ok = post(None).await.expect("an answer");
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("mcp-session-id"));
    let page = post(Some(("origin", "https://evil.example")))
        .await
        .expect("an answer");
    assert_eq!(page.status(), 403, "a web page's call");
    let rebound = post(Some(("host", "evil.example")))
        .await
        .expect("an answer");
    assert!(rebound.status().is_client_error(), "{}", rebound.status());
}

/// An agent buys a bounded pool through `obol mcp` (over its HTTP transport, with rmcp's client):
/// a batch over its `maxTotal` is refused, 3 calls within it are pre-signed, `call` spends them
/// through the stack's buyer proxy and a 4th is refused, `refill` adds 2 (one over its
/// `maxTotal` refused first), a batch that would pass the daily cap
/// is refused before anything is signed, and `cancel` drops the purchase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_buys_a_bounded_pool_through_obol_mcp() {
    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;

    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let _cleanup = Cleanup(dir);
    let upstream = upstream().await;
    devnet_up(dir);
    // A public URL (its own gateway): the seller is registered, so the agent can discover it.
    let public = crate::stack_up_public(dir);
    let seller = address_of(obol_devnet::DEV_KEYS[3]);
    let out = obol_in(
        dir,
        &[
            "sell",
            "inference",
            "llm",
            "--model",
            "m1",
            "--upstream",
            &upstream,
            "--pay-to",
            &seller.to_checksum(None),
            "--chain",
            "base-sepolia",
            "--per-request",
            "0.001",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "sell inference: {}", stderr(&out));
    let out = obol_in(
        dir,
        &[
            "sell",
            "register",
            "--chain",
            "devnet",
            "--name",
            "M1 seller",
        ],
        &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[3])],
        None,
    );
    assert!(out.status.success(), "sell register: {}", stderr(&out));
    wait_ready(dir, "llm").await;

    let mut command = obol_as(
        dir,
        obol_devnet::DEV_KEYS[8],
        &[
            "mcp",
            "--listen",
            "127.0.0.1:0",
            "--max-per-call",
            "0.002",
            "--max-per-day",
            "0.01",
        ],
    );
    let (_server, url) = spawn_until(&mut command, true, "obol mcp: listening on", 4);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .expect("an MCP session");
    let call = |name: &'static str, args: serde_json::Value| {
        let params = CallToolRequestParams::new(name)
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        let client = &client;
        async move { client.call_tool(params).await.expect("a result") }
    };
    let error_of = |result: &rmcp::model::CallToolResult| {
        assert_eq!(result.is_error, Some(true), "{result:?}");
        result.structured_content.as_ref().expect("structured")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // discover → buy: the seller the agent buys from is the one the registry lists (once the
    // stack's document advertises the registered offer).
    let mut found = serde_json::Value::Null;
    for _ in 0..100 {
        let scan = call(
            "discover",
            serde_json::json!({"chain": "devnet", "fromBlock": 0, "allowPrivate": true}),
        )
        .await;
        found = scan.structured_content.expect("structured");
        if found["agents"][0].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = &found["agents"][0];
    assert_eq!(agent["name"], "M1 seller", "{found}");
    assert_eq!(agent["offers"][0]["price"], "0.001 USDC/request", "{found}");
    let endpoint = agent["offers"][0]["endpoint"]
        .as_str()
        .expect("an endpoint")
        .to_owned();
    assert_eq!(endpoint, format!("{public}/services/llm"));
    let gateway = endpoint;

    let over = call(
        "buy",
        serde_json::json!({"seller": gateway, "count": 3, "maxTotal": "0.002"}),
    )
    .await;
    assert!(error_of(&over).contains("over maxTotal 0.002"), "{over:?}");

    let bought = call(
        "buy",
        serde_json::json!({"seller": gateway, "count": 3, "maxTotal": "0.003"}),
    )
    .await;
    assert_ne!(bought.is_error, Some(true), "{bought:?}");
    let value = bought.structured_content.expect("structured");
    assert_eq!(value["model"], "paid/m1");
    assert_eq!(value["remaining"], 3);
    assert_eq!(value["price"], "0.001 USDC");

    let chat =
        serde_json::json!({"model": "paid/m1", "messages": [{"role": "user", "content": "hi"}]});
    for n in 1..=3 {
        let answer = call("call", chat.clone()).await;
        assert_ne!(answer.is_error, Some(true), "call {n}: {answer:?}");
        let value = answer.structured_content.expect("structured");
        assert_eq!(value["status"], 200);
        assert_eq!(value["receipt"]["success"], true, "call {n}: {value}");
    }
    let fourth = call("call", chat.clone()).await;
    assert!(
        error_of(&fourth).contains("pre-signed auth pool exhausted"),
        "the purchase is used up: {fourth:?}"
    );

    let dear = call(
        "refill",
        serde_json::json!({"purchase": "buy/m1", "count": 2, "maxTotal": "0.001"}),
    )
    .await;
    assert!(error_of(&dear).contains("over maxTotal 0.001"), "{dear:?}");
    let refilled = call(
        "refill",
        serde_json::json!({"purchase": "m1", "count": 2, "maxTotal": "0.002"}),
    )
    .await;
    assert_ne!(refilled.is_error, Some(true), "{refilled:?}");
    assert_eq!(
        refilled.structured_content.expect("structured")["totalSigned"],
        5
    );
    let live = call("purchases", serde_json::json!({})).await;
    let rows = &live.structured_content.expect("structured")["purchases"];
    assert_eq!(rows[0]["remaining"], 2, "{rows}");
    let again = call("call", chat).await;
    assert_ne!(again.is_error, Some(true), "a refilled call: {again:?}");

    let capped = call(
        "buy",
        serde_json::json!({"seller": gateway, "count": 8, "maxTotal": "1"}),
    )
    .await;
    assert!(
        error_of(&capped)
            .contains("0.005 USDC already spent today (UTC) and the daily cap is 0.01 USDC"),
        "{capped:?}"
    );
    let purchases = call("purchases", serde_json::json!({})).await;
    let rows = &purchases.structured_content.expect("structured")["purchases"];
    assert_eq!(rows[0]["remaining"], 1, "{rows}");
    assert_eq!(rows[0]["spent"], 4, "{rows}");

    let cancelled = call("cancel", serde_json::json!({"purchase": "buy/m1"})).await;
    assert_ne!(cancelled.is_error, Some(true), "{cancelled:?}");
    let purchases = call("purchases", serde_json::json!({})).await;
    assert_eq!(
        purchases.structured_content.expect("structured")["purchases"],
        serde_json::json!([])
    );
    let _ = client.cancel().await;
}

/// Starts `obol mcp --listen` on `dir`'s settings, paying with `key`, calls `tool` once with
/// `args` through rmcp's client, and returns the structured result (an error result panics).
pub(crate) async fn one_tool_call(
    dir: &Path,
    key: &str,
    tool: &'static str,
    args: serde_json::Value,
) -> serde_json::Value {
    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;

    let mut command = obol_as(dir, key, &["mcp", "--listen", "127.0.0.1:0"]);
    let (_server, url) = spawn_until(&mut command, true, "obol mcp: listening on", 4);
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(url))
            .await
            .expect("an MCP session");
    let params = CallToolRequestParams::new(tool)
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let result = client.call_tool(params).await.expect("a result");
    let _ = client.cancel().await;
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.expect("structured")
}

/// `obol args` on `dir`'s settings, paying with `key`.
fn obol_as(dir: &Path, key: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command
        .args(args)
        .env("OBOL_CONFIG_DIR", dir.join("config"))
        .env("OBOL_DATA_DIR", dir.join("data"))
        .env("OBOL_STATE_DIR", dir.join("state"))
        .env("OBOL_PRIVATE_KEY", key);
    command
}
