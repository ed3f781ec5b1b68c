//! The CLI against a cluster (issue 19, item 5): `obol stack init --backend kubernetes`, then
//! `obol sell`, `obol buy` and `obol stack status` on the cluster's resources — here an
//! in-memory Kubernetes API (no cluster runs on these machines) reconciled by `obol operator`
//! and, for purchases, `obol buyer --kubernetes`.

use std::path::Path;
use std::sync::Arc;

use obol_control::purchase::PurchaseRequestSpec;
use obol_control::resource::is_true;
use obol_control::{ServiceOfferSpec, Store, StoreExt};
use obol_kube::KubeStore;
use obol_kube::testing::InMemoryApi;
use serde_json::{Value, json};

use crate::cluster::{kubeconfig, spawn_obol, until};
use crate::stack::{sell_echo, upstream};
use crate::{json_of, obol_in, refused, stderr, stdout};

/// `obol operator` on the cluster of `kubeconfig`, leading as `operator-0`.
fn operator(dir: &Path, kubeconfig: &str) -> crate::interop::Killed {
    let args = [
        "operator",
        "--kubeconfig",
        kubeconfig,
        "--listen",
        "127.0.0.1:0",
        "--identity",
        "operator-0",
        "--lease-namespace",
        "obol-system",
    ];
    spawn_obol(dir, "operator", &args, "operator ", 4).0
}

/// `obol --json doctor`'s checks: name → status.
fn doctor_checks(out: &std::process::Output) -> serde_json::Map<String, Value> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["status"].clone()))
        .collect()
}

async fn store_of(api: &InMemoryApi) -> Arc<dyn Store> {
    Arc::new(KubeStore::new(api.client().unwrap()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sells_on_a_cluster_as_on_the_embedded_daemon() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let api = InMemoryApi::start().await.unwrap();
    let config = kubeconfig(dir, &api.url());
    let config = config.to_str().unwrap();
    let obol = |args: &[&str]| obol_in(dir, args, &[], None);

    // A cluster that does not answer: nothing is written.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dead = tempfile::tempdir().unwrap();
    let dead_config = kubeconfig(dead.path(), &closed_url);
    let init = |kubeconfig: &str| {
        obol(&[
            "--json",
            "stack",
            "init",
            "--force",
            "--backend",
            "kubernetes",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            "sellers",
        ])
    };
    refused(
        &init(dead_config.to_str().unwrap()),
        &format!("cannot read the obol.org resources of the cluster at {closed_url}"),
    );
    assert!(!dir.join("config/stack.json").exists());
    refused(
        &obol(&["stack", "init", "--kubeconfig", config]),
        "add --backend kubernetes",
    );

    let initialised = json_of(&init(config));
    assert_eq!(initialised["status"], "initialised");
    assert_eq!(initialised["backend"], "kubernetes");
    assert_eq!(initialised["namespace"], "sellers");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config/stack.json")).unwrap())
            .unwrap();
    assert_eq!(settings["kubernetes"]["namespace"], "sellers");
    assert_eq!(settings["kubernetes"]["systemNamespace"], "obol-system");

    // No operator yet: the status says so (and fails).
    let status = obol(&["--json", "stack", "status"]);
    assert_eq!(status.status.code(), Some(1));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["operatorLeader"], Value::Null);
    let doctor = obol(&["--json", "doctor"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", stdout(&doctor));
    let checks = doctor_checks(&doctor);
    assert_eq!(checks["cluster"], "ok");
    assert_eq!(checks["operator"], "fail");
    assert_eq!(checks["offers"], "skip");
    assert_eq!(checks["gateway"], "skip");

    let _operator = operator(dir, config);
    let store = store_of(&api).await;
    let upstream = upstream().await;
    let sold = json_of(&obol(
        &[&["--json"][..], &sell_echo(&upstream, "0.001")[..]].concat(),
    ));
    assert_eq!(sold["outcome"], "created");
    assert_eq!(
        sold["offer"]["metadata"]["namespace"], "sellers",
        "the setting's namespace is the default"
    );
    // Validation runs before anything reaches the cluster, with the daemon's message.
    let mut bad = sell_echo(&upstream, "0.001");
    bad[2] = "bad";
    bad[6] = "0xnope";
    refused(&obol(&bad), "payTo");
    assert!(
        store
            .get::<ServiceOfferSpec>("sellers", "bad")
            .await
            .unwrap()
            .is_none()
    );

    until("the operator makes the offer Ready", async || {
        let status = json_of(&obol(&["--json", "sell", "status", "echo"]));
        status["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
    .await;
    let listed = json_of(&obol(&["--json", "sell", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let status = obol(&["--json", "stack", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status = json_of(&status);
    assert_eq!(status["offers"], json!({"total": 1, "ready": 1}));
    assert_eq!(status["purchases"], json!({"total": 0, "ready": 0}));
    assert_eq!(status["operatorLeader"], "operator-0");
    assert_eq!(status["server"], format!("{}/", api.url()));
    let doctor = obol(&["--json", "doctor"]);
    let checks = doctor_checks(&doctor);
    assert_eq!(checks["operator"], "ok", "{}", stdout(&doctor));
    assert_eq!(checks["offer sellers/echo"], "ok");
    assert!(
        stdout(&doctor).contains("operator-0 leads (renewed"),
        "{}",
        stdout(&doctor)
    );
    let human = stdout(&obol(&["stack", "status"]));
    assert!(human.contains("offers:      1 (1 ready)"), "{human}");
    assert!(human.contains("operator-0 leads"), "{human}");

    // The storefront's branding is the gateways' setting: the CLI writes it into their
    // ConfigMap, keeping what else is there; without the ConfigMap it says what is missing.
    refused(
        &obol(&["sell", "info", "set", "--display-name", "Sellers Inc"]),
        "the ConfigMap obol-system/obol-stack-settings is missing",
    );
    api.put_config_map(
        "obol-system",
        "obol-stack-settings",
        &[(
            "stack.json",
            r#"{"facilitator": {"url": "http://obol-facilitator:4040"}}"#,
        )],
    );
    let branded = obol(&["sell", "info", "set", "--display-name", "Sellers Inc"]);
    assert!(branded.status.success(), "{}", stderr(&branded));
    let map = api
        .core_object("configmaps", "obol-system", "obol-stack-settings")
        .unwrap();
    let gateways: Value =
        serde_json::from_str(map["data"]["stack.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        gateways,
        json!({"facilitator": {"url": "http://obol-facilitator:4040"},
               "branding": {"displayName": "Sellers Inc"}})
    );
    let shown = json_of(&obol(&["--json", "sell", "info", "show"]));
    assert_eq!(shown, json!({"displayName": "Sellers Inc"}));

    // What only the embedded daemon does is refused, saying why.
    refused(&obol(&["stack", "up"]), "live in a Kubernetes cluster");
    refused(&obol(&["stack", "down"]), "live in a Kubernetes cluster");

    // An upstream credential from a file becomes a Kubernetes Secret in the offer's namespace;
    // the CLI shows its keys, never its value, and deleting the offer deletes it.
    let key_file = dir.join("upstream.key");
    std::fs::write(&key_file, "sk-cluster-seller\n").unwrap();
    let keyed = obol(
        &[
            &sell_echo(&upstream, "0.001")[..],
            &["--upstream-auth-file", key_file.to_str().unwrap()][..],
        ]
        .concat(),
    );
    assert!(keyed.status.success(), "{}", stderr(&keyed));
    let secret = api
        .core_object("secrets", "sellers", "echo-upstream-auth")
        .expect("the Secret is in the cluster");
    assert_eq!(secret["data"]["token"], "c2stY2x1c3Rlci1zZWxsZXI=");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "obol"
    );
    let listed = obol(&["--json", "secret", "list"]);
    assert_eq!(
        json_of(&listed),
        json!([{"namespace": "sellers", "name": "echo-upstream-auth", "keys": ["token"]}])
    );
    assert!(!stdout(&listed).contains("sk-cluster"));
    until(
        "the operator reads the Secret and the offer is Ready again",
        async || {
            store
                .get::<ServiceOfferSpec>("sellers", "echo")
                .await
                .unwrap()
                .is_some_and(|o| {
                    o.status.observed_generation == o.metadata.generation
                        && is_true(&o.status.conditions, "Ready")
                })
        },
    )
    .await;

    // Deleting goes through the operator's finalizer.
    let deleted = obol(&["sell", "delete", "echo", "-y"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    until("the offer is gone", async || {
        store
            .get::<ServiceOfferSpec>("sellers", "echo")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(
        api.core_object("secrets", "sellers", "echo-upstream-auth")
            .is_none(),
        "the offer's own Secret went with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_stack_buys_through_its_buyer_replica() {
    let root = tempfile::tempdir().unwrap();
    let seller_dir = root.path().join("seller");
    let dir = root.path().join("buyer");
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let upstream = upstream().await;
    let _seller = crate::buy::selling_stack(&seller_dir, &upstream, "USDC", "0.001").await;
    let seller = crate::stack::gateway(&seller_dir);
    // The buyer knows the devnet chain as the seller's machine does.
    std::fs::copy(
        seller_dir.join("config/networks.json"),
        dir.join("config/networks.json"),
    )
    .unwrap();

    let api = InMemoryApi::start().await.unwrap();
    let config = kubeconfig(&dir, &api.url());
    let config = config.to_str().unwrap();
    let (_buyer, proxy) = spawn_obol(
        &dir,
        "buyer",
        &[
            "buyer",
            "--kubernetes",
            "--kubeconfig",
            config,
            "--listen",
            "127.0.0.1:0",
        ],
        "buyer proxy listening on ",
        4,
    );
    let address = proxy.trim_start_matches("http://");
    let init = obol_in(
        &dir,
        &[
            "stack",
            "init",
            "--backend",
            "kubernetes",
            "--kubeconfig",
            config,
            "--buyer",
            address,
        ],
        &[],
        None,
    );
    assert!(init.status.success(), "{}", stderr(&init));

    let key = obol_devnet::DEV_KEYS[1];
    let buyer_before = crate::balance(&seller_dir, "devnet", key, "USDC");
    let buy = |args: &[&str]| obol_in(&dir, args, &[("OBOL_PRIVATE_KEY", key)], None);
    let bought = buy(&[
        "--json",
        "buy",
        "inference",
        &seller,
        "--count",
        "2",
        "--yes",
    ]);
    assert!(bought.status.success(), "{}", stderr(&bought));
    let bought = json_of(&bought);
    assert_eq!(bought["status"], "bought");
    assert_eq!(bought["remaining"], 2);
    assert_eq!(bought["buyerUrl"], format!("{proxy}/v1"));
    let name = bought["name"].as_str().unwrap().to_owned();
    let store = store_of(&api).await;
    let purchase = store
        .get::<PurchaseRequestSpec>("buy", &name)
        .await
        .unwrap()
        .expect("the purchase is in the cluster");
    assert!(is_true(&purchase.status.conditions, "Ready"));

    // The cluster's buyer proxy spends it.
    let response = reqwest::Client::new()
        .post(format!("{proxy}/v1/chat/completions"))
        .json(&json!({"model": format!("paid/{}", crate::buy::MODEL), "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        crate::balance(&seller_dir, "devnet", key, "USDC"),
        buyer_before - 1000,
        "one call paid"
    );
    let checks = doctor_checks(&obol_in(&dir, &["--json", "doctor"], &[], None));
    assert_eq!(checks["buyer"], "ok");
    assert_eq!(checks[format!("purchase buy/{name}").as_str()], "ok");
    let list = json_of(&obol_in(&dir, &["--json", "buy", "list"], &[], None));
    assert_eq!(list[0]["remaining"], 1, "{list}");
    assert_eq!(list[0]["spent"], 1, "{list}");

    // Cancelled: the buyer's finalizer drops the pool, then the purchase goes.
    let cancelled = obol_in(&dir, &["buy", "cancel", &name, "-y"], &[], None);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    until("the purchase is gone", async || {
        store
            .get::<PurchaseRequestSpec>("buy", &name)
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

/// A facilitator's `/supported` naming `settler` for `upto` on Base Sepolia, serving on `port`
/// from `delay` on (in a cluster it may start after the operator).
fn late_facilitator(port: u16, settler: &'static str, delay: std::time::Duration) {
    use axum::routing::get;
    let supported = json!({
        "kinds": [
            {"x402Version": 2, "scheme": "exact", "network": "eip155:84532"},
            {"x402Version": 2, "scheme": "upto", "network": "eip155:84532",
             "extra": {"facilitatorAddress": settler}}
        ],
        "extensions": [], "signers": {}
    });
    let router = axum::Router::new().route(
        "/supported",
        get(move || {
            let supported = supported.clone();
            async move { axum::Json(supported) }
        }),
    );
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, router).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_lists_the_metered_options_its_facilitator_settles() {
    const SETTLER: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let api = InMemoryApi::start().await.unwrap();
    let config = kubeconfig(dir, &api.url());
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    late_facilitator(port, SETTLER, std::time::Duration::from_secs(3));
    let facilitator = format!("http://127.0.0.1:{port}");
    let args = [
        "operator",
        "--kubeconfig",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--facilitator-url",
        &facilitator,
    ];
    let _operator = spawn_obol(dir, "operator", &args, "operator ", 4);

    let store = store_of(&api).await;
    let model = crate::metered::metered_model().await;
    let offer: obol_control::ServiceOffer =
        serde_json::from_value(crate::metered::metered_offer(&model)).unwrap();
    store.apply(&offer).await.unwrap();
    until("the operator lists the metered option", async || {
        store
            .get::<ServiceOfferSpec>("default", "llm")
            .await
            .unwrap()
            .is_some_and(|o| {
                is_true(&o.status.conditions, "Ready")
                    && o.status
                        .metered
                        .iter()
                        .any(|m| m.facilitator_address == SETTLER)
            })
    })
    .await;
}
