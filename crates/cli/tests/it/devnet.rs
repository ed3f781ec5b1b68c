//! `obol devnet up|status|down` and `obol facilitator serve`, end to end through the binary.

use std::path::Path;
use std::process::Command;

use obol_facilitator::Facilitator as _;
use obol_facilitator::http::{ClientOptions, RemoteFacilitator};
use obol_x402::LocalSigner;
use obol_x402::wire::v2;

use crate::{assert_contains, facilitator_serve, obol_in, stderr, stdout};

/// Stops the devnet when the test ends, pass or fail.
struct DevnetGuard<'a>(&'a Path);

impl Drop for DevnetGuard<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["devnet", "down"], &[], None);
    }
}

#[tokio::test]
async fn devnet_and_facilitator_serve() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let out = obol_in(dir, &["devnet", "status"], &[], None);
    assert_eq!(out.status.code(), Some(1), "not running yet");

    let out = obol_in(dir, &["devnet", "up"], &[], None);
    let _guard = DevnetGuard(dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("devnet started: http://127.0.0.1:"),
        "{}",
        stdout(&out)
    );
    let again = obol_in(dir, &["devnet", "up"], &[], None);
    assert!(
        stdout(&again).starts_with("devnet already running"),
        "idempotent"
    );
    let status = obol_in(dir, &["--json", "devnet", "status"], &[], None);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["chainId"], 84532);
    let list = obol_in(dir, &["network", "list"], &[], None);
    assert_contains(&stdout(&list), "devnet (chain 84532): 1 endpoint");

    // The facilitator, paying gas from dev account 9, on a free port.
    let (mut server, banner, lines) = facilitator_serve(dir);
    assert!(
        banner.starts_with("facilitator listening on http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        !banner.contains(&obol_devnet::DEV_KEYS[9][2..]),
        "the key is never printed"
    );
    let url = banner.split_whitespace().nth(3).unwrap().to_owned();

    let client = RemoteFacilitator::new(&url, ClientOptions::default()).unwrap();
    let supported = client.supported().await.unwrap();
    assert_eq!(supported.extensions, ["eip2612GasSponsoring"]);
    let requirement: v2::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1234",
        "asset": obol_devnet::USDC.to_checksum(None), "payTo": obol_testkit::accounts::PAY_TO,
        "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"}
    }))
    .unwrap();
    let buyer = LocalSigner::from_private_key_hex(obol_devnet::DEV_KEYS[1]).unwrap();
    let request = obol_testkit::x402::payment(&buyer, &requirement);
    assert!(client.verify(&request).await.unwrap().is_valid);
    let settled = client.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");

    // TERM stops it gracefully.
    Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "facilitator stopped"), "{rest:?}");
    assert!(server.wait().unwrap().success());

    let out = obol_in(dir, &["devnet", "down"], &[], None);
    assert!(
        stdout(&out).starts_with("devnet stopped"),
        "{}",
        stdout(&out)
    );
    let list = obol_in(dir, &["network", "list"], &[], None);
    assert!(
        !stdout(&list).contains("devnet"),
        "the devnet chain is forgotten"
    );
}
