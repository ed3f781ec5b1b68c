//! The embedded stack end to end: init → up → sell http → Ready → 402 → down → up → served
//! again → delete.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{assert_contains, obol_in, stderr, stdout};

pub(crate) use obol_testkit::accounts::PAY_TO;

pub(crate) struct StackGuard<'a>(pub(crate) &'a Path);

impl Drop for StackGuard<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["stack", "down"], &[], None);
    }
}

/// A loopback upstream: `/health` and `/items` answer 200.
pub(crate) async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = "{\"ok\":true}";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// Runs a `sell` command that creates offer `args[2]`, and returns its `sell status --json`.
fn sold(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = obol_in(dir, args, &[], None);
    let name = args[2];
    assert!(
        stdout(&out).starts_with(&format!("serviceoffer default/{name} created")),
        "{}",
        stderr(&out)
    );
    serde_json::from_slice(&obol_in(dir, &["--json", "sell", "status", name], &[], None).stdout)
        .unwrap()
}

/// `obol sell http echo` at `price` USDC per request on base-sepolia, paid to [`PAY_TO`].
pub(crate) fn sell_echo<'a>(upstream: &'a str, price: &'a str) -> [&'a str; 12] {
    [
        "sell",
        "http",
        "echo",
        "--upstream",
        upstream,
        "--pay-to",
        PAY_TO,
        "--per-request",
        price,
        "--chain",
        "base-sepolia",
        "--no-register",
    ]
}

/// `obol sell inference NAME --model MODEL` at `price` USDC per request on base-sepolia,
/// paid to [`PAY_TO`], unregistered.
pub(crate) fn sell_llm<'a>(
    upstream: &'a str,
    name: &'a str,
    model: &'a str,
    price: &'a str,
) -> [&'a str; 14] {
    [
        "sell",
        "inference",
        name,
        "--model",
        model,
        "--upstream",
        upstream,
        "--pay-to",
        PAY_TO,
        "--chain",
        "base-sepolia",
        "--per-request",
        price,
        "--no-register",
    ]
}

/// `obol sell http NAME --from-json` with `spec` (a ServiceOffer spec), then waits until it is
/// Ready.
pub(crate) async fn sell_from_json(dir: &Path, name: &str, spec: &serde_json::Value) {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, spec.to_string()).unwrap();
    let out = obol_in(
        dir,
        &["sell", "http", name, "--from-json", file.to_str().unwrap()],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, name).await;
}

pub(crate) fn gateway(dir: &Path) -> String {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/daemon.json")).unwrap())
            .unwrap();
    format!("http://{}", state["gateway"].as_str().unwrap())
}

pub(crate) async fn wait_ready(dir: &Path) {
    wait_offer_ready(dir, "echo").await;
}

/// Waits until the offer `name` is Ready.
pub(crate) async fn wait_offer_ready(dir: &Path, name: &str) {
    wait_offer(dir, name, "Ready").await;
}

/// Waits until the offer `name`'s condition `type_` is True.
pub(crate) async fn wait_offer(dir: &Path, name: &str, type_: &str) {
    for _ in 0..500 {
        let out = obol_in(dir, &["--json", "sell", "status", name], &[], None);
        if out.status.success() {
            let offer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ready = offer["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == type_ && c["status"] == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the offer's {type_} never became True");
}

/// The status code of a GET, or 0 when nothing answers.
async fn status_of(url: &str) -> u16 {
    fetch(url).await.0
}

/// Status and body of a GET over a bare HTTP/1.1 exchange (status 0 when nothing answers).
pub(crate) async fn fetch(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let without_scheme = url.trim_start_matches("http://");
    let (host, path) = without_scheme
        .split_once('/')
        .map_or((without_scheme, "/".to_owned()), |(h, p)| {
            (h, format!("/{p}"))
        });
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn stack_up_sell_restart_delete() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;

    let out = obol_in(dir, &["sell", "list"], &[], None);
    assert_eq!(
        stderr(&out),
        "error: the stack is not running; start it with `obol stack up`\n"
    );

    crate::stack_init(dir, "127.0.0.1:0", &["--stack-id", "e2e"]);
    let out = obol_in(dir, &["stack", "up"], &[], None);
    let _guard = StackGuard(dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("stack e2e started in "),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("no public URL is set"),
        "the warning about remote buyers"
    );
    assert!(
        stdout(&out).contains(
            "facilitator: http://127.0.0.1:9 (default) for eip155:1, eip155:8453, eip155:84532"
        ),
        "no facilitator set: the default, for its chains: {}",
        stdout(&out)
    );
    let again = obol_in(dir, &["stack", "up"], &[], None);
    assert!(
        stdout(&again).starts_with("stack e2e already running"),
        "idempotent"
    );

    let sell = sell_echo(&upstream, "0.001");
    let out = obol_in(dir, &sell, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("serviceoffer default/echo created"),
        "{}",
        stdout(&out)
    );
    let out = obol_in(dir, &sell, &[], None);
    assert!(
        stdout(&out).starts_with("serviceoffer default/echo updated"),
        "re-applying reports updated"
    );

    wait_ready(dir).await;
    let gateway_url = gateway(dir);
    assert_eq!(
        status_of(&format!("{gateway_url}/services/echo/items")).await,
        402
    );
    let list = stdout(&obol_in(dir, &["sell", "list"], &[], None));
    assert!(
        list.contains("default/echo  http  0.001 USDC/request  base-sepolia  True"),
        "{list}"
    );

    // Down and up: the offer comes back and is served again.
    let out = obol_in(dir, &["stack", "down"], &[], None);
    assert!(
        stdout(&out).starts_with("stack stopped"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        status_of(&format!("{gateway_url}/services/echo/items")).await,
        0,
        "nothing listens"
    );
    let started = Instant::now();
    let out = obol_in(dir, &["stack", "up"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let gateway_url = gateway(dir);
    let mut first_402 = None;
    for _ in 0..500 {
        if status_of(&format!("{gateway_url}/services/echo/items")).await == 402 {
            first_402 = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_402 = first_402.expect("the offer is served again after a restart");
    println!("stack up → first 402: {} ms", first_402.as_millis());
    assert!(first_402 < Duration::from_secs(5), "{first_402:?}");

    // Bad input is refused before it reaches the stack.
    let out = obol_in(
        dir,
        &[
            "sell",
            "http",
            "bad",
            "--upstream",
            &upstream,
            "--pay-to",
            "0x12",
            "--per-request",
            "1",
            "--chain",
            "base-sepolia",
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&stderr(&out), "spec.payment.payTo");
    let out = obol_in(dir, &["sell", "delete", "echo"], &[], None);
    assert_contains(&stderr(&out), "pass --yes");

    let out = obol_in(dir, &["sell", "delete", "echo", "--yes"], &[], None);
    assert_eq!(stdout(&out), "serviceoffer default/echo deleted\n");
    for _ in 0..200 {
        if status_of(&format!("{gateway_url}/services/echo/items")).await == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status_of(&format!("{gateway_url}/services/echo/items")).await,
        404
    );
}

#[tokio::test]
async fn the_public_url_reaches_the_402() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_init(dir, "127.0.0.1:0", &[]);
    let out = obol_in(
        dir,
        &["stack", "up", "--public-url", "https://seller.example/"],
        &[],
        None,
    );
    let _guard = StackGuard(dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stdout(&out), "public URL: https://seller.example\n");
    assert!(!stdout(&out).contains("no public URL is set"));
    let sell = sell_echo(&upstream, "0.5");
    assert!(obol_in(dir, &sell, &[], None).status.success());
    wait_ready(dir).await;
    let (status, body) = fetch(&format!("{}/services/echo/items?page=2", gateway(dir))).await;
    assert_eq!(status, 402);
    let required: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        required["resource"]["url"],
        "https://seller.example/services/echo/items?page=2"
    );
    assert_eq!(required["accepts"][0]["amount"], "500000", "0.5 USDC");

    // The storefront lists it with the public URL.
    let (status, body) = fetch(&format!("{}/api/services.json", gateway(dir))).await;
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = &catalog["services"][0];
    assert_eq!(entry["name"], "echo");
    assert_eq!(entry["endpoint"], "https://seller.example/services/echo");
    assert_eq!(entry["price"], "0.5 USDC/request");
    assert_eq!(entry["priceAtomicUnits"], "500000");
    assert_eq!(entry["caip2Network"], "eip155:84532");
    assert_eq!(entry["asset"]["eip712Domain"]["name"], "USDC");
    assert_eq!(entry["registrationPending"], false);
    let (status, skill) = fetch(&format!("{}/skill.md", gateway(dir))).await;
    assert_eq!(status, 200);
    assert!(skill.starts_with("# Obol Stack Service Catalog"), "{skill}");
    assert!(
        skill.contains(
            "| echo | http | - | 0.5 USDC/request | ready | https://seller.example/services/echo |"
        ),
        "{skill}"
    );
    // The icon the registration document and the catalog point at is served.
    for path in ["/agent-icon.png", "/obol-stack-logo.png"] {
        let icon = reqwest::get(format!("{}{path}", gateway(dir)))
            .await
            .unwrap();
        assert_eq!(icon.status(), 200);
        assert_eq!(icon.headers()["content-type"], "image/png");
        assert!(icon.bytes().await.unwrap().starts_with(b"\x89PNG\r\n"));
    }
    let (status, page) = fetch(&format!("{}/", gateway(dir))).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("curl -i -X GET &#39;https://seller.example/services/echo&#39;"),
        "copyable probe command"
    );
    let (status, openapi) = fetch(&format!("{}/openapi.json", gateway(dir))).await;
    assert_eq!(status, 200);
    assert!(openapi.contains("/services/echo/{rest}"));

    // sell test probes through the gateway.
    let out = obol_in(
        dir,
        &["sell", "test", "echo", "--path", "/items"],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("/services/echo/items: 402 — live and payment-gated\n"),
        "{}",
        stdout(&out)
    );

    // sell update changes the price; the next 402 asks for it.
    let out = obol_in(dir, &["sell", "update", "echo"], &[], None);
    assert_contains(&stderr(&out), "nothing to update");
    let out = obol_in(
        dir,
        &["sell", "update", "echo", "--per-request", "0.25"],
        &[],
        None,
    );
    assert!(
        stdout(&out).starts_with("serviceoffer default/echo updated"),
        "{}",
        stdout(&out)
    );
    let mut amount = String::new();
    for _ in 0..200 {
        let (_, body) = fetch(&format!("{}/services/echo/items", gateway(dir))).await;
        amount = serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| v["accepts"][0]["amount"].to_string())
            .unwrap_or_default();
        if amount == "\"250000\"" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(amount, "\"250000\"");

    // sell inference: an OpenAI-compatible offer with a default price.
    let offer = sold(
        dir,
        &[
            "sell",
            "inference",
            "llm",
            "--model",
            "qwen3:0.6b",
            "--upstream",
            &upstream,
            "--pay-to",
            PAY_TO,
            "--chain",
            "base-sepolia",
            "--no-register",
        ],
    );
    assert_eq!(offer["spec"]["type"], "inference");
    assert_eq!(offer["spec"]["model"]["name"], "qwen3:0.6b");
    assert_eq!(offer["spec"]["payment"]["price"]["perRequest"], "0.001");

    // Defaults from `sell pricing` fill in --pay-to and --chain.
    let out = obol_in(
        dir,
        &[
            "sell",
            "pricing",
            "--pay-to",
            PAY_TO,
            "--chain",
            "base-sepolia",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let two = sold(
        dir,
        &[
            "sell",
            "http",
            "two",
            "--upstream",
            &upstream,
            "--per-request",
            "0.01",
            "--settle-first",
            "--no-register",
        ],
    );
    assert_eq!(two["spec"]["payment"]["payTo"], PAY_TO);
    assert_eq!(two["spec"]["payment"]["network"], "base-sepolia");
    assert_eq!(two["spec"]["payment"]["settle"], "settleFirst");

    // A whole spec from JSON.
    let spec_file = dir.join("three.json");
    std::fs::write(
        &spec_file,
        serde_json::json!({"spec": {
            "upstream": {"url": upstream, "healthPath": "/health"},
            "payment": {"network": "eip155:84532", "payTo": PAY_TO, "price": {"perHour": "1.2"}}
        }})
        .to_string(),
    )
    .unwrap();
    let out = obol_in(
        dir,
        &[
            "sell",
            "http",
            "three",
            "--from-json",
            spec_file.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(
        stdout(&out).starts_with("serviceoffer default/three created"),
        "{}",
        stderr(&out)
    );
    for _ in 0..200 {
        if status_of(&format!("{}/services/three/x", gateway(dir))).await == 402 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, body) = fetch(&format!("{}/services/three/x", gateway(dir))).await;
    let required: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        required["accepts"][0]["amount"], "100000",
        "1.2 USDC/hour = 0.1 USDC per 5-minute request"
    );

    // Declared routes: a free one for reads, a paid one with its own price, nothing else.
    let four = sold(
        dir,
        &[
            "sell",
            "http",
            "four",
            "--upstream",
            &upstream,
            "--per-request",
            "0.01",
            "--no-register",
            "--route",
            "path=/*,methods=GET,gate=free,summary=Reads, free",
            "--route",
            "path=/items,methods=POST,price=0.05",
            "--payment",
            "token=OBOL,price=0.5",
            "--max-in-flight",
            "8",
            "--rps",
            "50",
        ],
    );
    assert_eq!(
        four["spec"]["routes"],
        serde_json::json!([
            {"path": "/*", "methods": ["GET"], "gate": "free", "summary": "Reads, free"},
            {"path": "/items", "methods": ["POST"], "price": "0.05"}
        ])
    );
    assert_eq!(four["spec"]["payments"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        four["spec"]["limits"],
        serde_json::json!({"maxInFlight": 8, "rps": 50})
    );
    let items = format!("{}/services/four/items", gateway(dir));
    for _ in 0..200 {
        if status_of(&items).await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status_of(&items).await, 200, "GET is free");
    let client = reqwest::Client::new();
    let post = client.post(&items).send().await.unwrap();
    assert_eq!(post.status(), 402);
    let required: serde_json::Value = post.json().await.unwrap();
    assert_eq!(
        required["accepts"][0]["amount"], "50000",
        "the route's own price"
    );
    assert_eq!(
        required["accepts"][1]["amount"], "50000000000000000",
        "the same price in the second token (OBOL, 18 decimals)"
    );
    let put = client.put(&items).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, HEAD, POST");
    let out = obol_in(
        dir,
        &[
            "sell",
            "http",
            "five",
            "--upstream",
            &upstream,
            "--per-request",
            "0.01",
            "--no-register",
            "--route",
            "path=/auth/x",
        ],
        &[],
        None,
    );
    assert!(!out.status.success());
    assert_contains(
        &stderr(&out),
        "spec.routes[0].path: /auth below an offer is reserved for sign-in",
    );

    // sell stop: drained at once, no longer served.
    let out = obol_in(dir, &["sell", "stop", "three"], &[], None);
    assert!(
        stdout(&out).starts_with("serviceoffer default/three stopped"),
        "{}",
        stderr(&out)
    );
    for _ in 0..200 {
        if status_of(&format!("{}/services/three/x", gateway(dir))).await == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        status_of(&format!("{}/services/three/x", gateway(dir))).await,
        404
    );
    // The route table can drop it (any reconcile republishes it) a moment before this offer's
    // own reconcile writes Drained: wait for that.
    let ready_reason = || {
        let three: serde_json::Value = serde_json::from_slice(
            &obol_in(dir, &["--json", "sell", "status", "three"], &[], None).stdout,
        )
        .unwrap();
        three["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .map(|c| c["reason"].clone())
    };
    for _ in 0..200 {
        if ready_reason() == Some(serde_json::json!("Drained")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready_reason(), Some(serde_json::json!("Drained")));
}

/// Stops the stack, then the devnet, when the test ends.
pub(crate) struct DevnetStackGuard<'a>(pub(crate) &'a Path);

impl<'a> DevnetStackGuard<'a> {
    /// `obol devnet up` in `dir`; the stack and the devnet stop when the guard drops.
    pub(crate) fn up(dir: &'a Path) -> Self {
        let out = obol_in(dir, &["devnet", "up"], &[], None);
        let guard = Self(dir);
        assert!(out.status.success(), "devnet up: {}", stderr(&out));
        guard
    }
}

impl Drop for DevnetStackGuard<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["stack", "down"], &[], None);
        obol_in(self.0, &["devnet", "down"], &[], None);
    }
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_through_a_stack_settling_on_the_devnet() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let out = obol_in(dir, &["devnet", "up"], &[], None);
    let _guard = DevnetStackGuard(dir);
    assert!(out.status.success(), "{}", stderr(&out));
    crate::stack_up(dir, None, true);
    let sell = sell_echo(&upstream, "0.001");
    assert!(obol_in(dir, &sell, &[], None).status.success());
    wait_ready(dir).await;
    let url = format!("{}/services/echo/items", gateway(dir));
    let buyer_key = [("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[1])];
    let buy = |args: &[&str]| obol_in(dir, args, &buyer_key, None);
    let refused = |args: &[&str], reason: &str| {
        let out = buy(args);
        assert_eq!(out.status.code(), Some(1));
        assert_contains(&stderr(&out), reason);
    };

    // Probe: what the seller asks, human and JSON.
    let out = obol_in(dir, &["buy", "probe", &url], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_output_snapshot!("probe", stdout(&out), &url => "URL");
    let out = obol_in(dir, &["--json", "buy", "probe", &url], &[], None);
    let probed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        probed["accepts"].as_array().unwrap().len(),
        1,
        "CAIP-2 and legacy folded"
    );
    assert_eq!(
        probed["accepts"][0]["requirement"]["network"],
        "eip155:84532"
    );
    assert_eq!(probed["accepts"][0]["requirement"]["amount"], "1000");

    // A budget in another token: refused, nothing signed.
    refused(
        &["buy", "pay", &url, "--max-amount", "1", "--token", "OBOL"],
        "0.001 USDC on base-sepolia: not OBOL",
    );

    // Over budget: refused before anything is signed.
    refused(
        &["buy", "pay", &url, "--max-amount", "0.0005"],
        "0.001 USDC on base-sepolia exceeds --max-amount 0.0005",
    );

    let out = buy(&["buy", "pay", &url, "--max-amount", "0.01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    assert!(
        stderr(&out).starts_with(&format!(
            "paid 0.001 USDC on base-sepolia to {PAY_TO} — transaction 0x"
        )),
        "{}",
        stderr(&out)
    );

    let out = buy(&["--json", "buy", "pay", &url, "--max-amount", "0.01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], 200);
    assert_eq!(report["receipt"]["success"], true);
    assert_eq!(report["payment"]["price"], "0.001 USDC");
    assert_eq!(report["body"], "{\"ok\":true}");

    // A free URL: nothing is paid.
    let out = buy(&[
        "buy",
        "pay",
        &format!("{}/healthz", gateway(dir)),
        "--max-amount",
        "0.01",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("not payment gated: 200"),
        "{}",
        stderr(&out)
    );

    // Registration flags land in the spec, with the original's defaults.
    let out = obol_in(
        dir,
        &[
            "sell",
            "http",
            "reg",
            "--upstream",
            &upstream,
            "--pay-to",
            PAY_TO,
            "--per-request",
            "0.001",
            "--chain",
            "base-sepolia",
            "--register-skills",
            "nlp,search",
            "--register-metadata",
            "tier=gold",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reg: serde_json::Value = serde_json::from_slice(
        &obol_in(dir, &["--json", "sell", "status", "reg"], &[], None).stdout,
    )
    .unwrap();
    let registration = &reg["spec"]["registration"];
    assert_eq!(registration["enabled"], true);
    assert_eq!(registration["name"], "reg");
    assert_eq!(registration["description"], "Obol Stack service reg");
    assert_eq!(registration["skills"], serde_json::json!(["nlp", "search"]));
    assert_eq!(registration["metadata"]["tier"], "gold");
}

#[test]
fn no_register_conflicts_with_register_flags() {
    let out = crate::obol(
        &[
            "sell",
            "http",
            "x",
            "--upstream",
            "http://127.0.0.1:9",
            "--per-request",
            "0.001",
            "--no-register",
            "--register-name",
            "X",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_contains(&stderr(&out), "cannot be used with");
    let out = crate::obol(
        &[
            "sell",
            "http",
            "x",
            "--upstream",
            "http://127.0.0.1:9",
            "--per-request",
            "0.001",
            "--pay-to",
            PAY_TO,
            "--register-metadata",
            "novalue",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&stderr(&out), "is not KEY=VALUE");
}
