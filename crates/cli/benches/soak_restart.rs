//! The concurrency soak's crash scenario ([hardening]): kill -9 of the daemon while settlements
//! are in flight, restart on the same state, re-send every authorization. A bench, not a CI
//! test: `cargo bench -p obol --bench soak_restart` (anvil from `scripts/install-tools`).
//!
//! Real processes, loopback only: `obol devnet up` (anvil, mining one block a second here so
//! that settlements stay in flight long enough to be cut), `obol stack up --foreground` with
//! the embedded facilitator (dev account 9 pays gas), an `obol sell http` offer over a loopback
//! upstream. Eight dev accounts sign `SOAK_AUTHORIZATIONS` (default 256) authorizations, each
//! when first sent; 32 are in flight at a time. Once a sixth of them were served, the daemon
//! gets SIGKILL `SOAK_KILL_AFTER_BLOCK_MS` (300) after a block landed, while the next block's
//! settlements wait in the mempool; it is started again on the same directories, and every
//! authorization is sent again, as is (a `503 settlement_pending` is retried with the same
//! payment).
//!
//! Invariants: no authorization is answered 200 twice (across both runs); every 200 has its
//! transfer on chain; the seller's on-chain delta is exactly (authorizations whose transfer
//! landed) × price; an authorization whose transfer never happened is served on retry; one
//! whose transfer landed without a 200 is refused (never served without being charged, never
//! charged twice).
//!
//! Second part, settlements pending across a kill: with no blocks, 8 paid requests each wait
//! out the facilitator's 30 s receipt timeout and are answered `503 settlement_pending`; blocks
//! resume and the same payments are sent again — once without a restart (control), once with a
//! SIGKILL + restart between the 503s and the resumed blocks. Each whose transfer landed must
//! then be served (once).
//!
//! Prints a table; exits 1 if an invariant broke (the daemon's log and state are kept then).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obol_devnet::DEV_KEYS;
use obol_devnet::bench::{
    Rpc, Signed, counting_upstream, env_or, free_port, is_settlement_pending, join_all, reason_of,
    sign,
};
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use obol_x402::primitives::{Address, U256};
use obol_x402::wire::v2;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const OBOL: &str = env!("CARGO_BIN_EXE_obol");
const PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const PRICE: u64 = 1000;
/// Dev accounts that buy (0 mints, 2 sells, 9 pays the facilitator's gas).
const BUYER_KEYS: [usize; 8] = [0, 1, 3, 4, 5, 6, 7, 8];
const IN_FLIGHT: usize = 32;
/// Seconds between blocks while the soak runs.
const BLOCK_TIME: u64 = 1;
const PENDING_RETRIES: usize = 40;
/// Settlements left pending across the kill (second part).
const PENDING_COUNT: usize = 8;

/// `obol` with its configuration under `root`.
fn obol_command(root: &Path) -> Command {
    let mut command = Command::new(OBOL);
    command
        .env("OBOL_CONFIG_DIR", root.join("config"))
        .env("OBOL_DATA_DIR", root.join("data"))
        .env("OBOL_STATE_DIR", root.join("state"))
        .env_remove("OBOL_PRIVATE_KEY")
        .env_remove("OBOL_WALLET_PASSWORD")
        .stdin(Stdio::null());
    command
}

fn obol(root: &Path, args: &[&str]) -> Output {
    let out = obol_command(root).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "obol {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The daemon in the foreground, as a child of this process (so it can be SIGKILLed).
fn start_daemon(root: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    obol_command(root)
        .args(["stack", "up", "--foreground"])
        .env("OBOL_PRIVATE_KEY", DEV_KEYS[9])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Stops what this bench started, pass or fail: the daemon (by its pid), then the devnet.
struct Cleanup {
    root: PathBuf,
    daemon: Arc<Mutex<Option<Child>>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = obol_command(&self.root).args(["devnet", "down"]).output();
    }
}

async fn send(client: &reqwest::Client, url: &str, payment: &str) -> (u16, String) {
    match client
        .get(url)
        .header(PAYMENT_SIGNATURE, payment)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, reason_of(status, &body))
        }
        Err(_) => (0, "no answer (connection cut)".into()),
    }
}

/// One authorization's story: every answer it got, in order.
#[derive(Debug, Clone, Default)]
struct Story {
    before_kill: Vec<(u16, String)>,
    after_restart: Vec<(u16, String)>,
}

/// Authorization `i` of the soak, signed when first asked for (it must arrive with 270 of its
/// 300 s left), then the same every time.
struct Authorizations {
    buyers: Arc<Vec<LocalSigner>>,
    payments: Vec<OnceCell<Signed>>,
    offered: v2::PaymentRequirements,
    resource: v2::ResourceInfo,
}

impl Authorizations {
    async fn header(&self, i: usize) -> String {
        let buyer = &self.buyers[i % self.buyers.len()];
        self.payments[i]
            .get_or_init(|| sign(buyer, &self.offered, Some(self.resource.clone())))
            .await
            .header
            .clone()
    }
}

async fn wait_for(url: &str, status: u16, timeout: Duration) -> Duration {
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().as_u16() == status
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `obol stack status` finds the daemon (its state file written, admin answering).
async fn wait_stack(root: &Path) -> Duration {
    let started = Instant::now();
    loop {
        if obol_command(root)
            .args(["stack", "status"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    let n: usize = env_or("SOAK_AUTHORIZATIONS", 256);
    let kill_after_block_ms: u64 = env_or("SOAK_KILL_AFTER_BLOCK_MS", 300);
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_owned();
    let daemon_log = root_path.join("daemon.log");
    let daemon: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    let cleanup = Cleanup {
        root: root_path.clone(),
        daemon: daemon.clone(),
    };
    let http = reqwest::Client::new();

    // Devnet, stack with the embedded facilitator, an upstream, an offer.
    let devnet: Value =
        serde_json::from_slice(&obol(&root_path, &["--json", "devnet", "up"]).stdout).unwrap();
    let chain = Rpc::new(devnet["endpoint"].as_str().unwrap());
    let listen = format!("127.0.0.1:{}", free_port());
    obol(
        &root_path,
        &[
            "stack",
            "init",
            "--gateway-listen",
            &listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--buyer-listen",
            "127.0.0.1:0",
            "--facilitator-chain",
            "devnet",
        ],
    );
    let (upstream_router, upstream_calls) = counting_upstream();
    let upstream = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, upstream_router).await });
        url
    };
    *daemon.lock().unwrap() = Some(start_daemon(&root_path, &daemon_log));
    let gateway = format!("http://{listen}");
    wait_stack(&root_path).await;
    obol(
        &root_path,
        &[
            "sell",
            "http",
            "echo",
            "--upstream",
            &upstream,
            "--pay-to",
            PAY_TO,
            "--per-request",
            "0.001",
            "--chain",
            "base-sepolia",
            "--no-register",
        ],
    );
    let url = format!("{gateway}/services/echo/item");
    wait_for(&url, 402, Duration::from_secs(20)).await;
    let challenge = http.get(&url).send().await.unwrap();
    let required: v2::PaymentRequired =
        header::decode(challenge.headers()[PAYMENT_REQUIRED].to_str().unwrap()).unwrap();
    let offered = required.accepts[0].clone();
    assert_eq!(offered.amount.0, U256::from(PRICE));

    // Each authorization is signed when first sent (it must arrive with 270 of its 300 s
    // left), then sent again as is after the restart.
    let buyers: Arc<Vec<LocalSigner>> = Arc::new(
        BUYER_KEYS
            .iter()
            .map(|&k| LocalSigner::from_private_key_hex(DEV_KEYS[k]).unwrap())
            .collect(),
    );
    let authorization = Arc::new(Authorizations {
        buyers: buyers.clone(),
        payments: (0..n).map(|_| OnceCell::new()).collect(),
        offered: offered.clone(),
        resource: required.resource.clone(),
    });
    let seller: Address = PAY_TO.parse().unwrap();
    let seller_before = chain.usdc_balance(seller).await;

    // Blocks every BLOCK_TIME s: a settlement waits for its block, so many are in flight.
    chain.call("evm_setAutomine", json!([false])).await;
    chain
        .call("evm_setIntervalMining", json!([BLOCK_TIME]))
        .await;

    // ── Run 1: fire, then SIGKILL the daemon mid-settlement ──────────────────────────────
    let stories: Arc<Mutex<Vec<Story>>> = Arc::new(Mutex::new(vec![Story::default(); n]));
    let served = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let run1_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, authorization, stories, served, answered, killed, next) = (
            client.clone(),
            url.clone(),
            authorization.clone(),
            stories.clone(),
            served.clone(),
            answered.clone(),
            killed.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            while !killed.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let answer = send(&client, &url, &authorization.header(i).await).await;
                if answer.0 == 200 {
                    served.fetch_add(1, Ordering::SeqCst);
                }
                if answer.0 != 0 {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                stories.lock().unwrap()[i].before_kill.push(answer);
            }
        });
    }
    // Once a sixth were served: wait for a block to land, then SOAK_KILL_AFTER_BLOCK_MS (300)
    // more, when the next block's settlements are broadcast and waiting in the mempool. The
    // restart takes tens of milliseconds, so the re-sent authorizations race their own
    // transactions still pending there.
    while served.load(Ordering::SeqCst) < n / 6 {
        assert!(
            run1_started.elapsed() < Duration::from_secs(120),
            "run 1 stalled; see {}",
            daemon_log.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let height = chain.call("eth_blockNumber", json!([])).await;
    while chain.call("eth_blockNumber", json!([])).await == height {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(kill_after_block_ms)).await;
    let sent_at_kill = next.load(Ordering::SeqCst).min(n);
    let answered_at_kill = answered.load(Ordering::SeqCst);
    let served_at_kill = served.load(Ordering::SeqCst);
    let mempool_at_kill = chain.call("txpool_status", json!([])).await;
    {
        let mut slot = daemon.lock().unwrap();
        let mut child = slot.take().unwrap();
        killed.store(true, Ordering::SeqCst);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let killed_at = run1_started.elapsed();
    while tasks.join_next().await.is_some() {}
    let cut = sent_at_kill.saturating_sub(answered_at_kill);

    // ── Restart on the same state, re-send every authorization ──────────────────────────
    *daemon.lock().unwrap() = Some(start_daemon(&root_path, &daemon_log));
    let restart_to_402 = wait_for(&url, 402, Duration::from_secs(20)).await;
    // The cut authorizations first (their fate is the question), then the rest in order.
    let order: Arc<Vec<usize>> = {
        let stories = stories.lock().unwrap();
        let cut = |i: &usize| matches!(stories[*i].before_kill.last(), Some((0, _)));
        let (mut first, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(cut);
        first.extend(rest);
        Arc::new(first)
    };
    let pending_at_restart = chain.call("txpool_status", json!([])).await;
    let next = Arc::new(AtomicUsize::new(0));
    let run2_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, authorization, stories, next, order) = (
            client.clone(),
            url.clone(),
            authorization.clone(),
            stories.clone(),
            next.clone(),
            order.clone(),
        );
        tasks.spawn(async move {
            loop {
                let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                let payment = authorization.header(i).await;
                for attempt in 0..=PENDING_RETRIES {
                    let answer = send(&client, &url, &payment).await;
                    let again = is_settlement_pending(answer.0, &answer.1);
                    stories.lock().unwrap()[i].after_restart.push(answer);
                    if !again || attempt == PENDING_RETRIES {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let run2 = run2_started.elapsed();

    // Let every broadcast settlement land, then read the chain.
    chain.call("evm_setIntervalMining", json!([0])).await;
    chain.call("evm_setAutomine", json!([true])).await;
    chain.call("evm_mine", json!([])).await;
    let pending_after = chain.call("txpool_status", json!([])).await;
    let seller_delta = chain.usdc_balance(seller).await - seller_before;
    let payments: Vec<&Signed> = authorization
        .payments
        .iter()
        .map(|p| p.get().unwrap())
        .collect();
    let nonces: Vec<_> = payments.iter().map(|p| (p.payer, p.nonce)).collect();
    let used = chain.used_nonces(&nonces).await;
    let stories = stories.lock().unwrap().clone();

    // ── Settlements pending across a kill ─────────────────────────────────────────────────
    // No blocks: each settlement waits out the facilitator's 30 s receipt timeout and is
    // answered 503 settlement_pending (the guard records it as unsettled, with its
    // transaction). Then, as control, blocks resume and the same payments are sent again; and
    // with a SIGKILL + restart between the 503s and the resumed blocks.
    let mut pending_rounds = Vec::new();
    for kill in [false, true] {
        let seller_before = chain.usdc_balance(seller).await;
        chain.call("evm_setAutomine", json!([false])).await;
        let mut signed: Vec<Signed> = Vec::with_capacity(PENDING_COUNT);
        for i in 0..PENDING_COUNT {
            let buyer = &buyers[i % buyers.len()];
            signed.push(sign(buyer, &offered, Some(required.resource.clone())).await);
        }
        let first: Vec<(u16, String)> = join_all(signed.iter().map(|p| {
            let (client, url, header) = (client.clone(), url.clone(), p.header.clone());
            async move { send(&client, &url, &header).await }
        }))
        .await;
        if kill {
            let mut slot = daemon.lock().unwrap();
            let mut child = slot.take().unwrap();
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            *slot = Some(start_daemon(&root_path, &daemon_log));
        }
        wait_for(&url, 402, Duration::from_secs(20)).await;
        chain.call("evm_setAutomine", json!([true])).await;
        chain.call("evm_mine", json!([])).await;
        let mut stories = Vec::new();
        for (p, first) in signed.iter().zip(first) {
            let mut story = vec![first];
            for _ in 0..5 {
                let answer = send(&client, &url, &p.header).await;
                let again = is_settlement_pending(answer.0, &answer.1);
                story.push(answer);
                if !again {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let landed = chain.nonce_used(p.payer, p.nonce).await;
            stories.push((story, landed));
        }
        let delta = chain.usdc_balance(seller).await - seller_before;
        pending_rounds.push((kill, stories, delta));
    }

    {
        let mut slot = daemon.lock().unwrap();
        if let Some(mut child) = slot.take() {
            let _ = obol_command(&root_path).args(["stack", "down"]).output();
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    // ── Classify and check ───────────────────────────────────────────────────────────────
    let mut categories: BTreeMap<String, usize> = BTreeMap::new();
    let mut broken: Vec<String> = Vec::new();
    let mut served_twice = 0;
    let mut served_uncharged = 0;
    let mut lost = 0;
    let mut refused_uncharged = 0;
    for (i, story) in stories.iter().enumerate() {
        let ok_before = story.before_kill.iter().filter(|a| a.0 == 200).count();
        let ok_after = story.after_restart.iter().filter(|a| a.0 == 200).count();
        let last = story
            .after_restart
            .last()
            .cloned()
            .unwrap_or((0, "never sent".into()));
        let first_run = match story.before_kill.last() {
            None => "not sent before the kill",
            Some((200, _)) => "200 before the kill",
            Some((0, _)) => "cut by the kill",
            Some(_) => "refused before the kill",
        };
        let landed = if used[i] {
            "transfer landed"
        } else {
            "no transfer"
        };
        let after: Vec<&str> = story.after_restart.iter().map(|a| a.1.as_str()).collect();
        *categories
            .entry(format!(
                "{first_run} → {landed} → after restart: {}",
                after.join(", then ")
            ))
            .or_default() += 1;
        if ok_before + ok_after > 1 {
            served_twice += 1;
            broken.push(format!(
                "authorization {i} ({} nonce {}) served {} times: {story:?}",
                payments[i].payer,
                payments[i].nonce,
                ok_before + ok_after
            ));
        }
        if ok_before + ok_after > 0 && !used[i] {
            served_uncharged += 1;
            broken.push(format!(
                "authorization {i} served without its transfer: {story:?}"
            ));
        }
        if !used[i] && ok_after == 0 {
            // Never charged, yet not served after the restart: the payment is stuck.
            refused_uncharged += 1;
            broken.push(format!(
                "authorization {i} never charged but refused after the restart: {story:?}"
            ));
        }
        if last.0 == 0 || is_settlement_pending(last.0, &last.1) {
            lost += 1;
            broken.push(format!(
                "authorization {i} has no final answer after the restart: {story:?}"
            ));
        }
    }
    let landed = used.iter().filter(|u| **u).count();
    let expected = U256::from(landed as u64 * PRICE);
    if seller_delta != expected {
        broken.push(format!(
            "seller delta {seller_delta} != {landed} transfers × {PRICE}"
        ));
    }
    let total_200 = stories
        .iter()
        .map(|s| {
            s.before_kill
                .iter()
                .chain(&s.after_restart)
                .filter(|a| a.0 == 200)
                .count()
        })
        .sum::<usize>();
    let charged_unserved = (0..n)
        .filter(|&i| {
            used[i]
                && !stories[i]
                    .before_kill
                    .iter()
                    .chain(&stories[i].after_restart)
                    .any(|a| a.0 == 200)
        })
        .count();

    println!(
        "kill -9 soak: obol daemon + embedded facilitator on anvil ({BLOCK_TIME} s blocks), loopback, release build, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{n} authorizations from {} payers, {IN_FLIGHT} in flight",
        BUYER_KEYS.len()
    );
    println!(
        "run 1: SIGKILL at {:.2} s ({kill_after_block_ms} ms after a block): {sent_at_kill} sent, {served_at_kill} served, {cut} cut mid-request; mempool at the kill {mempool_at_kill}",
        killed_at.as_secs_f64()
    );
    println!(
        "restart → offer answering 402 again: {} ms, mempool then {pending_at_restart}; run 2 (every authorization re-sent): {:.1} s; mempool after the final block {pending_after}",
        restart_to_402.as_millis(),
        run2.as_secs_f64()
    );
    println!("\n{:>6}  outcome", "count");
    for (what, count) in &categories {
        println!("{count:>6}  {what}");
    }
    println!(
        "\ntransfers landed {landed}; 200s in total {total_200}; charged but never answered 200 (answer lost in the crash) {charged_unserved}; upstream calls {}",
        upstream_calls.load(Ordering::SeqCst)
    );
    let check =
        |ok: bool, what: String| println!("  [{}] {what}", if ok { "ok" } else { "BROKEN" });
    check(
        seller_delta == expected,
        format!("seller delta {seller_delta} == {landed} landed × {PRICE}"),
    );
    check(
        served_twice == 0,
        format!("no authorization served twice: {served_twice}"),
    );
    check(
        served_uncharged == 0,
        format!("no 200 without its transfer: {served_uncharged}"),
    );
    check(
        refused_uncharged == 0,
        format!("every uncharged authorization served after the restart: {refused_uncharged} not"),
    );
    check(
        lost == 0,
        format!("every authorization has a final answer: {lost} without"),
    );
    for (kill, stories, delta) in &pending_rounds {
        println!(
            "\n{PENDING_COUNT} settlements left pending (no blocks for 30 s), then blocks resume{}:",
            if *kill {
                ", with a SIGKILL + restart in between"
            } else {
                " (no restart: control)"
            }
        );
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        let mut landed = 0;
        let mut served = 0;
        for (story, used) in stories {
            let answers: Vec<&str> = story.iter().map(|a| a.1.as_str()).collect();
            let landed_text = if *used {
                "transfer landed"
            } else {
                "no transfer"
            };
            *outcomes
                .entry(format!("{} → {landed_text}", answers.join(", then ")))
                .or_default() += 1;
            landed += usize::from(*used);
            let oks = story.iter().filter(|a| a.0 == 200).count();
            served += usize::from(oks > 0);
            if oks > 1 {
                broken.push(format!("pending (kill {kill}): served twice: {story:?}"));
            }
            if *used && oks == 0 {
                broken.push(format!(
                    "pending (kill {kill}): charged, never served, refused on retry: {story:?}"
                ));
            }
            if !*used && oks > 0 {
                broken.push(format!(
                    "pending (kill {kill}): served without transfer: {story:?}"
                ));
            }
        }
        for (what, count) in &outcomes {
            println!("{count:>6}  {what}");
        }
        let expected = U256::from(landed as u64 * PRICE);
        if *delta != expected {
            broken.push(format!(
                "pending (kill {kill}): seller delta {delta} != {landed} × {PRICE}"
            ));
        }
        check(
            *delta == expected,
            format!("seller delta {delta} == {landed} landed × {PRICE}"),
        );
        check(
            served == landed,
            format!("every landed pending payment served on retry: {served} of {landed}"),
        );
    }
    println!("\nwhole bench: {:.1} s", started.elapsed().as_secs_f64());
    if !broken.is_empty() {
        println!(
            "\nINVARIANTS BROKEN (daemon log: {}):",
            daemon_log.display()
        );
        for what in broken.iter().take(20) {
            println!("  - {what}");
        }
        drop(cleanup);
        let _ = root.keep();
        std::process::exit(1);
    }
    drop(cleanup);
}
