//! `obol operator` against an in-memory Kubernetes API (no cluster runs on these machines)
//! through a kubeconfig: it takes the leader lease, reconciles a ServiceOffer to Ready, says so
//! on /readyz, and stops on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use obol_kube::testing::InMemoryApi;

use crate::interop::spawn_until;

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

    crate::cluster::echo_offer_made_ready(&api).await;
    let metrics = obol_testkit::http::get_text(format!("{health}/metrics")).await;
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
