//! A proxy configured in the environment (`HTTP_PROXY` and friends) is used for URLs the user
//! typed, never by a public-only fetcher: the proxy would resolve names itself, past the
//! resolver's check. The environment is read when the client is built, so the fetches run in a
//! child process (this test binary again) started with the proxy variables set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use obol_erc8004::{AddressPolicy, DocumentFetcher, Erc8004Error, RegistrationDocument};
use tokio::net::TcpListener;

/// Set in the child process.
const CHILD: &str = "OBOL_TEST_ENV_PROXY_CHILD";
/// Where the child fetches, through the proxy or not at all.
const PROXIED: &str = "http://proxied.invalid/agent.json";

#[tokio::test]
async fn only_the_user_fetcher_uses_the_environment_proxy() {
    // A forward proxy answering every request with a document, and noting what was asked.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new()
        .fallback(
            |State(seen): State<Arc<Mutex<Vec<String>>>>, request: Request| async move {
                seen.lock().unwrap().push(request.uri().to_string());
                RegistrationDocument::active("proxied", "served by the proxy").to_json_pretty()
            },
        )
        .with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "env_proxy::proxy_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(name, &proxy);
    }
    for name in ["NO_PROXY", "no_proxy"] {
        child.env_remove(name);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the fetches: {stdout}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [PROXIED],
        "only the user's fetcher went through the proxy"
    );
}

/// The child half of [`only_the_user_fetcher_uses_the_environment_proxy`]; does nothing unless
/// started by it.
#[tokio::test]
async fn proxy_child_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let timeout = Duration::from_secs(5);
    // A URL the user typed: through the proxy, which answers for a name that does not exist.
    let any = DocumentFetcher::new(timeout).unwrap();
    assert_eq!(any.fetch(PROXIED).await.unwrap().name, "proxied");
    // Read from the chain: resolved here (and refused, or not found), never handed to the proxy.
    let public_only = DocumentFetcher::with_policy(timeout, AddressPolicy::PublicOnly).unwrap();
    assert!(public_only.fetch(PROXIED).await.is_err());
    let err = public_only
        .fetch("http://localhost:9/agent.json")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Erc8004Error::NonPublicAddress { .. }),
        "{err}"
    );
}
