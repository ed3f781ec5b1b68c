//! Paying in a token outside the built-in table: a second EIP-3009 stablecoin placed on the
//! devnet at an address no table knows, sold by a stack, paid by `obol buy pay` once the buyer
//! confirms its address, with exact balance moves; refused without the confirmation, and never
//! under the name of a token the table has.

use serde_json::json;

use crate::buy::{MODEL, chat};
use crate::stack::{DevnetStackGuard, PAY_TO, sell_from_json, upstream};
use crate::{assert_contains, balance, devnet_url, json_of, obol_in, stderr, succeeded};

/// Where the test places its stablecoin: no chain's table lists it.
const COIN: &str = "0xe0C0000000000000000000000000000000000402";
const BUYER_KEY: &str = obol_devnet::DEV_KEYS[4];
const SELLER_KEY: &str = obol_devnet::DEV_KEYS[2];

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_outside_the_table_is_paid_once_its_address_is_confirmed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = DevnetStackGuard(dir);
    obol_devnet::place_stablecoin(&devnet_url(dir), COIN.parse().unwrap())
        .await
        .unwrap();
    crate::stack_up(dir, None, true);
    let manifest = json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "coin", "namespace": "default"},
        "spec": {
            "type": "http",
            "upstream": {"url": upstream, "healthPath": "/health"},
            "payment": {
                "scheme": "exact", "network": "base-sepolia", "payTo": PAY_TO,
                "maxTimeoutSeconds": 300,
                "asset": {"address": COIN, "symbol": "EURT", "decimals": 6,
                          "eip712Name": "USDC", "eip712Version": "2"},
                "price": {"perRequest": "0.002"}
            }
        }
    });
    sell_from_json(dir, "coin", &manifest).await;
    let mut inference = manifest.clone();
    inference["spec"]["type"] = json!("inference");
    inference["spec"]["model"] = json!({"name": MODEL});
    sell_from_json(dir, "llm", &inference).await;
    let url = format!("{}/services/coin/data", crate::stack::gateway(dir));
    let pay = |extra: &[&str]| {
        let mut args = vec!["buy", "pay", url.as_str(), "--max-amount", "0.01"];
        args.extend_from_slice(extra);
        obol_in(dir, &args, &[("OBOL_PRIVATE_KEY", BUYER_KEY)], None)
    };
    let refused = |extra: &[&str], reason: &str| {
        let out = pay(extra);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{reason}: {}", stderr(&out));
    };

    // Unknown until confirmed; never under a name the table has; only an address the seller
    // asks for.
    refused(
        &[],
        "unknown token or network (a token outside the built-in table is paid with --token-address)",
    );
    refused(
        &["--token-address", COIN],
        "USDC on base-sepolia is 0x036CbD53842c5426634e7929541eC2318f3dCF7e; name the token at",
    );
    refused(
        &[
            "--token",
            "EURT",
            "--token-address",
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        ],
        "the seller asks for no payment in 0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    );
    assert!(
        !dir.join("config/tokens.json").exists(),
        "nothing confirmed"
    );

    let coins = |key: &str| balance(dir, "devnet", key, "EURT");
    let out = pay(&["--token", "EURT", "--token-address", COIN]);
    succeeded(&out);
    assert_contains(
        &stderr(&out),
        "confirmed EURT = 0xe0C0000000000000000000000000000000000402 on base-sepolia (6 decimals, eip3009)",
    );
    // `wallet balance` knows the confirmed token now: read before and after a second payment.
    let (buyer, seller) = (coins(BUYER_KEY), coins(SELLER_KEY));
    assert_eq!(buyer, obol_devnet::USDC_FUNDING - 2000, "the first payment");

    // Remembered: no address needed again; the cap reads in its decimals.
    succeeded(&pay(&["--token", "EURT"]));
    assert_eq!(coins(BUYER_KEY), buyer - 2000);
    assert_eq!(coins(SELLER_KEY), seller + 2000);
    let out = obol_in(
        dir,
        &[
            "buy",
            "pay",
            &url,
            "--max-amount",
            "0.001",
            "--token",
            "EURT",
        ],
        &[("OBOL_PRIVATE_KEY", BUYER_KEY)],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "0.002 EURT on base-sepolia exceeds --max-amount 0.001",
    );
    assert_eq!(coins(BUYER_KEY), buyer - 2000, "nothing paid over the cap");

    // A pool in it: priced, spent and shown in the confirmed token.
    let out = obol_in(
        dir,
        &[
            "buy",
            "inference",
            &crate::stack::gateway(dir),
            "--token",
            "EURT",
            "--count",
            "2",
            "--yes",
        ],
        &[("OBOL_PRIVATE_KEY", BUYER_KEY)],
        None,
    );
    succeeded(&out);
    assert_contains(&stderr(&out), "2 calls = 0.004 EURT");
    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    assert_eq!(coins(BUYER_KEY), buyer - 3 * 2000);
    let list = json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None));
    assert_eq!(list[0]["price"], "0.002 EURT");
    let status = json_of(&obol_in(
        dir,
        &["--json", "buy", "status", list[0]["name"].as_str().unwrap()],
        &[],
        None,
    ));
    assert_eq!(status["status"]["totalSpent"], "0.004 EURT");
}
