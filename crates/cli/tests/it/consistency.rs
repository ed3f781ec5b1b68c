//! Every place an offer is published agrees with what its gateway charges: for each offer, the
//! 402 (its `accepts` and Bazaar extension), `/openapi.json`, `/.well-known/x402`,
//! `/.well-known/x402.json`, `/llms.txt`, `/skill.md`, `/api/services.json` and the HTML page
//! name the same endpoint, price and currency; a stopped (drained) offer is in none of them.

use obol_testkit::http::Fetch as _;
use serde_json::{Value, json};

use crate::stack::{StackGuard, gateway, sell_echo, sell_llm, upstream, wait_offer_ready};
use crate::{obol_in, succeeded};

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_agrees_with_the_402s() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_up(dir, None, false);
    let _guard = StackGuard(dir);

    // echo: 0.001 USDC; multi: 0.002 USDC or 0.5 OBOL; llm: inference at 0.003 USDC;
    // gone: stopped.
    succeeded(&obol_in(dir, &sell_echo(&upstream, "0.001"), &[], None));
    let mut multi = sell_echo(&upstream, "0.002").to_vec();
    multi[2] = "multi";
    multi.extend(["--payment", "token=OBOL,price=0.5"]);
    succeeded(&obol_in(dir, &multi, &[], None));
    succeeded(&obol_in(
        dir,
        &sell_llm(&upstream, "llm", "m1", "0.003"),
        &[],
        None,
    ));
    let mut gone = sell_echo(&upstream, "0.009").to_vec();
    gone[2] = "gone";
    succeeded(&obol_in(dir, &gone, &[], None));
    for name in ["echo", "multi", "llm", "gone"] {
        wait_offer_ready(dir, name).await;
    }
    succeeded(&obol_in(dir, &["sell", "stop", "gone"], &[], None));

    let base = gateway(dir);
    let client = reqwest::Client::new();
    let text = |path: &'static str| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { client.get(url).fetch_text().await }
    };
    let json_of = |body: String| serde_json::from_str::<Value>(&body).unwrap();
    let openapi = json_of(text("/openapi.json").await);
    let resources = json_of(text("/.well-known/x402").await);
    let draft = json_of(text("/.well-known/x402.json").await);
    let catalog = json_of(text("/api/services.json").await);
    let (llms, skill, page) = (
        text("/llms.txt").await,
        text("/skill.md").await,
        text("/").await,
    );

    // (name, call path, method, [(atomic amount, symbol, human price)])
    let expected = [
        (
            "echo",
            "/services/echo/x",
            "GET",
            vec![("1000", "USDC", "0.001 USDC/request")],
        ),
        (
            "multi",
            "/services/multi/x",
            "GET",
            vec![
                ("2000", "USDC", "0.002 USDC/request"),
                ("500000000000000000", "OBOL", "0.5 OBOL/request"),
            ],
        ),
        (
            "llm",
            "/services/llm/v1/chat/completions",
            "POST",
            vec![("3000", "USDC", "0.003 USDC/request")],
        ),
    ];
    for (name, path, method, prices) in &expected {
        let endpoint = format!("{base}/services/{name}");
        // The 402 itself.
        let response = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 402, "{name}");
        let required: Value = response.json().await.unwrap();
        let charged = obol_testkit::json::strings(&required["accepts"], "amount");
        let want: Vec<&str> = prices.iter().map(|(amount, _, _)| *amount).collect();
        assert_eq!(charged, want, "{name}: the 402");
        if *name == "llm" {
            assert_eq!(
                required["extensions"]["bazaar"]["info"]["input"]["body"]["model"],
                "m1"
            );
        }

        // OpenAPI: the catch-all operation of the offer.
        let op =
            &openapi["paths"][format!("/services/{name}/{{rest}}")][method.to_ascii_lowercase()];
        let accepts: Vec<&str> = op["x-payment-info"]["accepts"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {op}"))
            .iter()
            .map(|a| a["amount"].as_str().unwrap())
            .collect();
        assert_eq!(accepts, want, "{name}: openapi");
        assert_eq!(
            op["x-payment-info"]["currency"], prices[0].1,
            "{name}: openapi"
        );

        // /.well-known/x402 and the draft.
        let listed = |doc: &Value, list: &str, url: &dyn Fn(&Value) -> Value| {
            doc[list]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| url(r) == json!(endpoint))
                .unwrap_or_else(|| panic!("{name} not in {list}: {doc}"))
                .clone()
        };
        let original = listed(&resources, "resources", &|r| r["resource"].clone());
        let draft_item = listed(&draft, "items", &|r| r["resource"]["url"].clone());
        for (doc, item) in [("x402", &original), ("x402.json", &draft_item)] {
            let amounts = obol_testkit::json::strings(&item["accepts"], "amount");
            assert_eq!(amounts, want, "{name}: {doc}");
        }
        assert_eq!(original["method"], *method, "{name}");

        // The catalog.
        let entry = catalog["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap();
        assert_eq!(entry["endpoint"], json!(endpoint), "{name}: catalog");
        assert_eq!(entry["priceAtomicUnits"], prices[0].0, "{name}: catalog");

        // The human documents name each price and the endpoint.
        for (doc, body) in [("llms.txt", &llms), ("skill.md", &skill), ("page", &page)] {
            assert!(body.contains(&endpoint), "{name}: {doc} lacks {endpoint}");
            for (_, _, human) in prices {
                assert!(body.contains(human), "{name}: {doc} lacks {human}");
            }
        }
    }

    // The stopped offer is nowhere.
    for (doc, body) in [
        ("openapi", openapi.to_string()),
        ("x402", resources.to_string()),
        ("x402.json", draft.to_string()),
        ("catalog", catalog.to_string()),
        ("llms.txt", llms),
        ("skill.md", skill),
        ("page", page),
    ] {
        assert!(
            !body.contains("services/gone"),
            "{doc} lists a drained offer"
        );
    }
}
