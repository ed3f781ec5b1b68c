//! Bring your own key: a seller resells an upstream that needs the seller's API key. The key
//! reaches the upstream on every paid call (and its health probe), a buyer's `Authorization`
//! never does, a rotated key is used at once, and the key appears nowhere else: not in the
//! store, the databases, the daemon's log, the metrics, any admin API answer or `--json`
//! output.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use obol_testkit::http::Fetch as _;

use crate::stack::{DevnetStackGuard, gateway, sell_echo, wait_offer_ready};
use crate::{assert_contains, obol_in, stderr, stdout, succeeded};

const KEY: &str = "sk-upstream-5f1c9e0b7a";
const ROTATED: &str = "sk-upstream-rotated-2d8e";

/// An upstream that answers only `Authorization: Bearer sk-upstream-…` and records every
/// `Authorization` it is sent.
async fn keyed_upstream(seen: Arc<Mutex<Vec<String>>>) -> String {
    let check = move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            seen.lock().unwrap().push(auth.clone());
            if auth.starts_with("Bearer sk-upstream-") {
                (StatusCode::OK, "{\"ok\":true}")
            } else {
                (StatusCode::UNAUTHORIZED, "{\"error\":\"key\"}")
            }
        }
    };
    let app = Router::new()
        .route("/health", get(check.clone()))
        .route("/items", get(check));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sellers_key_reaches_the_upstream_and_nowhere_else() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = keyed_upstream(seen.clone()).await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = DevnetStackGuard(dir);
    crate::stack_up(dir, None, true);

    let key_file = dir.join("upstream.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut sell = sell_echo(&upstream, "0.001").to_vec();
    sell.extend(["--upstream-auth-file", key_file.to_str().unwrap()]);
    let out = obol_in(dir, &sell, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, "echo").await;
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|a| a == &format!("Bearer {KEY}")),
        "the health probe sent the key: {:?}",
        seen.lock().unwrap()
    );

    let url = format!("{}/services/echo/items", gateway(dir));
    let pay = || {
        obol_in(
            dir,
            &[
                "buy",
                "pay",
                &url,
                "--max-amount",
                "0.01",
                "-H",
                "Authorization: Bearer buyer-own-token",
            ],
            &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[1])],
            None,
        )
    };
    let out = pay();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("Bearer {KEY}")
    );

    // Rotation: the next call carries the new key.
    let rotated_file = dir.join("rotated.key");
    std::fs::write(&rotated_file, ROTATED).unwrap();
    let out = obol_in(
        dir,
        &[
            "secret",
            "set",
            "echo-upstream-auth",
            "--from-file",
            &format!("token={}", rotated_file.display()),
        ],
        &[],
        None,
    );
    assert_eq!(
        stdout(&out),
        "secret default/echo-upstream-auth set (keys: token)\n",
        "{}",
        stderr(&out)
    );
    let out = pay();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &format!("Bearer {ROTATED}")
    );
    assert!(
        !seen.lock().unwrap().iter().any(|a| a.contains("buyer-own")),
        "a buyer's Authorization never reaches a paid upstream"
    );

    // The key appears nowhere but its secret file.
    let leaks = |text: &str, what: &str| {
        for key in [KEY, ROTATED] {
            assert!(!text.contains(key), "{what} holds the key: {text}");
        }
    };
    let out = obol_in(dir, &["--json", "sell", "status", "echo"], &[], None);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["spec"]["upstream"]["auth"],
        serde_json::json!({"secretRef": {"name": "echo-upstream-auth", "key": "token"}})
    );
    let human = obol_in(dir, &["sell", "status", "echo"], &[], None);
    assert_contains(
        &stdout(&human),
        "Upstream: Authorization from secret default/echo-upstream-auth key token",
    );
    let listed = obol_in(dir, &["--json", "secret", "list"], &[], None);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(),
        serde_json::json!([{"namespace": "default", "name": "echo-upstream-auth", "keys": ["token"]}])
    );
    for (out, what) in [
        (&out, "sell status --json"),
        (&human, "sell status"),
        (&listed, "secret list --json"),
    ] {
        leaks(&stdout(out), what);
        leaks(&stderr(out), what);
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/daemon.json")).unwrap())
            .unwrap();
    let admin = format!("http://{}", state["admin"].as_str().unwrap());
    let token = std::fs::read_to_string(dir.join("config/admin.token")).unwrap();
    let client = reqwest::Client::new();
    for path in [
        "/v1/offers",
        "/v1/offers/default/echo",
        "/v1/secrets/default",
        "/v1/status",
        "/metrics",
    ] {
        let text = client
            .get(format!("{admin}{path}"))
            .bearer_auth(token.trim())
            .fetch_text()
            .await;
        leaks(&text, path);
    }
    let secret_file = dir.join("config/secrets/default/echo-upstream-auth.json");
    let scanned = files(dir);
    for expected in [
        "data/store.sqlite",
        "data/payments.sqlite",
        "state/daemon.log",
    ] {
        assert!(
            scanned.iter().any(|f| f.ends_with(expected)),
            "{expected} in {scanned:?}"
        );
    }
    for file in scanned {
        if file == secret_file || file == key_file || file == rotated_file {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        leaks(
            &String::from_utf8_lossy(&bytes),
            &file.display().to_string(),
        );
    }

    // Deleting the offer deletes the secret it made.
    succeeded(&obol_in(dir, &["sell", "delete", "echo", "-y"], &[], None));
    assert!(!secret_file.exists());
}
