//! `obol tunnel` against a stand-in `cloudflared` this file writes (a shell script, pointed at
//! by `OBOL_CLOUDFLARED`): it records its arguments, prints a trycloudflare-style URL on stderr
//! as the real one does (a new one per start), serves nothing, and exits when the test creates
//! its `crash` file. A real tunnel is never exercised here (no public network).
//!
//! Checked: the daemon runs and restarts the child, `tunnel status` shows the URL, pid,
//! restarts and the last error; the 402 `resource.url`, `/api/services.json` and
//! `/.well-known/x402` use the tunnel's URL and follow it when a restart brings a new one; the
//! tunnel starts again with the stack; `tunnel down` leaves no process; a pinned public URL is
//! not replaced; a named tunnel gets its token as a file; without `cloudflared` the install
//! instructions; and on the devnet the recorded agent's agentURI follows the new URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::stack::{StackGuard, fetch, gateway, sell_echo, upstream, wait_ready};
use crate::{json_of, obol_in, stderr, stdout};

/// Writes the stand-in `cloudflared` under `dir/fake` and returns its path.
fn stand_in(dir: &Path) -> PathBuf {
    let fake = dir.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let script = format!(
        r#"#!/bin/sh
d='{}'
n=$(cat "$d/starts" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$d/starts"
echo "$*" > "$d/args-$n"
echo "$$" > "$d/pid-$n"
echo "2024-05-01T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com..." >&2
echo "2024-05-01T10:00:01Z INF |  https://obol-test-$n.trycloudflare.com  |" >&2
printf '2024-05-01T10:00:01Z INF \033[31mcolour\033[0m\n' >&2
while [ ! -e "$d/crash" ]; do sleep 0.1; done
rm -f "$d/crash"
echo "2024-05-01T10:00:09Z ERR connection to the edge lost" >&2
exit 3
"#,
        fake.display()
    );
    let path = fake.join("cloudflared");
    std::fs::write(&path, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

fn quick_url(n: u32) -> String {
    format!("https://obol-test-{n}.trycloudflare.com")
}

/// A stack on loopback ports, started with `up_args` and `env` (the stand-in among it).
fn init_and_up(dir: &Path, up_args: &[&str], env: &[(&str, &str)]) {
    crate::stack_init(dir, "127.0.0.1:0", &[]);
    let mut up = vec!["stack", "up"];
    up.extend_from_slice(up_args);
    crate::succeeded(&obol_in(dir, &up, env, None));
}

/// The stand-in, and a stack started with it (`up_args` added) selling `echo`, Ready.
async fn selling<'a>(dir: &'a Path, up_args: &[&str]) -> (PathBuf, String, StackGuard<'a>) {
    let cloudflared = stand_in(dir).to_str().unwrap().to_owned();
    let upstream = upstream().await;
    init_and_up(dir, up_args, &[("OBOL_CLOUDFLARED", &cloudflared)]);
    let guard = StackGuard(dir);
    crate::succeeded(&obol_in(dir, &sell_echo(&upstream, "0.5"), &[], None));
    wait_ready(dir).await;
    (dir.join("fake"), cloudflared, guard)
}

fn tunnel_status(dir: &Path) -> Value {
    json_of(&obol_in(dir, &["--json", "tunnel", "status"], &[], None))
}

/// Polls `tunnel status` (about 15 s) until `check` holds; returns that status.
async fn wait_status(dir: &Path, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = tunnel_status(dir);
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened; last status {last:#}");
}

/// What buyers see: the 402's `resource.url`, the catalog's endpoint, the x402 resource.
async fn published(dir: &Path) -> (String, String, String) {
    let (status, body) = fetch(&format!("{}/services/echo/items", gateway(dir))).await;
    assert_eq!(status, 402, "{body}");
    let required: Value = serde_json::from_str(&body).unwrap();
    let (_, catalog) = fetch(&format!("{}/api/services.json", gateway(dir))).await;
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    let (_, x402) = fetch(&format!("{}/.well-known/x402", gateway(dir))).await;
    let x402: Value = serde_json::from_str(&x402).unwrap();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&required["resource"]["url"]),
        text(&catalog["services"][0]["endpoint"]),
        text(&x402["resources"][0]["resource"]),
    )
}

fn pid_of(fake: &Path, n: u32) -> u32 {
    std::fs::read_to_string(fake.join(format!("pid-{n}")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits (about 5 s) until process `pid` is gone.
async fn gone(pid: u32) -> bool {
    for _ in 0..50 {
        if !obol_config::process::exists(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_tunnel_is_published_restarted_followed_and_stopped() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (fake, cloudflared, _guard) = selling(dir, &[]).await;
    let env = [("OBOL_CLOUDFLARED", cloudflared.as_str())];
    let local = gateway(dir);
    assert_eq!(
        published(dir).await.0,
        format!("{local}/services/echo/items"),
        "no public URL yet: the request's own"
    );

    let up = json_of(&obol_in(dir, &["--json", "tunnel", "up"], &env, None));
    assert_eq!(up["state"], "running", "{up:#}");
    assert_eq!(up["mode"], "quick");
    assert_eq!(up["url"], quick_url(1));
    assert_eq!(up["publicUrl"], quick_url(1));
    assert_eq!(up["publishing"], true);
    assert_eq!(up["restarts"], 0);
    assert_eq!(up["pid"], pid_of(&fake, 1));
    // Only the gateway is tunnelled, never the admin API.
    let args = std::fs::read_to_string(fake.join("args-1")).unwrap();
    assert_eq!(
        args.trim(),
        format!("tunnel --no-autoupdate --url {local}"),
        "quick mode's command line"
    );
    assert!(dir.join("config/tunnel.json").exists());
    let base = quick_url(1);
    assert_eq!(
        published(dir).await,
        (
            format!("{base}/services/echo/items"),
            format!("{base}/services/echo"),
            format!("{base}/services/echo"),
        )
    );
    let stack: Value = json_of(&obol_in(dir, &["--json", "stack", "status"], &[], None));
    assert!(
        stack.to_string().contains(&quick_url(1)),
        "stack status names the public URL: {stack}"
    );

    // The child crashes: restarted after the backoff, with a new URL that buyers see.
    std::fs::write(fake.join("crash"), "").unwrap();
    let status = wait_status(dir, "the restart with a new URL", |s| {
        s["url"] == quick_url(2)
    })
    .await;
    assert_eq!(status["restarts"], 1, "{status:#}");
    assert_eq!(status["state"], "running");
    assert_eq!(status["pid"], pid_of(&fake, 2));
    let error = status["lastError"].as_str().unwrap();
    assert!(
        error.contains("exit status: 3") && error.contains("connection to the edge lost"),
        "{error}"
    );
    let base = quick_url(2);
    assert_eq!(
        published(dir).await,
        (
            format!("{base}/services/echo/items"),
            format!("{base}/services/echo"),
            format!("{base}/services/echo"),
        )
    );
    let human = stdout(&obol_in(dir, &["tunnel", "status"], &[], None));
    assert!(
        human.contains(&format!("  url:        {base}\n")),
        "{human}"
    );
    assert!(human.contains("  restarts:   1\n"), "{human}");
    assert!(
        human.contains("admin API and metrics are not tunnelled"),
        "{human}"
    );

    // The log keeps the output, escaped.
    let logs = obol_in(dir, &["tunnel", "logs", "-n", "100"], &[], None);
    let logs = stdout(&logs);
    assert!(
        logs.contains(&quick_url(1)) && logs.contains(&quick_url(2)),
        "{logs}"
    );
    assert!(logs.contains("\\u{1b}[31mcolour"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no raw escape sequence");
    assert!(logs.contains("restarting in 1 s"), "{logs}");
    let tail = stdout(&obol_in(dir, &["tunnel", "logs", "-n", "1"], &[], None));
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // The tunnel lives with the stack: stopped with it, started again with it.
    crate::succeeded(&obol_in(dir, &["stack", "down"], &[], None));
    assert!(gone(pid_of(&fake, 2)).await, "stack down stops cloudflared");
    crate::succeeded(&obol_in(dir, &["stack", "up"], &env, None));
    wait_ready(dir).await;
    let status = wait_status(dir, "the tunnel starting with the stack", |s| {
        s["url"] == quick_url(3)
    })
    .await;
    assert_eq!(status["publishing"], true);

    // Down: no process left, the public URL back to the configured one (none here).
    let down = json_of(&obol_in(dir, &["--json", "tunnel", "down"], &[], None));
    assert_eq!(down["forgotten"], true);
    assert!(
        gone(pid_of(&fake, 3)).await,
        "tunnel down stops cloudflared"
    );
    assert!(!dir.join("config/tunnel.json").exists());
    let local = gateway(dir);
    assert_eq!(
        published(dir).await.0,
        format!("{local}/services/echo/items")
    );
    assert_eq!(tunnel_status(dir)["state"], "stopped");
    let starts = std::fs::read_to_string(fake.join("starts")).unwrap();
    assert_eq!(starts.trim(), "3", "nothing started it again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_public_url_is_kept_and_a_named_tunnel_reads_its_token_from_a_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (fake, cloudflared, _guard) =
        selling(dir, &["--public-url", "https://seller.example"]).await;
    let env = [("OBOL_CLOUDFLARED", cloudflared.as_str())];

    // Pinned by --public-url: the tunnel runs, its URL is not published.
    let up = json_of(&obol_in(dir, &["--json", "tunnel", "up"], &env, None));
    assert_eq!(up["url"], quick_url(1));
    assert_eq!(up["publishing"], false);
    assert_eq!(up["publicUrl"], "https://seller.example");
    assert!(
        up["note"].as_str().unwrap().contains("not published"),
        "{up:#}"
    );
    assert_eq!(
        published(dir).await.0,
        "https://seller.example/services/echo/items"
    );

    // Named: the token stays in its file; the hostname is the tunnel's URL.
    let token = dir.join("tunnel.token");
    std::fs::write(&token, "eyJ-secret-token").unwrap();
    let named = [
        "--json",
        "tunnel",
        "up",
        "--mode",
        "named",
        "--token-file",
        token.to_str().unwrap(),
        "--hostname",
        "Seller.Example.COM",
    ];
    let up = json_of(&obol_in(dir, &named, &env, None));
    assert_eq!(up["mode"], "named");
    assert_eq!(up["url"], "https://seller.example.com");
    assert!(
        gone(pid_of(&fake, 1)).await,
        "the quick tunnel was replaced"
    );
    let args = std::fs::read_to_string(fake.join("args-2")).unwrap();
    assert_eq!(
        args.trim(),
        format!(
            "tunnel --no-autoupdate run --token-file {} --url {}",
            token.display(),
            gateway(dir)
        )
    );
    assert!(!args.contains("eyJ-secret-token"));
    let setting = std::fs::read_to_string(dir.join("config/tunnel.json")).unwrap();
    assert!(!setting.contains("eyJ-secret-token"), "{setting}");

    // Bad combinations are refused before anything runs.
    for (bad, why) in [
        (
            vec!["tunnel", "up", "--hostname", "a.example.com"],
            "quick tunnel takes no",
        ),
        (
            vec![
                "tunnel",
                "up",
                "--mode",
                "named",
                "--hostname",
                "a.example.com",
            ],
            "--token-file",
        ),
        (
            vec![
                "tunnel",
                "up",
                "--mode",
                "named",
                "--token-file",
                "/nonexistent/t",
                "--hostname",
                "a.example.com",
            ],
            "no such file",
        ),
    ] {
        let out = obol_in(dir, &bad, &env, None);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(stderr(&out).contains(why), "{bad:?}: {}", stderr(&out));
    }
    crate::succeeded(&obol_in(dir, &["tunnel", "down"], &[], None));
    assert!(gone(pid_of(&fake, 2)).await);
    assert_eq!(
        std::fs::read_to_string(fake.join("starts")).unwrap().trim(),
        "2"
    );
}

#[test]
fn without_cloudflared_tunnel_up_says_how_to_install_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let env = [("PATH", empty.to_str().unwrap()), ("OBOL_CLOUDFLARED", "")];
    let out = obol_in(dir, &["tunnel", "up"], &env, None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let message = stderr(&out);
    for needed in [
        "cloudflared is not installed",
        "never downloads",
        "https://pkg.cloudflare.com/",
        "sudo apt-get install cloudflared",
        "https://github.com/cloudflare/cloudflared/releases",
    ] {
        assert!(message.contains(needed), "{needed}: {message}");
    }
    assert!(!dir.join("config/tunnel.json").exists(), "nothing recorded");
    let status = stdout(&obol_in(dir, &["tunnel", "status"], &[], None));
    assert!(status.contains("tunnel: none"), "{status}");
}

/// The agentURI the devnet's Identity Registry holds for `id`.
async fn agent_uri_on_chain(dir: &Path, id: u64) -> String {
    let file = obol_config::NetworksFile::load(&dir.join("config/networks.json")).unwrap();
    let chain = obol_chain::ChainClient::connect("devnet", file.get("devnet").unwrap()).unwrap();
    let registry = obol_erc8004::Registries::builtin().get(84532).unwrap();
    obol_erc8004::IdentityClient::new(chain, registry)
        .unwrap()
        .agent_uri(obol_erc8004::U256::from(id))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tunnel_url_is_written_to_the_agent_uri_on_the_devnet() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let cloudflared = stand_in(dir);
    let fake = dir.join("fake");
    let env = [("OBOL_CLOUDFLARED", cloudflared.to_str().unwrap())];
    crate::succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = crate::stack::DevnetStackGuard(dir);
    crate::stack_init(dir, "127.0.0.1:0", &["--facilitator-chain", "devnet"]);
    // The daemon's signer (dev key 9, as `start_stack` gives it) owns the agent.
    crate::start_stack_with(dir, &env);
    let owner = [("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[9])];

    let up = json_of(&obol_in(dir, &["--json", "tunnel", "up"], &env, None));
    assert_eq!(up["publicUrl"], quick_url(1));
    let register = ["--json", "sell", "register", "--chain", "devnet"];
    let registered = json_of(&obol_in(dir, &register, &owner, None));
    let id: u64 = registered["agentId"].as_u64().unwrap();
    let document = |n| format!("{}/.well-known/agent-registration.json", quick_url(n));
    assert_eq!(registered["agentUri"], document(1));
    assert_eq!(agent_uri_on_chain(dir, id).await, document(1));

    std::fs::write(fake.join("crash"), "").unwrap();
    let status = wait_status(dir, "setAgentURI to the new URL", |s| {
        s["agentUris"][0]["state"] == "updated"
    })
    .await;
    assert_eq!(status["url"], quick_url(2));
    let update = &status["agentUris"][0];
    assert_eq!(update["chain"], "devnet");
    assert_eq!(update["agentId"], id.to_string());
    assert_eq!(update["uri"], document(2));
    assert!(update["txHash"].as_str().unwrap().starts_with("0x"));
    assert_eq!(agent_uri_on_chain(dir, id).await, document(2));
    // The served registration document agrees.
    let (_, served) = fetch(&format!(
        "{}/.well-known/agent-registration.json",
        gateway(dir)
    ))
    .await;
    let served: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(served["registrations"][0]["agentId"], id, "{served:#}");

    // Down: the local default is not published, so the chain keeps the last public URL.
    crate::succeeded(&obol_in(dir, &["tunnel", "down"], &[], None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent_uri_on_chain(dir, id).await, document(2));
}
