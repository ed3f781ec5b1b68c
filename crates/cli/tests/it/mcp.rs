//! Paid MCP tools with the official clients (PyPI `mcp` as the MCP client, the x402 Python SDK's
//! MCP session paying): `obol sell mcp` on a devnet stack; the tools are listed with their
//! prices, an unpaid call gets the PaymentRequired result, a paid call is settled on the devnet
//! for exactly the tool's price, a replayed payment is refused and a free tool costs nothing.

use std::process::Command;

use obol_x402::primitives::U256;

use crate::interop::{Cleanup, Ledger, address_of, devnet_up, python_sdk, repo, wait_ready};
use crate::stack::{gateway, upstream};
use crate::{obol_in, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_mcp_sdk_pays_our_tools() {
    let Some(python) = python_sdk() else {
        return;
    };
    let root = tempfile::tempdir().expect("a temp dir");
    let dir = root.path();
    let upstream = upstream().await;
    let endpoint = devnet_up(dir);
    let _cleanup = Cleanup(dir);
    crate::stack_up(dir, None, true);
    let seller = address_of(obol_devnet::DEV_KEYS[3]);
    let pay_to = seller.to_checksum(None);
    let out = obol_in(
        dir,
        &[
            "sell",
            "mcp",
            "tools",
            "--upstream",
            &upstream,
            "--tool",
            "weather:0.002",
            "--tool",
            "ping:free",
            "--pay-to",
            &pay_to,
            "--chain",
            "base-sepolia",
            "--no-register",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "sell mcp: {}", stderr(&out));
    wait_ready(dir, "tools").await;
    let url = format!("{}/services/tools", gateway(dir));

    let buyer_key = obol_devnet::DEV_KEYS[5];
    let buyer = address_of(buyer_key);
    let ledger = Ledger::new(&endpoint);
    let before = ledger.pair(obol_devnet::USDC, seller, buyer).await;
    let out = Command::new(&python)
        .arg(repo().join("tests/interop/mcp_pay.py"))
        .args([url.as_str(), "weather", "ping"])
        .env("BUYER_PRIVATE_KEY", buyer_key)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "mcp_pay.py: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let tools = report["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["ping", "weather"]);
    assert!(
        tools[1]["description"]
            .as_str()
            .is_some_and(|d| d.contains("0.002 USDC")),
        "{report}"
    );

    let unpaid = &report["unpaid"];
    assert_eq!(unpaid["resource"]["url"], "mcp://tool/weather");
    assert_eq!(unpaid["accepts"][0]["amount"], "2000");

    let paid = &report["paid"];
    assert_eq!(paid["paymentMade"], true, "{report}");
    assert_eq!(paid["isError"], false, "{report}");
    assert_eq!(paid["text"][0], "{\"ok\":true}", "the upstream's answer");
    let receipt = &paid["paymentResponse"];
    assert_eq!(receipt["success"], true, "{report}");
    let tx = receipt["transaction"].as_str().expect("a transaction");
    ledger.assert_settled(tx, obol_devnet::USDC).await;

    let replay = &report["replay"];
    assert_eq!(replay["first"]["isError"], false, "{report}");
    assert_eq!(replay["first"]["receipt"]["success"], true, "{report}");
    assert_eq!(replay["again"]["isError"], true, "{report}");
    assert_eq!(
        replay["again"]["structuredContent"]["extensions"]["paymentFailure"]["reason"],
        "payment_already_used"
    );

    let free = &report["free"];
    assert_eq!(free["paymentMade"], false, "{report}");
    assert_eq!(free["isError"], false, "{report}");

    // Two paid calls (the session's and the first of the replayed payment), 0.002 USDC each.
    ledger
        .assert_moved(
            obol_devnet::USDC,
            (seller, buyer),
            before,
            U256::from(4000u64),
        )
        .await;
    println!(
        "interop: the PyPI mcp client + x402 MCP session paid a tool call in {} ms (unpaid call → sign → paid call → settled)",
        report["elapsedMs"]
    );
}
