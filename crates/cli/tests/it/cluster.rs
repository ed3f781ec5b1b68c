//! A stack as it runs in a cluster, on this machine: `obol operator` and two `obol gateway
//! --kubernetes` replicas over an in-memory Kubernetes API (no cluster runs here), the payment
//! guard in a real PostgreSQL, `obol facilitator serve` on the devnet. The operator reconciles
//! an offer to Ready, both replicas serve it, and a payment served by one is refused by the
//! other.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use obol_control::offer::OfferType;
use obol_control::resource::{Object, is_true};
use obol_control::{ServiceOfferSpec, Store, StoreExt};
use obol_kube::KubeStore;
use obol_kube::testing::InMemoryApi;
use obol_testkit::postgres::PgServer;

use crate::backup::{pay_with, sign};
use crate::interop::{Killed, facilitator_serve, spawn_until};
use crate::stack::{DevnetStackGuard, PAY_TO, upstream};

/// A kubeconfig for the in-memory API at `server`.
pub(crate) fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    \
             cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n"
        ),
    )
    .unwrap();
    path
}

/// `obol <args>` as a long-running process with the configuration of `dir` and data and state
/// directories of its own under `dir/<own>` (as a pod has), up once it prints a line starting
/// with `prefix`; its `word`th word.
pub(crate) fn spawn_obol(
    dir: &Path,
    own: &str,
    args: &[&str],
    prefix: &str,
    word: usize,
) -> (Killed, String) {
    spawn_until(
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(args)
            .env("OBOL_CONFIG_DIR", dir.join("config"))
            .env("OBOL_DATA_DIR", dir.join(own).join("data"))
            .env("OBOL_STATE_DIR", dir.join(own).join("state")),
        true,
        prefix,
        word,
    )
}

/// Writes the offer `default/echo` (an HTTP upstream on loopback) to the cluster at `api` and
/// waits until the operator made it Ready.
pub(crate) async fn echo_offer_made_ready(api: &InMemoryApi) {
    let store: Arc<dyn Store> = Arc::new(KubeStore::new(api.client().unwrap()).await.unwrap());
    let upstream = upstream().await;
    let spec =
        ServiceOfferSpec::per_request(OfferType::Http, &upstream, "base-sepolia", PAY_TO, "0.001");
    store
        .apply(&Object::new("default", "echo", spec))
        .await
        .unwrap();
    until("the operator makes the offer Ready", async || {
        store
            .get::<ServiceOfferSpec>("default", "echo")
            .await
            .unwrap()
            .is_some_and(|o| is_true(&o.status.conditions, "Ready"))
    })
    .await;
}

/// Waits (up to 30 s) until `check` holds.
pub(crate) async fn until(what: &str, check: impl AsyncFnMut() -> bool) {
    let (within, every) = (Duration::from_secs(30), Duration::from_millis(100));
    obol_testkit::until(what, within, every, check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_and_two_gateway_replicas_serve_each_payment_once() {
    let Some(postgres) = PgServer::start() else {
        return;
    };
    let guard_url = postgres.database("guard");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let _devnet = DevnetStackGuard::up(dir);
    let (_facilitator, facilitator_url) = facilitator_serve(dir);
    let extra = [
        "--facilitator-url",
        &facilitator_url,
        "--payment-store",
        &guard_url,
    ];
    crate::stack_init(dir, "127.0.0.1:0", &extra);

    let api = InMemoryApi::start().await.unwrap();
    let kubeconfig = kubeconfig(dir, &api.url());
    let kubeconfig = kubeconfig.to_str().unwrap();
    let _operator = spawn_obol(
        dir,
        "operator",
        &[
            "operator",
            "--kubeconfig",
            kubeconfig,
            "--listen",
            "127.0.0.1:0",
        ],
        "operator ",
        4,
    );
    let replica = |own: &str| {
        let args = [
            "gateway",
            "--kubernetes",
            "--kubeconfig",
            kubeconfig,
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
        ];
        spawn_obol(dir, own, &args, "gateway replica listening on ", 4)
    };
    let (_a, a) = replica("a");
    let (_b, b) = replica("b");

    echo_offer_made_ready(&api).await;
    for replica in [&a, &b] {
        let url = format!("{replica}/services/echo/items");
        until("the replica serves the offer", async || {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().as_u16() == 402)
        })
        .await;
    }

    // One payment: served by the first replica, refused by the second (one guard, shared).
    let payment = sign(&format!("{a}/services/echo/items")).await;
    assert_eq!(
        pay_with(&format!("{a}/services/echo/items"), &payment).await,
        (200, None)
    );
    assert_eq!(
        pay_with(&format!("{b}/services/echo/items"), &payment).await,
        (402, Some("payment_already_used".to_owned()))
    );
    assert_eq!(
        postgres.query(
            "guard",
            "SELECT count(*) FROM guard_payments WHERE state = 'settled'"
        ),
        "1"
    );
    // And a new payment through the second replica is served there.
    let another = sign(&format!("{b}/services/echo/items")).await;
    assert_eq!(
        pay_with(&format!("{b}/services/echo/items"), &another).await,
        (200, None)
    );
}
