//! Vanity hostnames: an offer sold with `--hostname` is the whole site for requests with that
//! `Host` — its page at `/`, its OpenAPI and `/.well-known/x402`, its API below `/`, with 402s
//! and sign-ins naming `https://<hostname>` — while the stack's own URL serves it as before; a second offer
//! claiming the name gets `HostnameConflict`, and a bad name is refused up front.

use obol_testkit::http::Fetch as _;
use serde_json::Value;

use crate::stack::{StackGuard, gateway, sell_echo, upstream, wait_offer, wait_offer_ready};
use crate::{assert_contains, json_of, obol_in, stderr};

const HOST: &str = "api.example.test";

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_on_its_own_hostname() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_up(dir, None, false);
    let _guard = StackGuard(dir);

    let bad = [
        sell_echo(&upstream, "0.001").as_slice(),
        &["--hostname", "API.example.test:443"],
    ]
    .concat();
    let out = obol_in(dir, &bad, &[], None);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "spec.hostname");

    let sell = [
        sell_echo(&upstream, "0.001").as_slice(),
        &[
            "--hostname",
            HOST,
            "--route",
            "path=/me,gate=auth",
            "--route",
            "path=/*",
        ],
    ]
    .concat();
    let out = obol_in(dir, &sell, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, "echo").await;

    let base = gateway(dir);
    let client = reqwest::Client::new();
    let on_host = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("host", HOST)
            .send()
    };

    let page = on_host("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("https://api.example.test")
    );

    let openapi: Value = on_host("/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["servers"][0]["url"], "https://api.example.test");
    assert!(openapi["paths"].get("/{rest}").is_some(), "{openapi}");

    let x402: Value = on_host("/.well-known/x402")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(x402["resources"][0]["resource"], "https://api.example.test");
    assert_eq!(x402["resources"][0]["accepts"][0]["amount"], "1000");

    for (path, url) in [
        ("/items?x=1", "https://api.example.test/items?x=1"),
        (
            "/services/other/x",
            "https://api.example.test/services/other/x",
        ),
    ] {
        let unpaid = on_host(path).await.unwrap();
        assert_eq!(unpaid.status(), 402, "{path}");
        let required = obol_testkit::x402::challenge_of(&unpaid);
        assert_eq!(required.resource.url, url);
    }

    // Sign-in on the vanity host is for the vanity origin.
    let auth = on_host("/me").await.unwrap();
    assert_eq!(auth.status(), 401);
    assert_eq!(
        auth.headers()["www-authenticate"],
        "SIWX domain=\"api.example.test\", window=\"600\""
    );
    let required = obol_testkit::x402::challenge_of(&auth);
    assert_eq!(
        required.extensions.unwrap()["sign-in-with-x"]["info"]["uri"],
        "https://api.example.test/me"
    );

    // The stack's own URL still serves it, and lists it at its own host.
    let unpaid = client
        .get(format!("{base}/services/echo/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    let catalog: Value = client
        .get(format!("{base}/api/services.json"))
        .fetch_json()
        .await;
    assert_eq!(
        catalog["services"][0]["endpoint"],
        "https://api.example.test"
    );

    // A second claim on the name waits, naming the owner.
    let mut second = sell_echo(&upstream, "0.001").to_vec();
    second[2] = "second";
    second.extend(["--hostname", HOST]);
    let out = obol_in(dir, &second, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer(dir, "second", "UpstreamHealthy").await;
    let status = json_of(&obol_in(
        dir,
        &["--json", "sell", "status", "second"],
        &[],
        None,
    ));
    let published = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RoutePublished")
        .unwrap()
        .clone();
    assert_eq!(published["reason"], "HostnameConflict", "{published}");
    assert_eq!(
        published["message"],
        "api.example.test is already served by default/echo"
    );
}
