//! HTTPS on a stack (`stack init --tls-cert/--tls-key --http-redirect`): the gateway and its
//! 402s speak HTTPS, `obol buy pay` (trusting the test CA through `SSL_CERT_FILE`) pays over
//! it, plain HTTP on the redirect listener is sent to the HTTPS URL, and the admin API stays
//! on loopback HTTP.

use obol_testkit::tls::TestCa;

use crate::stack::{DevnetStackGuard, sell_echo, upstream, wait_ready};
use crate::{json_of, obol_in, stderr, stdout};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_serves_https_and_redirects_plain_http() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = DevnetStackGuard::up(dir);

    let ca = TestCa::new();
    let leaf = ca.leaf("stack");
    let (cert, key, ca_file) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (gateway_port, redirect_port) = (free_port(), free_port());
    let gateway_listen = format!("127.0.0.1:{gateway_port}");
    let redirect_listen = format!("127.0.0.1:{redirect_port}");
    let extra = [
        "--facilitator-chain",
        "devnet",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--http-redirect",
        &redirect_listen,
    ];
    crate::stack_init(dir, &gateway_listen, &extra);
    crate::start_stack(dir);

    let status = json_of(&obol_in(dir, &["--json", "stack", "status"], &[], None));
    let gateway = format!("https://127.0.0.1:{gateway_port}");
    assert_eq!(status["gateway"], gateway.as_str(), "{status}");
    assert!(
        status["admin"].as_str().unwrap().starts_with("127.0.0.1:"),
        "the admin API stays on loopback: {status}"
    );

    let sell = sell_echo(&upstream, "0.001");
    assert!(obol_in(dir, &sell, &[], None).status.success());
    wait_ready(dir).await;
    let url = format!("{gateway}/services/echo/items");
    let trust = ("SSL_CERT_FILE", ca_file.to_str().unwrap());
    let out = obol_in(dir, &["buy", "probe", &url], &[trust], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("x402 v2 — {url}\n")),
        "{}",
        stdout(&out)
    );
    let buyer = ("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[6]);
    let pay = ["buy", "pay", &url, "--max-amount", "0.01"];
    let out = obol_in(dir, &pay, &[trust, buyer], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    assert!(
        stderr(&out).starts_with("paid 0.001 USDC"),
        "{}",
        stderr(&out)
    );

    // A client that does not trust the CA is refused the connection, not served.
    let untrusting = obol_in(dir, &["buy", "probe", &url], &[], None);
    assert!(
        !untrusting.status.success(),
        "served without a trusted certificate"
    );

    let redirected = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{redirect_listen}/services/echo/items?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 308);
    assert_eq!(
        redirected.headers()["location"],
        format!("{url}?x=1").as_str()
    );
}
