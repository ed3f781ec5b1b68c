//! The original's two-wallet flows (11, 13) on one machine: Alice's stack sells two models and
//! registers as an ERC-8004 agent on the devnet; Bob, with a stack of his own that only buys,
//! discovers her through the registry, checks her identity, buys a pool of each model — one in
//! USDC (EIP-3009), one in OBOL (Permit2, approved once) — and pays through his buyer proxy.
//! Every payment settles on the devnet with exact balance changes.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::stack::{DevnetStackGuard, upstream, wait_offer, wait_offer_ready};
use crate::{balance, json_of, obol_in, succeeded};

const ALICE: &str = obol_devnet::DEV_KEYS[2];
const BOB: &str = obol_devnet::DEV_KEYS[7];

/// Stops Bob's stack when the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        obol_in(self.0, &["stack", "down"], &[], None);
    }
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_sell_register_discover_buy_and_settle_in_usdc_and_permit2() {
    let started = Instant::now();
    let (alice_root, bob_root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, bob) = (alice_root.path(), bob_root.path());
    let upstream = upstream().await;

    // Alice: a devnet, a stack whose public URL is its own gateway, two models, registered.
    succeeded(&obol_in(alice, &["devnet", "up"], &[], None));
    let _alice_down = DevnetStackGuard(alice);
    let public = crate::stack_up_public(alice);
    let alice_address = obol_x402::LocalSigner::from_private_key_hex(ALICE)
        .unwrap()
        .address()
        .to_checksum(None);
    for (name, model, token, price) in [
        ("usdc-llm", "alice-usdc", "USDC", "0.001"),
        ("obol-llm", "alice-obol", "OBOL", "0.5"),
    ] {
        let sell = [
            "sell",
            "inference",
            name,
            "--model",
            model,
            "--upstream",
            &upstream,
            "--pay-to",
            &alice_address,
            "--chain",
            "base-sepolia",
            "--token",
            token,
            "--per-request",
            price,
        ];
        // Registration enabled; no key here, so `sell register` below does it.
        succeeded(&obol_in(alice, &sell, &[], None));
        wait_offer(alice, name, "RoutePublished").await;
    }
    let registered = json_of(&obol_in(
        alice,
        &["--json", "sell", "register", "--chain", "devnet"],
        &[("OBOL_PRIVATE_KEY", ALICE)],
        None,
    ));
    let agent_id = registered["agentId"]
        .as_str()
        .map_or_else(|| registered["agentId"].to_string(), str::to_owned);
    for name in ["usdc-llm", "obol-llm"] {
        wait_offer_ready(alice, name).await;
    }
    let sold = started.elapsed();

    // Bob: the same chain through his own endpoint, a stack that only buys.
    let rpc = crate::devnet_url(alice);
    succeeded(&obol_in(
        bob,
        &[
            "network",
            "add",
            "base-sepolia",
            "--endpoint",
            &rpc,
            "--allow-writes",
        ],
        &[],
        None,
    ));
    crate::stack_up(bob, None, false);
    let _bob_down = Down(bob);

    // Discovery through the registry finds Alice with both offers.
    let found = json_of(&obol_in(
        bob,
        &[
            "--json",
            "buy",
            "discover",
            "--chain",
            "base-sepolia",
            "--from-block",
            "0",
            "--allow-private",
        ],
        &[],
        None,
    ));
    let agent = found["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agentId"].to_string().trim_matches('"') == agent_id)
        .unwrap_or_else(|| panic!("agent {agent_id} in {found}"));
    assert_eq!(agent["listsRegistration"], true);
    let endpoints = obol_testkit::json::strings(&agent["offers"], "endpoint");
    assert!(
        endpoints.contains(&format!("{public}/services/usdc-llm").as_str()),
        "{agent}"
    );
    assert!(
        endpoints.contains(&format!("{public}/services/obol-llm").as_str()),
        "{agent}"
    );
    let discovered = started.elapsed();

    // Bob buys two calls of each, checking Alice's identity first, and pays.
    let proxy = {
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(bob.join("state/daemon.json")).unwrap())
                .unwrap();
        format!(
            "http://{}/v1/chat/completions",
            state["buyer"].as_str().unwrap()
        )
    };
    let mut timings = Vec::new();
    for (model, token, price) in [
        ("alice-usdc", "USDC", 1000u128),
        ("alice-obol", "OBOL", 5 * 10u128.pow(17)),
    ] {
        let paying = Instant::now();
        let before = (
            balance(bob, "base-sepolia", ALICE, token),
            balance(bob, "base-sepolia", BOB, token),
        );
        let bought = json_of(&obol_in(
            bob,
            &[
                "--json",
                "buy",
                "inference",
                &public,
                "--model",
                model,
                "--token",
                token,
                "--count",
                "2",
                "--expected-agent-id",
                &agent_id,
                "--yes",
            ],
            &[("OBOL_PRIVATE_KEY", BOB)],
            None,
        ));
        assert_eq!(bought["remaining"], 2, "{bought}");
        for _ in 0..2 {
            let response = reqwest::Client::new()
                .post(&proxy)
                .json(&json!({"model": format!("paid/{model}"), "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            obol_testkit::x402::assert_paid(&response);
        }
        assert_eq!(
            balance(bob, "base-sepolia", ALICE, token),
            before.0 + 2 * price,
            "{token} to Alice"
        );
        assert_eq!(
            balance(bob, "base-sepolia", BOB, token),
            before.1 - 2 * price,
            "{token} from Bob"
        );
        timings.push((token, paying.elapsed()));
    }
    println!(
        "flows 11/13 (two stacks): Alice sells 2 models + registers {} ms; Bob's stack + discovery {} ms; USDC buy of 2 + 2 paid calls {} ms; OBOL (Permit2 approval) buy of 2 + 2 paid calls {} ms; total {} ms",
        sold.as_millis(),
        (discovered - sold).as_millis(),
        timings[0].1.as_millis(),
        timings[1].1.as_millis(),
        started.elapsed().as_millis()
    );
}
