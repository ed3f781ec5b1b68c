//! `obol operator` against an in-memory Kubernetes API (no cluster runs on these machines)
//! through a kubeconfig: it takes the leader lease, reconciles a ServiceOffer to Ready, says so
//! on /readyz, and stops on SIGTERM.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obol_control::offer::OfferType;
use obol_control::resource::{Object, is_true};
use obol_control::{ServiceOfferSpec, Store, StoreExt};
use obol_kube::KubeStore;
use obol_kube::testing::InMemoryApi;

use crate::interop::spawn_until;
use crate::stack::{PAY_TO, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_leads_and_reconciles_a_clusters_offers() {
    let api = InMemoryApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = crate::cluster::kubeconfig(dir.path(), &api.url());
    let (mut operator, health) = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .arg("operator")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--listen", "127.0.0.1:0", "--identity", "test-operator"])
            .args(["--lease-namespace", "obol-system"]),
        true,
        "operator test-operator: health on http://",
        4,
    );

    let readyz = format!("{health}/readyz");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = reqwest::get(&readyz).await.ok();
        let body: Option<serde_json::Value> = match answer {
            Some(a) if a.status() == 200 => a.json().await.ok(),
            _ => None,
        };
        if body.is_some_and(|b| b["leader"] == true) {
            break;
        }
        assert!(Instant::now() < deadline, "the operator never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let store: Arc<dyn Store> = Arc::new(KubeStore::new(api.client().unwrap()).await.unwrap());
    let upstream = upstream().await;
    let spec =
        ServiceOfferSpec::per_request(OfferType::Http, &upstream, "base-sepolia", PAY_TO, "0.001");
    store
        .apply(&Object::new("default", "echo", spec))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let offer = store
            .get::<ServiceOfferSpec>("default", "echo")
            .await
            .unwrap();
        if offer.is_some_and(|o| is_true(&o.status.conditions, "Ready")) {
            break;
        }
        assert!(Instant::now() < deadline, "the offer never became Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = reqwest::get(format!("{health}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("obol_operator_leader 1"), "{metrics}");

    // SIGTERM: the lease is released and the process exits cleanly.
    let pid = operator.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = operator.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        api.requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/leases/obol-operator")),
        "the lease was patched (taken, renewed, released)"
    );
}
