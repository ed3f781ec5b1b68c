//! Interop with the official x402 SDKs, installed from PyPI and npm by `scripts/install-tools`
//! (pins in `tests/interop/`):
//!
//! - a Python client on the PyPI `x402` package pays our gateway (`obol stack up` with the
//!   embedded facilitator on the devnet, selling an HTTP upstream);
//! - `obol buy pay` pays an `@x402/express` seller whose facilitator is `obol facilitator serve`;
//!   then `obol buy inference` buys a pool from that seller given only its URL and spends it
//!   through this machine's buyer proxy (the original's buy-external flow).
//!
//! Each pays once in USDC (EIP-3009) and once in OBOL through Permit2. Every payment settles on
//! the devnet: the transaction the SDK or `obol` reports is mined and succeeded, and the seller's
//! and buyer's token balances move by exactly the price. Under CI (`CI=true`) a missing SDK
//! fails the test; elsewhere the test says why it skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use obol_chain::ChainClient;
use obol_x402::LocalSigner;
use obol_x402::primitives::{Address, U256};

use crate::stack::{gateway, upstream};
use crate::{assert_contains, obol_in, stderr, stdout};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// An SDK installed by `scripts/install-tools`: `$var` when set, else `<tools>/<relative>` (the
/// tools directory is `$OBOL_TOOLS_DIR` or the repository's `.tools`). `None`, with the reason
/// printed, when it is missing outside CI; a failure under CI.
fn sdk(var: &str, relative: &str, what: &str) -> Option<PathBuf> {
    let tools = std::env::var_os("OBOL_TOOLS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| repo().join(".tools"), PathBuf::from);
    let path = std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map_or_else(|| tools.join(relative), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    let reason = format!(
        "{what} is not installed: {} does not exist (from ${var}, else the tools directory); `scripts/install-tools` installs it from the pins in tests/interop/",
        path.display()
    );
    assert!(!in_ci(), "CI=true and {reason}");
    println!("skipping: {reason}");
    None
}

/// The npm SDKs' `node_modules` ([`sdk`]).
pub(crate) fn node_sdk() -> Option<PathBuf> {
    sdk(
        "OBOL_INTEROP_NODE_PATH",
        "interop/node/node_modules",
        "the x402 npm SDK (`@x402/express`, `@x402/extensions`)",
    )
}

/// The Python venv's interpreter (the x402 SDK, openapi-spec-validator) ([`sdk`]).
pub(crate) fn python_sdk() -> Option<PathBuf> {
    sdk(
        "OBOL_INTEROP_PYTHON",
        "interop/py/bin/python",
        "the x402 Python SDK",
    )
}

/// Stops the stack (if any), then the devnet, when the test ends.
pub(crate) struct Cleanup<'a>(pub(crate) &'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["stack", "down"], &[], None);
        obol_in(self.0, &["devnet", "down"], &[], None);
    }
}

/// A child process killed when the test ends.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` and waits for the line (on stderr or stdout) starting with `prefix`; returns
/// the process and that line's `word`th word.
pub(crate) fn spawn_until(
    command: &mut Command,
    on_stderr: bool,
    prefix: &str,
    word: usize,
) -> (Killed, String) {
    let mut child = if on_stderr {
        command.stdout(Stdio::null()).stderr(Stdio::piped())
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit())
    }
    .spawn()
    .expect("the process starts");
    let lines: Box<dyn BufRead + Send> = if on_stderr {
        Box::new(BufReader::new(child.stderr.take().expect("piped stderr")))
    } else {
        Box::new(BufReader::new(child.stdout.take().expect("piped stdout")))
    };
    let mut child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut lines = lines.lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if line.starts_with(&wanted) {
                let _ = tx.send(Ok(line));
                // Keep draining so the child never blocks on a full pipe; what it says shows
                // in the test's output.
                for line in lines {
                    eprintln!("{line}");
                }
                return;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(line)) => line,
        Ok(Err(output)) => {
            let status = child.0.wait().ok();
            panic!("the process exited ({status:?}) before printing {prefix:?}:\n{output}")
        }
        Err(_) => panic!("no {prefix:?} line within 30 s"),
    };
    let word = line
        .split_whitespace()
        .nth(word)
        .unwrap_or_else(|| panic!("no word {word} in {line:?}"))
        .to_owned();
    (child, word)
}

/// `obol devnet up` in `dir`; returns the JSON-RPC endpoint.
pub(crate) fn devnet_up(dir: &Path) -> String {
    let out = obol_in(dir, &["devnet", "up"], &[], None);
    assert!(out.status.success(), "devnet up: {}", stderr(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&obol_in(dir, &["--json", "devnet", "status"], &[], None).stdout)
            .expect("devnet status is JSON");
    status["endpoint"]
        .as_str()
        .expect("the devnet's endpoint")
        .to_owned()
}

/// `obol facilitator serve` on the devnet of `dir`, paying gas from dev account 9, on a free
/// port; returns the process and its URL.
pub(crate) fn facilitator_serve(dir: &Path) -> (Killed, String) {
    spawn_until(
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(["facilitator", "serve", "--chain", "devnet"])
            .args(["--listen", "127.0.0.1:0"])
            .env("OBOL_CONFIG_DIR", dir.join("config"))
            .env("OBOL_STATE_DIR", dir.join("state"))
            .env("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[9]),
        true,
        "facilitator listening on http://",
        3,
    )
}

/// `tests/interop/express-seller.cjs` (the official `@x402/express`) paid to `pay_to`, its
/// facilitator at `facilitator_url`, with more of its environment in `env`; the process and
/// its URL.
pub(crate) fn express_seller(
    node_path: &Path,
    facilitator_url: &str,
    pay_to: Address,
    env: &[(&str, &str)],
) -> (Killed, String) {
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/interop/express-seller.cjs"))
        .env("NODE_PATH", node_path)
        .env("FACILITATOR_URL", facilitator_url)
        .env("PAY_TO", pay_to.to_checksum(None))
        .envs(env.iter().copied());
    spawn_until(&mut command, false, "listening http://", 1)
}

/// The devnet's token ledger, read over its JSON-RPC endpoint.
pub(crate) struct Ledger {
    chain: ChainClient,
    endpoint: String,
}

impl Ledger {
    pub(crate) fn new(endpoint: &str) -> Self {
        let config = obol_config::ChainEndpoints {
            chain_id: obol_devnet::DEFAULT_CHAIN_ID,
            endpoints: vec![obol_config::Endpoint {
                url: endpoint.to_owned(),
                allow_writes: false,
            }],
        };
        Self {
            chain: ChainClient::connect("devnet", &config).expect("a devnet client"),
            endpoint: endpoint.to_owned(),
        }
    }

    async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.chain
            .token_balance(token, owner)
            .await
            .expect("balanceOf")
    }

    /// Balances of `token` for `seller` and `buyer`.
    pub(crate) async fn pair(
        &self,
        token: Address,
        seller: Address,
        buyer: Address,
    ) -> (U256, U256) {
        (
            self.balance(token, seller).await,
            self.balance(token, buyer).await,
        )
    }

    /// Asserts the seller gained exactly `price` of `token` and the buyer lost exactly that.
    pub(crate) async fn assert_moved(
        &self,
        token: Address,
        (seller, buyer): (Address, Address),
        (seller_before, buyer_before): (U256, U256),
        price: U256,
    ) {
        assert_eq!(
            self.balance(token, seller).await,
            seller_before + price,
            "the seller gained exactly {price} units of {token}"
        );
        assert_eq!(
            self.balance(token, buyer).await,
            buyer_before - price,
            "the buyer paid exactly {price} units of {token}"
        );
    }

    async fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let response = reqwest::Client::new()
            .post(&self.endpoint)
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let body: serde_json::Value = response.json().await.expect("a JSON-RPC answer");
        assert!(body["error"].is_null(), "{method}: {body}");
        body["result"].clone()
    }

    /// Asserts `tx` is mined, succeeded, and called `to` (the token for EIP-3009, the x402
    /// Permit2 proxy for Permit2).
    pub(crate) async fn assert_settled(&self, tx: &str, to: Address) {
        assert!(
            tx.len() == 66 && tx.starts_with("0x"),
            "a transaction hash: {tx:?}"
        );
        let receipt = self
            .rpc("eth_getTransactionReceipt", serde_json::json!([tx]))
            .await;
        assert_eq!(receipt["status"], "0x1", "{tx} succeeded: {receipt}");
        assert_eq!(
            receipt["to"].as_str().map(str::to_lowercase),
            Some(to.to_string().to_lowercase()),
            "{tx} calls {to}"
        );
    }
}

pub(crate) fn address_of(key: &str) -> Address {
    LocalSigner::from_private_key_hex(key)
        .expect("a dev key")
        .address()
}

pub(crate) async fn wait_ready(dir: &Path, name: &str) {
    for _ in 0..500 {
        let out = obol_in(dir, &["--json", "sell", "status", name], &[], None);
        if out.status.success() {
            let offer: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("sell status is JSON");
            let ready = offer["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the offer {name} never became Ready");
}

/// An unpaid GET: the status and whether a v2 `PAYMENT-REQUIRED` header came with it.
async fn unpaid(url: &str) -> (u16, bool) {
    let response = reqwest::get(url).await.expect("an answer");
    (
        response.status().as_u16(),
        response.headers().contains_key("payment-required"),
    )
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// One payment by `tests/interop/x402_pay.py`: its JSON report and the wall time.
fn python_pays(
    python: &Path,
    url: &str,
    key: &str,
    env: &[(&str, &str)],
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let out = Command::new(python)
        .arg(repo().join("tests/interop/x402_pay.py"))
        .arg(url)
        .env("BUYER_PRIVATE_KEY", key)
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "the Python SDK failed to pay {url}: {}",
        stderr(&out)
    );
    let report = serde_json::from_slice(&out.stdout).expect("x402_pay.py prints JSON");
    (report, took)
}

/// Checks a Python SDK report: 200 with the upstream's body, settled by `payer` on the devnet.
fn settled_tx(report: &serde_json::Value, payer: Address) -> String {
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["body"], "{\"ok\":true}", "the upstream's answer");
    let settlement = &report["paymentResponse"];
    assert_eq!(settlement["success"], true, "{report}");
    assert_eq!(settlement["network"], "eip155:84532");
    assert_eq!(
        settlement["payer"].as_str().map(str::to_lowercase),
        Some(payer.to_string().to_lowercase())
    );
    settlement["transaction"]
        .as_str()
        .expect("a transaction")
        .to_owned()
}

/// `sell http NAME` on base-sepolia at `price` in `token`, paid to `pay_to`.
pub(crate) fn sell(dir: &Path, name: &str, upstream: &str, pay_to: &str, token: &str, price: &str) {
    let args = [
        "sell",
        "http",
        name,
        "--upstream",
        upstream,
        "--pay-to",
        pay_to,
        "--token",
        token,
        "--per-request",
        price,
        "--chain",
        "base-sepolia",
        "--no-register",
    ];
    let out = obol_in(dir, &args, &[], None);
    assert!(out.status.success(), "sell http {name}: {}", stderr(&out));
}

/// (a) The PyPI `x402` SDK's httpx client pays our gateway; the embedded facilitator settles on
/// the devnet. Once with USDC (EIP-3009) exactly as the SDK comes, once with OBOL through
/// Permit2, which the SDK pays with an EIP-2612 permit under our `eip2612GasSponsoring`
/// extension (it opts the token in through its spend controls and reads allowances over RPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_x402_sdk_pays_our_gateway() {
    let Some(python) = python_sdk() else {
        return;
    };
    let started = Instant::now();
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let upstream = upstream().await;
    let endpoint = devnet_up(dir);
    let _cleanup = Cleanup(dir);
    crate::stack_up(dir, None, true);
    let seller = address_of(obol_devnet::DEV_KEYS[3]);
    let pay_to = seller.to_checksum(None);
    sell(dir, "echo", &upstream, &pay_to, "USDC", "0.001");
    sell(dir, "permit", &upstream, &pay_to, "OBOL", "0.5");
    wait_ready(dir, "echo").await;
    wait_ready(dir, "permit").await;
    let gateway = gateway(dir);
    let usdc_url = format!("{gateway}/services/echo/items");
    let obol_url = format!("{gateway}/services/permit/items");
    assert_eq!(unpaid(&usdc_url).await, (402, true), "an x402 v2 challenge");
    assert_eq!(unpaid(&obol_url).await, (402, true), "an x402 v2 challenge");
    let setup = started.elapsed();

    let buyer_key = obol_devnet::DEV_KEYS[4];
    let buyer = address_of(buyer_key);
    let ledger = Ledger::new(&endpoint);

    // USDC, EIP-3009: the SDK as it comes.
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let (report, usdc_took) = python_pays(&python, &usdc_url, buyer_key, &[]);
    let tx = settled_tx(&report, buyer);
    ledger.assert_settled(&tx, obol_devnet::USDC).await;
    let price = U256::from(1000u64); // 0.001 USDC
    ledger
        .assert_moved(obol_devnet::USDC, (seller, buyer), before, price)
        .await;
    let usdc_sdk_ms = report["elapsedMs"].clone();

    // OBOL, Permit2 with a gas-sponsored EIP-2612 permit (the buyer never approved Permit2).
    let before = ledger.pair(obol_devnet::OBOL, seller, buyer).await;
    let obol_token = obol_devnet::OBOL.to_checksum(None);
    let env = [
        ("ALLOW_ASSET", obol_token.as_str()),
        ("RPC_URL", endpoint.as_str()),
    ];
    let (report, permit2_took) = python_pays(&python, &obol_url, buyer_key, &env);
    let tx = settled_tx(&report, buyer);
    ledger
        .assert_settled(&tx, obol_x402::token::EXACT_PERMIT2_PROXY)
        .await;
    let price = U256::from(5u64) * U256::from(10u64).pow(U256::from(17u64)); // 0.5 OBOL
    ledger
        .assert_moved(obol_devnet::OBOL, (seller, buyer), before, price)
        .await;

    println!(
        "interop (a) Python x402 SDK → our gateway: setup {} ms (devnet, stack, 2 offers Ready); USDC/EIP-3009 payment {} ms in the SDK (402 → sign → settle → 200), {} ms with interpreter start; OBOL/Permit2+EIP-2612 payment {} ms in the SDK, {} ms with interpreter start; total {} ms",
        ms(setup),
        usdc_sdk_ms,
        ms(usdc_took),
        report["elapsedMs"],
        ms(permit2_took),
        ms(started.elapsed())
    );
}

/// (b) `obol buy pay` pays an `@x402/express` seller whose facilitator is
/// `obol facilitator serve` on the devnet: USDC (EIP-3009, the SDK's default asset) and OBOL
/// through Permit2 (`obol buy pay` sends the one-time Permit2 approval itself).
#[tokio::test]
async fn obol_buy_pays_an_x402_express_seller() {
    let Some(node_path) = node_sdk() else {
        return;
    };
    let started = Instant::now();
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let endpoint = devnet_up(dir);
    let _cleanup = Cleanup(dir);

    let (_facilitator, facilitator_url) = facilitator_serve(dir);

    let seller = address_of(obol_devnet::DEV_KEYS[5]);
    let (_seller_process, seller_url) = express_seller(
        &node_path,
        &facilitator_url,
        seller,
        &[
            ("PERMIT2_ASSET", &obol_devnet::OBOL.to_checksum(None)),
            ("PERMIT2_AMOUNT", "500000000000000000"),
            ("PERMIT2_NAME", "Obol Network"),
            ("PERMIT2_VERSION", "1"),
        ],
    );
    let usdc_url = format!("{seller_url}/paid");
    let obol_url = format!("{seller_url}/paid-permit2");
    assert_eq!(unpaid(&usdc_url).await, (402, true), "an x402 v2 challenge");
    assert_eq!(unpaid(&obol_url).await, (402, true), "an x402 v2 challenge");
    let setup = started.elapsed();

    let buyer_key = obol_devnet::DEV_KEYS[6];
    let buyer = address_of(buyer_key);
    let ledger = Ledger::new(&endpoint);
    let buy = |args: &[&str]| obol_in(dir, args, &[("OBOL_PRIVATE_KEY", buyer_key)], None);
    let paid_to = |out: &std::process::Output, price: &str| -> String {
        let said = stderr(out);
        let expected = format!(
            "paid {price} on base-sepolia to {} — transaction 0x",
            seller.to_checksum(None)
        );
        let line = said
            .lines()
            .find(|l| l.starts_with(&expected))
            .unwrap_or_else(|| panic!("no {expected:?} in {said}"));
        line.split_whitespace()
            .find(|w| w.starts_with("0x") && w.len() == 66)
            .expect("the transaction hash")
            .to_owned()
    };

    // USDC, EIP-3009. Over budget first: refused before anything is signed.
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let out = buy(&["buy", "pay", &usdc_url, "--max-amount", "0.0005"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "0.001 USDC on base-sepolia exceeds --max-amount 0.0005",
    );
    let paying = Instant::now();
    let out = buy(&["buy", "pay", &usdc_url, "--max-amount", "0.01"]);
    let usdc_took = paying.elapsed();
    assert!(out.status.success(), "obol buy pay: {}", stderr(&out));
    assert_eq!(stdout(&out), r#"{"sdk":"@x402/express","paid":true}"#);
    let tx = paid_to(&out, "0.001 USDC");
    ledger.assert_settled(&tx, obol_devnet::USDC).await;
    ledger
        .assert_moved(
            obol_devnet::USDC,
            (seller, buyer),
            before,
            U256::from(1000u64),
        )
        .await;

    // OBOL through Permit2: `obol buy pay` first approves Permit2 (once), then signs.
    let before = ledger.pair(obol_devnet::OBOL, seller, buyer).await;
    let paying = Instant::now();
    let out = buy(&[
        "buy",
        "pay",
        &obol_url,
        "--max-amount",
        "1",
        "--token",
        "OBOL",
        "--yes",
    ]);
    let permit2_took = paying.elapsed();
    assert!(out.status.success(), "obol buy pay: {}", stderr(&out));
    assert_contains(&stderr(&out), "approved Permit2 for OBOL: transaction 0x");
    assert_eq!(stdout(&out), r#"{"sdk":"@x402/express","paid":"permit2"}"#);
    let tx = paid_to(&out, "0.5 OBOL");
    ledger
        .assert_settled(&tx, obol_x402::token::EXACT_PERMIT2_PROXY)
        .await;
    let price = U256::from(5u64) * U256::from(10u64).pow(U256::from(17u64));
    ledger
        .assert_moved(obol_devnet::OBOL, (seller, buyer), before, price)
        .await;

    // buy-external: a pool bought from the external seller given only its URL, spent through
    // this machine's own buyer proxy (a stack with no facilitator: it only buys).
    let external = Instant::now();
    crate::stack_up(dir, None, false);
    let _stack = StackDown(dir);
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let chat_url = format!("{seller_url}/v1/chat/completions");
    let out = buy(&[
        "--json",
        "buy",
        "inference",
        &chat_url,
        "--model",
        "external-model",
        "--count",
        "2",
        "--yes",
    ]);
    assert!(out.status.success(), "obol buy inference: {}", stderr(&out));
    let bought: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(bought["publicModel"], "paid/external-model");
    assert_eq!(bought["remaining"], 2);
    let proxy = bought["buyerUrl"]
        .as_str()
        .expect("the buyer proxy")
        .to_owned();
    let ask = || async {
        let response = reqwest::Client::new()
            .post(format!("{proxy}/chat/completions"))
            .json(&serde_json::json!({"model": "paid/external-model", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("the buyer proxy answers");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("JSON");
        (status, body)
    };
    for _ in 0..2 {
        let (status, body) = ask().await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], "external-model", "paid/ stripped");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "paid answer from @x402/express"
        );
    }
    let (status, body) = ask().await;
    assert_eq!(status, 402, "{body}");
    ledger
        .assert_moved(
            obol_devnet::USDC,
            (seller, buyer),
            before,
            U256::from(2000u64),
        )
        .await;
    let external_took = external.elapsed();

    println!(
        "interop (b) obol buy pay → @x402/express + obol facilitator: setup {} ms (devnet, facilitator, node seller); USDC/EIP-3009 payment {} ms, OBOL/Permit2 payment {} ms (`obol buy pay`: 402 → sign → verify → settle → 200); buy-external (stack up, buy inference of 2, 2 paid calls through the buyer proxy, exhaustion) {} ms; total {} ms",
        ms(setup),
        ms(usdc_took),
        ms(permit2_took),
        ms(external_took),
        ms(started.elapsed())
    );
}

/// Stops the stack in `dir` when dropped.
struct StackDown<'a>(&'a Path);

impl Drop for StackDown<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["stack", "down"], &[], None);
    }
}
