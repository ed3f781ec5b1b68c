//! Self-describing offers: the Bazaar extension of their 402s is accepted by the official
//! `@x402/extensions` bazaar validator (ajv over the extension's own schema, and the spec
//! checks), for a described HTTP API and for an inference offer's default chat-completions
//! description; the resource's service name, tags and icon survive the SDK's sanitising. The
//! OpenAPI document passes `openapi-spec-validator` and carries the 402s' prices, as do
//! `/.well-known/x402`, `/.well-known/x402.json` and `/llms.txt`.
//! Under CI a missing SDK fails the test; elsewhere it says why it skips.

use std::process::Command;

use serde_json::{Value, json};

use crate::interop::{node_sdk, python_sdk, repo};
use crate::stack::{
    PAY_TO, StackGuard, gateway, sell_from_json, sell_llm, upstream, wait_offer_ready,
};
use crate::{obol_in, succeeded};

fn check(node_path: &std::path::Path, url: &str, method: &str) -> Value {
    let out = Command::new("node")
        .arg(repo().join("tests/interop/bazaar-check.cjs"))
        .args([url, method])
        .env("NODE_PATH", node_path)
        .output()
        .unwrap();
    succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_bazaar_validator_accepts_our_402s() {
    let Some(node_path) = node_sdk() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_up(dir, None, false);
    let _guard = StackGuard(dir);

    let weather = json!({
        "type": "http",
        "upstream": {"url": upstream},
        "payment": {"network": "base-sepolia", "payTo": PAY_TO, "price": {"perRequest": "0.001"}},
        "discovery": {
            "serviceName": "Weather", "tags": ["weather", "forecast"],
            "iconUrl": "https://weather.example/icon.png",
            "input": {
                "method": "GET",
                "queryParams": {"properties": {"city": {"type": "string"}}, "required": ["city"]},
                "example": {"city": "Oslo"}
            },
            "output": {
                "example": {"city": "Oslo", "temp": 4.5},
                "schema": {"properties": {"temp": {"type": "number"}}, "required": ["temp"]}
            }
        }
    });
    sell_from_json(dir, "weather", &weather).await;
    succeeded(&obol_in(
        dir,
        &sell_llm(&upstream, "llm", "qwen3:0.6b", "0.001"),
        &[],
        None,
    ));
    wait_offer_ready(dir, "llm").await;

    let base = gateway(dir);
    let report = check(&node_path, &format!("{base}/services/weather/now"), "GET");
    assert_eq!(report["status"], 402);
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["specValid"], true, "{report}");
    assert_eq!(
        report["info"]["input"]["queryParams"],
        json!({"city": "Oslo"})
    );
    assert_eq!(
        report["metadata"],
        json!({"serviceName": "Weather", "tags": ["weather", "forecast"], "iconUrl": "https://weather.example/icon.png"})
    );

    let report = check(
        &node_path,
        &format!("{base}/services/llm/v1/chat/completions"),
        "POST",
    );
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["specValid"], true, "{report}");
    assert_eq!(report["info"]["input"]["method"], "POST");
    assert_eq!(report["info"]["input"]["body"]["model"], "qwen3:0.6b");

    // The OpenAPI document: valid for a maintained validator, priced as the 402s.
    let Some(python) = python_sdk() else {
        return;
    };
    for path in ["/openapi.json", "/.well-known/openapi.json"] {
        let out = Command::new(&python)
            .arg(repo().join("tests/interop/openapi_check.py"))
            .arg(format!("{}{path}", gateway(dir)))
            .output()
            .unwrap();
        succeeded(&out);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report,
            json!({"valid": true, "version": "3.1.0", "errors": []}),
            "{path}"
        );
    }
    let document: Value =
        obol_testkit::http::get_json(format!("{}/openapi.json", gateway(dir))).await;
    let weather = &document["paths"]["/services/weather/{rest}"]["get"];
    assert_eq!(weather["x-payment-info"]["price"], "0.001");
    assert_eq!(weather["parameters"][1]["name"], "city");
    let llm = &document["paths"]["/services/llm/{rest}"]["post"];
    assert_eq!(llm["x-payment-info"]["accepts"][0]["amount"], "1000");
    assert_eq!(
        llm["requestBody"]["content"]["application/json"]["example"]["model"],
        "qwen3:0.6b"
    );

    // The well-known documents and /llms.txt list both, at the same prices.
    let get = |path: &'static str| {
        let url = format!("{}{path}", gateway(dir));
        async move { reqwest::get(url).await.unwrap() }
    };
    let resources: Value = get("/.well-known/x402").await.json().await.unwrap();
    let amounts: Vec<(&str, &str)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().unwrap(),
                r["accepts"][0]["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(amounts.len(), 2, "{resources}");
    assert!(
        amounts.iter().all(|(_, amount)| *amount == "1000"),
        "{resources}"
    );
    let draft: Value = get("/.well-known/x402.json").await.json().await.unwrap();
    let weather = draft["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["resource"]["serviceName"] == "Weather")
        .unwrap();
    assert_eq!(weather["input"]["queryParams"], json!({"city": "Oslo"}));
    assert_eq!(weather["resource"]["tags"], json!(["weather", "forecast"]));
    let llms = get("/llms.txt").await.text().await.unwrap();
    assert!(
        llms.contains("0.001 USDC/request on base-sepolia (POST to call)"),
        "{llms}"
    );
    assert!(llms.contains("/services/weather): "), "{llms}");
}
