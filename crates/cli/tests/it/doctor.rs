//! `obol doctor` against a real stack on the devnet: a healthy stack passes; then each breakage
//! (a private file opened up, a dead upstream, a networks file naming another chain id or a
//! closed port, the devnet's clock jumped ahead, a gas wallet with no ETH, a public URL nothing
//! answers, an RPC endpoint that never answers) fails its own check, named, with its fix.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{DevnetStackGuard, sell_echo, wait_ready};
use crate::{assert_contains, devnet_url, obol_in, stderr, stdout, succeeded};

/// A loopback upstream answering 200 until the returned task is aborted (then its port is
/// closed).
async fn stoppable_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let app =
            axum::Router::new().fallback(|| async { axum::Json(serde_json::json!({"ok": true})) });
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// `obol --json doctor`: the exit code and the checks by name.
fn doctor(dir: &Path) -> (Option<i32>, Vec<Value>, Value) {
    let out = obol_in(dir, &["--json", "doctor"], &[], None);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    let checks = report["checks"].as_array().unwrap().clone();
    (out.status.code(), checks, report)
}

/// The check named `name`.
fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

/// Asserts `name` has `status`, its detail contains `detail` and its fix contains `fix`.
fn assert_check(checks: &[Value], name: &str, status: &str, detail: &str, fix: &str) {
    let found = check(checks, name);
    assert_eq!(found["status"], status, "{found:#}");
    assert!(
        found["detail"].as_str().unwrap().contains(detail),
        "{name}: {found:#}"
    );
    assert!(
        found["fix"].as_str().unwrap_or("").contains(fix),
        "{name}: {found:#}"
    );
}

/// Runs the doctor, which must exit 1 with check `name` failed as [`assert_check`] says; the
/// checks.
fn fails(dir: &Path, name: &str, detail: &str, fix: &str) -> Vec<Value> {
    let (code, checks, _) = doctor(dir);
    assert_eq!(code, Some(1), "{checks:#?}");
    assert_check(&checks, name, "fail", detail, fix);
    checks
}

/// The checks that failed, by name.
fn failed(checks: &[Value]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// Rewrites the devnet's entry of the networks file with `edit`, returning the original text.
fn edit_networks(dir: &Path, edit: impl FnOnce(&mut Value)) -> String {
    let path = dir.join("config/networks.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut value: Value = serde_json::from_str(&original).unwrap();
    edit(&mut value["chains"]["devnet"]);
    std::fs::write(&path, value.to_string()).unwrap();
    original
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stack_passes_and_each_breakage_is_named_with_its_fix() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (upstream, upstream_task) = stoppable_upstream().await;
    let _guard = DevnetStackGuard::up(dir);
    let public = crate::stack_up_public(dir);
    succeeded(&obol_in(dir, &sell_echo(&upstream, "0.001"), &[], None));
    wait_ready(dir).await;
    let seller = [("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[3])];
    succeeded(&obol_in(
        dir,
        &["sell", "register", "--chain", "devnet"],
        &seller,
        None,
    ));

    // Healthy: every check passes (TLS is not configured: skipped), in well under the 5 s a
    // check may take.
    let started = Instant::now();
    let (code, checks, report) = doctor(dir);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{checks:#?}");
    assert!(failed(&checks).is_empty(), "{checks:#?}");
    for name in [
        "settings",
        "permissions",
        "daemon",
        "listeners",
        "rpc devnet",
        "clock devnet",
        "writes devnet",
        "gas devnet",
        "facilitator",
        "upstream default/echo",
        "public url",
        "agent-uri devnet",
        "settlements",
        "buyer pools",
    ] {
        assert_eq!(check(&checks, name)["status"], "ok", "{name}: {checks:#?}");
    }
    assert_eq!(check(&checks, "tls")["status"], "skip");
    assert!(
        check(&checks, "facilitator")["detail"]
            .as_str()
            .unwrap()
            .contains("exact on base-sepolia"),
        "{checks:#?}"
    );
    assert!(
        check(&checks, "agent-uri devnet")["detail"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{public}/.well-known/agent-registration.json")),
        "{checks:#?}"
    );
    assert_eq!(report["timedOut"], serde_json::json!([]));
    eprintln!(
        "doctor on a healthy devnet stack: {} checks in {} ms (the command: {} ms)",
        checks.len(),
        report["elapsedMs"],
        took.as_millis()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The human form: one line per check, then the tally.
    let out = obol_in(dir, &["doctor"], &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(
        text.contains("✓ rpc devnet — chain id 84532, head #"),
        "{text}"
    );
    assert!(
        text.contains("- tls — no certificate in stack.json"),
        "{text}"
    );
    assert!(text.contains(" checks: "), "{text}");

    // A secret readable by others.
    let token = dir.join("config/admin.token");
    chmod(&token, 0o644);
    let checks = fails(
        dir,
        "permissions",
        &format!("{} is 0644, not 0600", token.display()),
        &format!("chmod 600 '{}'", token.display()),
    );
    assert_eq!(failed(&checks), ["permissions"]);
    let out = obol_in(dir, &["doctor"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &stdout(&out),
        &format!(
            "✗ permissions — {} is 0644, not 0600 (fix: chmod 600 '{}')",
            token.display(),
            token.display()
        ),
    );
    chmod(&token, 0o600);

    // The networks file names another chain id for the devnet's endpoint.
    let original = edit_networks(dir, |devnet| devnet["chainId"] = 1.into());
    fails(
        dir,
        "rpc devnet",
        "serves chain id 84532, not 1",
        "point devnet at an endpoint that answers for chain id 1",
    );
    std::fs::write(dir.join("config/networks.json"), &original).unwrap();

    // A dead RPC: the endpoint is a closed port.
    let anvil = devnet_url(dir);
    let dead = format!("http://127.0.0.1:{}", obol_devnet::bench::free_port());
    edit_networks(dir, |devnet| {
        devnet["endpoints"][0]["url"] = dead.clone().into()
    });
    let checks = fails(
        dir,
        "rpc devnet",
        &dead,
        "`obol network add devnet --endpoint URL`",
    );
    assert_check(
        &checks,
        "writes devnet",
        "fail",
        "no writable endpoint answers",
        "--allow-writes",
    );
    assert_eq!(check(&checks, "clock devnet")["status"], "skip");
    std::fs::write(dir.join("config/networks.json"), &original).unwrap();
    assert_eq!(doctor(dir).0, Some(0), "restored");

    // The upstream stops.
    upstream_task.abort();
    let _ = upstream_task.await;
    let checks = fails(
        dir,
        "upstream default/echo",
        "Unhealthy: upstream health path",
        &format!("start the upstream at {upstream}"),
    );
    assert_eq!(failed(&checks), ["upstream default/echo"]);

    // The devnet's clock jumps ten minutes ahead of this machine's.
    let rpc = obol_devnet::bench::Rpc::new(&anvil);
    rpc.call("evm_increaseTime", serde_json::json!([600])).await;
    rpc.call("evm_mine", serde_json::json!([])).await;
    fails(dir, "clock devnet", "s ahead of this clock", "NTP");
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A TCP listener that accepts and never answers (an RPC endpoint that hangs).
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16) {
            held.push(stream);
        }
    });
    (url, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_gas_wallet_an_unreachable_public_url_and_a_hanging_rpc_are_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let _guard = DevnetStackGuard::up(dir);
    let nowhere = format!("http://127.0.0.1:{}", obol_devnet::bench::free_port());
    crate::stack_init(
        dir,
        "127.0.0.1:0",
        &["--public-url", &nowhere, "--facilitator-chain", "devnet"],
    );
    // A fresh key with no ETH pays the embedded facilitator's gas.
    let empty = obol_x402::primitives::B256::random().to_string();
    crate::start_stack_with(dir, &[("OBOL_PRIVATE_KEY", empty.as_str())]);
    let (hole, _hole) = black_hole();
    succeeded(&obol_in(
        dir,
        &[
            "network",
            "add",
            "hanging",
            "--chain-id",
            "7",
            "--endpoint",
            &hole,
            "--no-check",
        ],
        &[],
        None,
    ));

    let started = Instant::now();
    let (code, checks, report) = doctor(dir);
    let took = started.elapsed();
    assert_eq!(code, Some(1));
    assert_check(
        &checks,
        "gas devnet",
        "fail",
        "has no gas",
        "send devnet native tokens to 0x",
    );
    assert_check(
        &checks,
        "public url",
        "fail",
        &format!("{nowhere}/.well-known/agent-registration.json"),
        &format!("make {nowhere} reach the gateway"),
    );
    // The hanging endpoint costs its own checks (its clock cannot be read), not the command.
    assert_check(
        &checks,
        "rpc hanging",
        "fail",
        &hole,
        "obol network add hanging",
    );
    assert_eq!(check(&checks, "clock hanging")["status"], "skip");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let mut failing = failed(&checks);
    failing.sort_unstable();
    assert_eq!(
        failing,
        ["gas devnet", "public url", "rpc hanging"],
        "{report:#}"
    );
    eprintln!(
        "doctor with a hanging RPC endpoint: {} ms",
        took.as_millis()
    );
}
