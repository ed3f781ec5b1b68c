//! Sign-In-With-X with the official client: a stack sells an API whose routes are for
//! signed-in wallets only (`--route path=/*,gate=auth`); npm `@x402/extensions`
//! (`createSIWxPayload` + `encodeSIWxHeader`, a viem account) reads the 401 challenge, signs
//! it and gets through as that wallet; its replay is refused. A paid offer with free calls
//! (`--free-quota 2`): `wrapFetchWithSIWx` signs in on its 402 and gets two calls free. Under CI a missing SDK fails the
//! test; elsewhere it says why it skips.

use std::process::Command;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use obol_x402::LocalSigner;
use serde_json::Value;

use crate::interop::{node_sdk, repo};
use crate::stack::{StackGuard, gateway, sell_echo, wait_offer_ready};
use crate::{obol_in, stderr, succeeded};

/// An upstream answering every path with the `X-Verified-Wallet` it was told.
async fn wallet_echo() -> String {
    let app = Router::new().fallback(get(|headers: HeaderMap| async move {
        headers
            .get("x-verified-wallet")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_siwx_client_signs_in_to_an_auth_route() {
    let Some(node_path) = node_sdk() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = wallet_echo().await;
    crate::stack_up(dir, None, false);
    let _guard = StackGuard(dir);
    let mut sell = sell_echo(&upstream, "0.001").to_vec();
    sell.extend(["--route", "path=/*,gate=auth,summary=For signed-in wallets"]);
    let out = obol_in(dir, &sell, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, "echo").await;

    let url = format!("{}/services/echo/me", gateway(dir));
    let out = Command::new("node")
        .arg(repo().join("tests/interop/siwx-client.cjs"))
        .args([&url, obol_devnet::DEV_KEYS[3]])
        .env("NODE_PATH", &node_path)
        .output()
        .unwrap();
    succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["challenge"], 401, "{report}");
    assert!(
        report["wwwAuthenticate"]
            .as_str()
            .unwrap()
            .starts_with("SIWX domain=\"127.0.0.1:"),
        "{report}"
    );
    assert_eq!(report["signed"]["status"], 200, "{report}");
    assert_eq!(
        report["signed"]["body"], report["address"],
        "the upstream saw the wallet"
    );
    assert_eq!(report["replay"]["status"], 401, "{report}");
    let replay: Value = serde_json::from_str(report["replay"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(replay["reason"], "invalid_siwx_nonce");

    // A paid offer with two free calls a day: `wrapFetchWithSIWx` signs in on the 402 and gets
    // them; the third call is a 402 again.
    let mut quota = sell_echo(&upstream, "0.001").to_vec();
    quota[2] = "quota";
    quota.extend(["--free-quota", "2"]);
    let out = obol_in(dir, &quota, &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_offer_ready(dir, "quota").await;
    let url = format!("{}/services/quota/anything", gateway(dir));
    let out = Command::new("node")
        .arg(repo().join("tests/interop/siwx-client.cjs"))
        .args(["wrap", &url, obol_devnet::DEV_KEYS[4], "3"])
        .env("NODE_PATH", &node_path)
        .output()
        .unwrap();
    succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["statuses"],
        serde_json::json!([200, 200, 402]),
        "{report}"
    );
    let wallet = LocalSigner::from_private_key_hex(obol_devnet::DEV_KEYS[4])
        .unwrap()
        .address()
        .to_checksum(None);
    assert_eq!(report["wallets"][0], wallet.as_str(), "{report}");
}
