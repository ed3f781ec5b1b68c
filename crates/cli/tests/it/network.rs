//! `obol network …` and `obol wallet balance` against a real anvil.

use obol_devnet::Anvil;

use crate::{assert_contains, obol_in, stderr, stdout};

const SECRET_URL: &str = "http://127.0.0.1:1/v2/SECRETSECRETSECRET";
const A0: &str = obol_testkit::accounts::DEV_ADDRESSES[0];

/// `obol network add devnet --chain-id 84532 --endpoint <endpoint>` with `extra` flags.
fn add_devnet(dir: &std::path::Path, endpoint: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["network", "add", "devnet", "--chain-id", "84532"];
    args.extend(["--endpoint", endpoint]);
    args.extend_from_slice(extra);
    obol_in(dir, &args, &[], None)
}

fn no_secret(out: &std::process::Output) {
    assert!(
        !stdout(out).contains("SECRET") && !stderr(out).contains("SECRET"),
        "secret leaked"
    );
}

#[tokio::test]
async fn add_list_status_remove() {
    let anvil = Anvil::spawn().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let live = anvil.endpoint();

    // A dead endpoint is refused by the check, with the cause and a way out.
    let out = add_devnet(dir, SECRET_URL, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("http://127.0.0.1:1/v2/***") && err.contains("Connection refused"),
        "{err}"
    );
    assert!(err.contains("--no-check"), "{err}");
    no_secret(&out);

    // Custom names need a chain id; known ones check it.
    let out = obol_in(
        dir,
        &["network", "add", "devnet", "--endpoint", &live],
        &[],
        None,
    );
    assert_contains(&stderr(&out), "--chain-id");
    let out = obol_in(
        dir,
        &["network", "add", "base", "--endpoint", &live],
        &[],
        None,
    );
    assert_contains(
        &stderr(&out),
        "serves chain id 84532, but base is chain id 8453",
    );

    let out = add_devnet(dir, SECRET_URL, &["--no-check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    no_secret(&out);
    let out = add_devnet(dir, &live, &["--allow-writes"]);
    assert_eq!(
        stdout(&out),
        format!("Added {live} for devnet (chain 84532, read-write)\n")
    );

    let out = obol_in(dir, &["network", "list"], &[], None);
    assert_output_snapshot!("list", stdout(&out), &live => "LIVE");

    // Status probes each endpoint; the chain still has a working one, so it succeeds.
    let out = obol_in(dir, &["--json", "network", "status"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    no_secret(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let endpoints = &status["chains"][0]["endpoints"];
    assert!(endpoints[0]["error"].is_string());
    assert_eq!(endpoints[1]["chainIdOk"], true);
    assert_eq!(endpoints[1]["head"], 0);

    // Balance goes through the failover (the dead endpoint comes first).
    let out = obol_in(
        dir,
        &["wallet", "balance", "--chain", "devnet"],
        &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[0])],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{A0} on devnet (chain 84532): 10000 ETH\n")
    );

    let out = obol_in(
        dir,
        &["network", "remove", "devnet", "--endpoint", &live],
        &[],
        None,
    );
    assert_eq!(stdout(&out), "Removed 1 endpoint from devnet\n");
    let out = obol_in(dir, &["network", "status", "devnet"], &[], None);
    assert_eq!(out.status.code(), Some(1), "no working endpoint left");
    let out = obol_in(
        dir,
        &["network", "remove", "devnet", "--endpoint", &live],
        &[],
        None,
    );
    assert_contains(&stderr(&out), "no endpoint http://127.0.0.1");
}

#[test]
fn chains_without_endpoints_say_how_to_add_one() {
    let root = tempfile::tempdir().unwrap();
    let out = obol_in(
        root.path(),
        &["wallet", "balance", "--chain", "base"],
        &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[0])],
        None,
    );
    assert_eq!(
        stderr(&out),
        "error: no RPC endpoint configured for base; add one with `obol network add base --endpoint URL`\n"
    );
    let out = obol_in(root.path(), &["network", "list"], &[], None);
    assert!(stdout(&out).starts_with("No RPC endpoints configured."));
}
