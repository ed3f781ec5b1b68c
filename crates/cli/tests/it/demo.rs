//! `obol demo`, the README's main job: everything in one process, receipts at the end.

use serde_json::Value;

use crate::{assert_contains, obol_in, stderr};

fn atomic(value: &Value) -> u128 {
    value.as_str().unwrap().parse().unwrap()
}

#[test]
fn the_demo_sells_buys_pays_and_settles_on_its_devnet() {
    let root = tempfile::tempdir().unwrap();
    let out = obol_in(root.path(), &["--json", "demo", "--calls", "3"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = report["calls"].as_array().unwrap();
    let services: Vec<&str> = calls
        .iter()
        .map(|c| c["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["demo-llm", "demo-llm", "demo-llm", "demo-quotes"]
    );
    for call in calls {
        assert_eq!(call["status"], 200);
        let tx = call["transaction"].as_str().unwrap();
        assert!(tx.starts_with("0x") && tx.len() == 66, "{tx}");
    }
    // 3 × 0.001 + 0.002 USDC, exactly, on both sides.
    let paid = 5000;
    let (seller, buyer) = (&report["seller"], &report["buyer"]);
    assert_eq!(atomic(&seller["after"]) - atomic(&seller["before"]), paid);
    assert_eq!(atomic(&buyer["before"]) - atomic(&buyer["after"]), paid);
    assert_eq!(report["remainingAuthorizations"], 0);
    assert!(
        report["answer"]
            .as_str()
            .unwrap()
            .starts_with("[obol-demo — a deterministic demo model, not an LLM] call 1")
    );
    assert!(report["quote"]["quote"].is_string());
    // Published: an ERC-8004 agent whose agentURI is the stack's registration document.
    let agent = &report["agent"];
    assert_eq!(agent["outcome"], "registered", "{agent}");
    assert!(agent["agentId"].is_u64(), "{agent}");
    assert_eq!(
        agent["agentUri"],
        format!(
            "{}.well-known/agent-registration.json",
            report["storefront"].as_str().unwrap()
        )
    );
    assert_eq!(
        agent["agentRegistry"],
        "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
    );
    assert!(
        report["storefront"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    // Everything it started is gone: the temporary stack directory too.
    let dir = report["dir"].as_str().unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} removed");
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    let root = tempfile::tempdir().unwrap();
    let out = obol_in(root.path(), &["demo", "--calls", "0"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&stderr(&out), "--calls must be between 1 and 100");
}
