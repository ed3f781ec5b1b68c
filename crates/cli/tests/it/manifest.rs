//! An original-style ServiceOffer manifest using the gating fields — routes (free, auth, paid at
//! its own price, the rest paid), several currencies, a vanity hostname and limits — applies
//! unchanged through `obol sell http --from-json` and every route behaves as declared on a
//! devnet stack: the free one passes unpaid, the auth one challenges, the dearer one charges
//! its own price on-chain, the rest asks the offer's price in either currency.

use serde_json::{Value, json};

use crate::stack::{DevnetStackGuard, PAY_TO, gateway, sell_from_json, upstream};
use crate::{json_of, obol_in, stderr, stdout, succeeded};

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_manifest_with_every_gating_field_behaves_as_declared() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = DevnetStackGuard(dir);
    crate::stack_up(dir, None, true);

    let usdc = json!({
        "scheme": "exact", "network": "base-sepolia", "payTo": PAY_TO,
        "maxTimeoutSeconds": 300, "price": {"perRequest": "0.001"}
    });
    let manifest = json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "type": "http",
            "upstream": {"url": upstream, "healthPath": "/health"},
            "payment": usdc,
            "payments": [usdc, {
                "scheme": "exact", "network": "base-sepolia", "payTo": PAY_TO,
                "maxTimeoutSeconds": 300, "asset": {"symbol": "OBOL"},
                "price": {"perRequest": "0.5"}
            }],
            "routes": [
                {"path": "/public/*", "methods": ["GET"], "gate": "free", "summary": "Read"},
                {"path": "/me", "gate": "auth", "summary": "Your account"},
                {"path": "/premium", "methods": ["GET"], "price": "0.002", "summary": "Dearer"},
                {"path": "/*"}
            ],
            "hostname": "shop.example.test",
            "limits": {"maxInFlight": 4, "rps": 50}
        }
    });
    sell_from_json(dir, "shop", &manifest).await;
    let stored = json_of(&obol_in(
        dir,
        &["--json", "sell", "status", "shop"],
        &[],
        None,
    ));
    assert_eq!(stored["spec"], manifest["spec"], "applied unchanged");

    let base = format!("{}/services/shop", gateway(dir));
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let free = get("/public/news").await.unwrap();
    assert_eq!(free.status(), 200);
    assert!(!free.headers().contains_key("payment-response"));

    let auth = get("/me").await.unwrap();
    assert_eq!(auth.status(), 401);
    assert!(auth.headers().contains_key("www-authenticate"));

    let rest = get("/anything").await.unwrap();
    assert_eq!(rest.status(), 402);
    let body: Value = rest.json().await.unwrap();
    let amounts = obol_testkit::json::strings(&body["accepts"], "amount");
    assert_eq!(amounts, ["1000", "500000000000000000"], "USDC or OBOL");

    let out = obol_in(
        dir,
        &[
            "buy",
            "pay",
            &format!("{base}/premium"),
            "--max-amount",
            "0.01",
        ],
        &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[1])],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    assert!(
        stderr(&out).starts_with(&format!(
            "paid 0.002 USDC on base-sepolia to {PAY_TO} — transaction 0x"
        )),
        "{}",
        stderr(&out)
    );
    let wrong_method = client.post(format!("{base}/premium")).send().await.unwrap();
    assert_eq!(
        wrong_method.status(),
        402,
        "POST falls to /*, paid at the offer's price"
    );

    let site = client
        .get(format!("{}/", gateway(dir)))
        .header("host", "shop.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(site.status(), 200);
    assert!(
        site.text()
            .await
            .unwrap()
            .contains("https://shop.example.test")
    );
}
