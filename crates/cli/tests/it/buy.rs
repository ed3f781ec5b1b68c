//! `obol buy inference|list|status|refill|cancel` against a stack selling on the devnet: the
//! buyer signs here, the stack's own buyer proxy spends, the embedded facilitator settles. And
//! `obol buy pay|probe` against scripted sellers: redirects, pending settlements.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};

use crate::stack::{DevnetStackGuard, PAY_TO, gateway, upstream, wait_offer_ready};
use crate::{assert_contains, balance, json_of, obol_in, start_stack, stderr};

pub(crate) const MODEL: &str = "qwen3:0.6b";
const BUYER_KEY: &str = obol_devnet::DEV_KEYS[1];

fn usdc(dir: &Path, key: &str) -> u128 {
    balance(dir, "devnet", key, "USDC")
}

pub(crate) fn buyer_url(dir: &Path) -> String {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/daemon.json")).unwrap())
            .unwrap();
    format!("http://{}", state["buyer"].as_str().unwrap())
}

/// One chat call through the stack's buyer proxy: status and body.
pub(crate) async fn chat(dir: &Path) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", buyer_url(dir)))
        .json(&json!({"model": format!("paid/{MODEL}"), "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn remaining_and_spent(dir: &Path) -> (u64, u64) {
    let list = json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None));
    let row = &list.as_array().unwrap()[0];
    (
        row["remaining"].as_u64().unwrap(),
        row["spent"].as_u64().unwrap(),
    )
}

/// A devnet and a stack (embedded facilitator, fixed gateway port) selling `llm` for `price`
/// `token` per call; stopped when the guard drops.
pub(crate) async fn selling_stack<'a>(
    dir: &'a Path,
    upstream: &str,
    token: &str,
    price: &str,
) -> DevnetStackGuard<'a> {
    let out = obol_in(dir, &["devnet", "up"], &[], None);
    let guard = DevnetStackGuard(dir);
    assert!(out.status.success(), "{}", stderr(&out));
    // The seller's address must survive restarts: a fixed port.
    let gateway_listen = format!("127.0.0.1:{}", obol_testkit::http::free_port());
    crate::stack_up(dir, Some(&gateway_listen), true);
    let sell = [
        "sell",
        "inference",
        "llm",
        "--model",
        MODEL,
        "--upstream",
        upstream,
        "--pay-to",
        PAY_TO,
        "--chain",
        "base-sepolia",
        "--token",
        token,
        "--per-request",
        price,
        "--no-register",
    ];
    let out = obol_in(dir, &sell, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, "llm").await;
    guard
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
/// Runs `obol args` as the buyer twice at once; both runs must succeed.
fn twice_at_once(dir: &Path, args: &[&str]) {
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| obol_in(dir, args, &[("OBOL_PRIVATE_KEY", BUYER_KEY)], None)))
            .collect();
        for run in runs {
            let out = run.join().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_inference_pays_through_the_buyer_proxy_and_survives_a_killed_daemon() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = selling_stack(dir, &upstream, "USDC", "0.001").await;
    let seller = gateway(dir);
    let buy = |args: &[&str]| obol_in(dir, args, &[("OBOL_PRIVATE_KEY", BUYER_KEY)], None);
    let refused = |args: &[&str], reason: &str| {
        let out = buy(args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_contains(&stderr(&out), reason);
    };

    // Refused before anything is signed: no terminal and no --yes; over budget.
    refused(&["buy", "inference", &seller, "--count", "3"], "pass --yes");
    refused(
        &[
            "buy",
            "inference",
            &seller,
            "--count",
            "3",
            "--budget",
            "0.002",
            "--yes",
        ],
        "3 calls at 0.001 USDC cost 0.003 USDC, over --budget 0.002",
    );
    refused(
        &["buy", "inference", &seller, "--model", "other", "--yes"],
        "the seller's catalog has no model \"other\" (it sells qwen3:0.6b)",
    );
    refused(
        &[
            "buy",
            "inference",
            &format!("{seller}/services/llm"),
            "--model",
            "other",
            "--yes",
        ],
        "serves model \"qwen3:0.6b\", not \"other\"",
    );
    assert_eq!(
        json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None)),
        json!([])
    );

    // Bought through the catalog (the stack's base URL), three calls.
    let (buyer_before, seller_before) = (usdc(dir, BUYER_KEY), usdc(dir, obol_devnet::DEV_KEYS[2]));
    let bought = json_of(&buy(&[
        "--json",
        "buy",
        "inference",
        &seller,
        "--count",
        "3",
        "--yes",
    ]));
    assert_eq!(bought["status"], "bought");
    assert_eq!(bought["name"], "qwen3-0-6b");
    assert_eq!(bought["namespace"], "buy");
    assert_eq!(bought["publicModel"], format!("paid/{MODEL}"));
    assert_eq!(bought["endpoint"], format!("{seller}/services/llm"));
    assert_eq!(bought["price"], "0.001 USDC");
    assert_eq!(bought["remaining"], 3);
    assert_eq!(bought["buyerUrl"], format!("{}/v1", buyer_url(dir)));

    let (status, body) = chat(dir).await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert_eq!(remaining_and_spent(dir), (2, 1));
    let table = crate::stdout(&obol_in(dir, &["buy", "list"], &[], None));
    assert!(
        table.contains(&format!("{:>9} {:>6} {:<5}", 2, 1, "true")),
        "{table}"
    );

    // The daemon dies without warning between calls; after a restart nothing is reused.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/daemon.json")).unwrap())
            .unwrap();
    let pid = state["pid"].as_u64().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..200 {
        if obol_in(dir, &["--json", "stack", "status"], &[], None)
            .status
            .code()
            != Some(0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    start_stack(dir);
    assert_eq!(remaining_and_spent(dir), (2, 1), "counts survive the crash");
    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    let (status, body) = chat(dir).await;
    assert_eq!(status, 402);
    assert!(
        obol_testkit::json::error_message(&body).starts_with("pre-signed auth pool exhausted"),
        "{body}"
    );
    assert_eq!(
        usdc(dir, BUYER_KEY),
        buyer_before - 3000,
        "exactly three paid"
    );
    assert_eq!(usdc(dir, obol_devnet::DEV_KEYS[2]), seller_before + 3000);

    // Refill two; status shows the terms and counts.
    let refilled = json_of(&buy(&[
        "--json",
        "buy",
        "refill",
        "qwen3-0-6b",
        "--count",
        "2",
        "--yes",
    ]));
    assert_eq!(refilled["status"], "refilled");
    assert_eq!(refilled["remaining"], 2);
    assert_eq!(chat(dir).await.0, 200);
    let status = json_of(&obol_in(
        dir,
        &["--json", "buy", "status", "qwen3-0-6b"],
        &[],
        None,
    ));
    assert_eq!(status["status"]["remaining"], 1);
    assert_eq!(status["status"]["spent"], 4);
    assert_eq!(status["status"]["totalSigned"], 5);
    assert_eq!(
        status["status"]["totalSpent"], "0.004 USDC",
        "4 calls at 0.001"
    );
    let balance = status["status"]["walletBalance"]
        .as_str()
        .unwrap_or_default();
    assert!(
        balance.ends_with(" USDC")
            && balance
                .split(' ')
                .next()
                .unwrap_or("")
                .parse::<f64>()
                .is_ok(),
        "the buyer's USDC balance, read on the devnet: {status}"
    );
    assert_eq!(status["spec"]["preSignedAuths"], Value::Null, "not dumped");

    // A second buy of the same model tops the purchase up.
    let topped = json_of(&buy(&[
        "--json",
        "buy",
        "inference",
        &seller,
        "--model",
        MODEL,
        "--count",
        "1",
        "--yes",
    ]));
    assert_eq!(topped["remaining"], 2);
    // Under another name it would conflict: refused before anything is signed.
    refused(
        &[
            "buy",
            "inference",
            &seller,
            "--model",
            MODEL,
            "--name",
            "other",
            "--count",
            "1",
            "--yes",
        ],
        "paid/qwen3:0.6b is already bought by purchase buy/qwen3-0-6b",
    );

    // Two refills at once: both batches land (the loser of the race re-reads and appends).
    twice_at_once(
        dir,
        &["buy", "refill", "qwen3-0-6b", "--count", "2", "--yes"],
    );
    let status = json_of(&obol_in(
        dir,
        &["--json", "buy", "status", "qwen3-0-6b"],
        &[],
        None,
    ));
    assert_eq!(status["status"]["remaining"], 6, "2 + 2 + 2");

    // Cancelled: the proxy no longer knows the model.
    let cancelled = json_of(&obol_in(
        dir,
        &["--json", "buy", "cancel", "qwen3-0-6b", "--yes"],
        &[],
        None,
    ));
    insta::assert_json_snapshot!("cancelled", cancelled);
    let (status, body) = chat(dir).await;
    assert_eq!(status, 404);
    assert!(
        obol_testkit::json::error_message(&body).starts_with("no purchased upstream mapped"),
        "{body}"
    );
    assert_eq!(
        usdc(dir, BUYER_KEY),
        buyer_before - 4000,
        "four calls paid in all"
    );

    // Two first buys of the same new purchase at once: one creates it, the other adds its
    // batch to it; nothing is lost.
    twice_at_once(
        dir,
        &[
            "buy",
            "inference",
            &seller,
            "--name",
            "twice",
            "--count",
            "2",
            "--yes",
        ],
    );
    let status = json_of(&obol_in(
        dir,
        &["--json", "buy", "status", "twice"],
        &[],
        None,
    ));
    assert_eq!(status["status"]["remaining"], 4, "2 + 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_in_a_permit2_token_approves_permit2_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = selling_stack(dir, &upstream, "OBOL", "0.5").await;
    let seller = gateway(dir);
    let buyer_key = obol_devnet::DEV_KEYS[3];
    let buy = |count: &str| {
        obol_in(
            dir,
            &[
                "buy",
                "inference",
                &seller,
                "--token",
                "OBOL",
                "--count",
                count,
                "--yes",
            ],
            &[("OBOL_PRIVATE_KEY", buyer_key)],
            None,
        )
    };
    let (buyer_before, seller_before) = (
        balance(dir, "devnet", buyer_key, "OBOL"),
        balance(dir, "devnet", obol_devnet::DEV_KEYS[2], "OBOL"),
    );

    let out = buy("2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), "approved Permit2 for OBOL: transaction 0x");
    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    let half = 5 * 10u128.pow(17);
    assert_eq!(
        balance(dir, "devnet", buyer_key, "OBOL"),
        buyer_before - 2 * half
    );
    assert_eq!(
        balance(dir, "devnet", obol_devnet::DEV_KEYS[2], "OBOL"),
        seller_before + 2 * half
    );

    // The allowance is there now: a top-up signs only.
    let out = buy("1");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Permit2"), "{}", stderr(&out));
    assert_eq!(chat(dir).await.0, 200);
    assert_eq!(
        balance(dir, "devnet", buyer_key, "OBOL"),
        buyer_before - 3 * half
    );
}

/// What a scripted seller received: each request's payment header (`None` when unpaid).
type Payments = Arc<Mutex<Vec<Option<String>>>>;

/// How a scripted seller answers a paid request, given how many times this same payment has
/// arrived (1 the first time). Unpaid requests get the 402 of [`challenge`].
type Script = Arc<dyn Fn(usize) -> Response + Send + Sync>;

/// A loopback seller answering every path: 402 unpaid, then `script`; what it received.
async fn scripted_seller(unpaid: Script, paid: Script) -> (String, Payments) {
    let payments: Payments = Arc::default();
    let seen = payments.clone();
    let router = Router::new().fallback(move |request: Request| {
        let (seen, unpaid, paid) = (seen.clone(), unpaid.clone(), paid.clone());
        async move {
            let payment = request
                .headers()
                .get("payment-signature")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut seen = seen.lock().unwrap();
            seen.push(payment.clone());
            match payment {
                None => unpaid(0),
                Some(payment) => paid(
                    seen.iter()
                        .filter(|p| p.as_deref() == Some(payment.as_str()))
                        .count(),
                ),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, payments)
}

const TX: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

/// 0.001 USDC on base-sepolia to PAY_TO.
fn challenge(_: usize) -> Response {
    let usdc = obol_x402::TokenRegistry::builtin()
        .resolve("USDC", "base-sepolia")
        .unwrap()
        .clone();
    let body = json!({
        "x402Version": 2, "error": "payment required", "resource": {"url": "http://seller.test/"},
        "accepts": [{
            "scheme": "exact", "network": "eip155:84532", "amount": "1000",
            "asset": usdc.address.to_checksum(None), "payTo": PAY_TO, "maxTimeoutSeconds": 300,
            "extra": usdc.requirement_extra()
        }]
    });
    (StatusCode::PAYMENT_REQUIRED, axum::Json(body)).into_response()
}

/// `response` with a receipt for [`TX`]: settled, or still pending.
fn with_receipt(mut response: Response, settled: bool) -> Response {
    let mut receipt = json!({"success": settled, "transaction": TX, "network": "eip155:84532"});
    if !settled {
        receipt["errorReason"] = json!("settlement_pending");
    }
    let value = obol_x402::header::encode(&receipt).unwrap();
    response
        .headers_mut()
        .insert("payment-response", value.parse().unwrap());
    response
}

/// The gateway's 503 while the settlement is pending.
fn pending(_: usize) -> Response {
    let body = json!({"error": "Payment settlement pending", "reason": "settlement_pending",
                      "retriable": true});
    let response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "0")],
        axum::Json(body),
    )
        .into_response();
    with_receipt(response, false)
}

fn pay(dir: &Path, url: &str, json: bool) -> std::process::Output {
    let mut args = vec!["buy", "pay", url, "--max-amount", "0.01", "-d", "{\"q\":1}"];
    if json {
        args.insert(0, "--json");
    }
    obol_in(dir, &args, &[("OBOL_PRIVATE_KEY", BUYER_KEY)], None)
}

/// The paid requests a seller received; fails unless they all carried the same payment.
fn one_payment(payments: &Payments) -> usize {
    let paid: Vec<String> = payments.lock().unwrap().iter().flatten().cloned().collect();
    assert!(
        paid.iter().all(|p| *p == paid[0]),
        "one signature, resent as it was"
    );
    paid.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_retries_a_pending_settlement_with_the_same_signature() {
    let root = tempfile::tempdir().unwrap();
    let (url, payments) = scripted_seller(
        Arc::new(challenge),
        Arc::new(|attempt| match attempt {
            1 | 2 => pending(attempt),
            _ => with_receipt(axum::Json(json!({"ok": true})).into_response(), true),
        }),
    )
    .await;
    let out = tokio::task::spawn_blocking(move || pay(root.path(), &url, false))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(crate::stdout(&out), "{\"ok\":true}");
    assert_contains(
        &stderr(&out),
        &format!("paid 0.001 USDC on base-sepolia to {PAY_TO} — transaction {TX}"),
    );
    assert_eq!(one_payment(&payments), 3, "sent, then retried twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_reports_a_settlement_still_pending_as_possibly_paid() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_owned();
    let (url, payments) = scripted_seller(Arc::new(challenge), Arc::new(pending)).await;
    let (human, json) =
        tokio::task::spawn_blocking(move || (pay(&dir, &url, false), pay(&dir, &url, true)))
            .await
            .unwrap();
    assert_eq!(human.status.code(), Some(1), "{}", stderr(&human));
    assert_contains(
        &stderr(&human),
        &format!("settlement pending, transaction {TX}"),
    );
    assert!(
        !stderr(&human).contains("not settled"),
        "{}",
        stderr(&human)
    );

    assert_eq!(json.status.code(), Some(1), "{}", stderr(&json));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["status"], 503);
    assert_eq!(report["pending"]["transaction"], TX, "{report}");
    assert_eq!(report["pending"]["retries"], 5, "{report}");
    assert_eq!(report["receipt"]["errorReason"], "settlement_pending");
    let body: Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["reason"], "settlement_pending",
        "the seller's answer, as it was"
    );

    // Two runs, two signatures, each sent once and retried five times.
    let paid: Vec<String> = payments.lock().unwrap().iter().flatten().cloned().collect();
    assert_eq!(paid.len(), 12);
    assert!(paid[..6].iter().all(|p| *p == paid[0]));
    assert!(paid[6..].iter().all(|p| *p == paid[6]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_pay_and_probe_never_follow_a_redirect() {
    let root = tempfile::tempdir().unwrap();
    let (elsewhere, stolen) = scripted_seller(
        Arc::new(|_| "thanks".into_response()),
        Arc::new(|_| "thanks".into_response()),
    )
    .await;
    let redirect: Script = Arc::new(move |_| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("{elsewhere}/steal"))],
        )
            .into_response()
    });
    // Before payment (the body would follow), and once paid (the signature would).
    let (before, _) = scripted_seller(redirect.clone(), redirect.clone()).await;
    let (after, payments) = scripted_seller(Arc::new(challenge), redirect).await;
    let dir = root.path().to_owned();
    let (unpaid, paid, probed) = tokio::task::spawn_blocking(move || {
        (
            pay(&dir, &before, false),
            pay(&dir, &after, true),
            obol_in(&dir, &["buy", "probe", &before], &[], None),
        )
    })
    .await
    .unwrap();
    for out in [&unpaid, &paid, &probed] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert!(
            stderr(out).contains("redirected the call to http://")
                && stderr(out).contains("/paid/steal"),
            "{}",
            stderr(out)
        );
    }
    assert_eq!(one_payment(&payments), 1);
    assert!(
        stolen.lock().unwrap().is_empty(),
        "the redirect's target received {:?}",
        stolen.lock().unwrap()
    );
}

/// autoRefill: the daemon, given the buyer's keystore by its operator (OBOL_REFILL_KEYSTORE),
/// tops a purchase up once when fewer than `--refill-below` remain, then stops at
/// `--refill-max-total`; every refill is a condition and paid calls land on the devnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_refill_tops_up_once_and_stops_at_max_total() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = selling_stack(dir, &upstream, "USDC", "0.001").await;
    let seller = gateway(dir);
    // The buyer's key as a keystore, its password in a file only the daemon reads.
    let key_file = dir.join("buyer.key");
    std::fs::write(&key_file, BUYER_KEY).unwrap();
    let password = dir.join("refill.password");
    std::fs::write(&password, "refill-pass\n").unwrap();
    let imported = obol_in(
        dir,
        &[
            "wallet",
            "import",
            "--name",
            "refill",
            "--private-key-file",
            key_file.to_str().unwrap(),
            "--password-file",
            password.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let keystore = dir.join("config/wallets/refill.json");
    assert!(keystore.exists());
    assert!(obol_in(dir, &["stack", "down"], &[], None).status.success());
    crate::start_stack_with(
        dir,
        &[
            ("OBOL_REFILL_KEYSTORE", keystore.to_str().unwrap()),
            ("OBOL_REFILL_PASSWORD_FILE", password.to_str().unwrap()),
            ("OBOL_REFILL_INTERVAL", "0.2"),
        ],
    );
    wait_offer_ready(dir, "llm").await;

    let bought = obol_in(
        dir,
        &[
            "buy",
            "inference",
            &seller,
            "--count",
            "3",
            "--yes",
            "--refill-below",
            "2",
            "--refill-count",
            "2",
            "--refill-max-total",
            "5",
            "--refill-max-per-day",
            "0.01",
        ],
        &[("OBOL_PRIVATE_KEY", BUYER_KEY)],
        None,
    );
    assert!(bought.status.success(), "{}", stderr(&bought));
    let status = |dir: &Path| {
        json_of(&obol_in(
            dir,
            &["--json", "buy", "status", "qwen3-0-6b"],
            &[],
            None,
        ))
    };
    let refill_condition = |status: &Value| {
        status["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "AutoRefill").cloned())
            .unwrap_or(Value::Null)
    };
    // The refill's reason, with the counts of the generation it made (a refill adds to the
    // spec: until that generation is observed, the counts are the previous one's).
    let wait_for = |reason: &'static str| async move {
        for _ in 0..150 {
            let now = status(dir);
            let observed = now["status"]["observedGeneration"] == now["metadata"]["generation"];
            if refill_condition(&now)["reason"] == reason && observed {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no AutoRefill {reason}: {}", status(dir));
    };

    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    // One left, under 2: the daemon signs 2 more.
    let refilled = wait_for("Refilled").await;
    assert_eq!(refilled["status"]["totalSigned"], 5, "{refilled}");
    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    // One left again, but 5 were signed of maxTotal 5: no more.
    let stopped = wait_for("MaxTotalReached").await;
    assert_eq!(stopped["status"]["totalSigned"], 5, "{stopped}");
    assert_eq!(chat(dir).await.0, 200, "the last one");
    let (code, _) = chat(dir).await;
    assert_ne!(code, 200, "used up");
    assert_eq!(status(dir)["status"]["spent"], 5);
}
