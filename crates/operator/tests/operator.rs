//! Two operator replicas on an in-memory Kubernetes API (no cluster runs on these machines):
//! one leads and reconciles offers to Ready, the other waits; the leader stopped, the other
//! takes the lease at once (released, not expired) and reconciles; the health endpoints say
//! who leads. An offer in the original's form (a Service upstream, a `secretRef`) waits for its
//! Service and its Secret, read from the API.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use obol_control::offer::OfferType;
use obol_control::reconcile::conformance::{Upstream, keyed_auth, probe_client};
use obol_control::resource::{Object, is_true};
use obol_control::{ServiceOfferSpec, Store, StoreExt};
use obol_kube::KubeStore;
use obol_kube::testing::InMemoryApi;
use obol_operator::{Health, OperatorConfig};

const PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

async fn spawn(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// One replica: its health, and the sender that stops it.
struct Replica {
    health: Health,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), obol_operator::OperatorError>>,
}

/// A replica's configuration: a 4 s lease renewed 1 s before expiry.
fn config(identity: &str) -> OperatorConfig {
    let mut config = OperatorConfig::new("obol-system", identity);
    config.lease_seconds = 4;
    config.grace_seconds = 1;
    config
}

/// A replica named `identity`, its upstreams given by URL (embedded mode).
fn replica(api: &InMemoryApi, identity: &str) -> Replica {
    let mut config = config(identity);
    config.upstreams = obol_control::reconcile::UpstreamResolution::Embedded;
    replica_with(api, config)
}

fn replica_with(api: &InMemoryApi, config: OperatorConfig) -> Replica {
    let health = Health::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(obol_operator::run(
        api.client().unwrap(),
        config,
        health.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Replica { health, stop, task }
}

/// Waits (up to 20 s) until `check` holds.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(store: &Arc<dyn Store>, name: &str) -> bool {
    store
        .get::<ServiceOfferSpec>("default", name)
        .await
        .unwrap()
        .is_some_and(|o| is_true(&o.status.conditions, "Ready"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_successor_takes_over_when_it_stops() {
    let api = InMemoryApi::start().await.unwrap();
    let upstream = spawn(Router::new().route("/health", get(|| async { "ok" }))).await;
    let store: Arc<dyn Store> = Arc::new(KubeStore::new(api.client().unwrap()).await.unwrap());
    let offer = |name: &str| {
        Object::new(
            "default",
            name,
            ServiceOfferSpec::per_request(
                OfferType::Http,
                &upstream,
                "base-sepolia",
                PAY_TO,
                "0.001",
            ),
        )
    };

    let (a, b) = (replica(&api, "a"), replica(&api, "b"));
    until("one leader", async || {
        a.health.is_leader() || b.health.is_leader()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        a.health.is_leader() != b.health.is_leader(),
        "exactly one replica leads"
    );
    store.apply(&offer("first")).await.unwrap();
    until("the first offer Ready", async || {
        ready(&store, "first").await
    })
    .await;

    // The health endpoints of both replicas say who leads.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    for replica in [&a, &b] {
        let base = spawn(obol_operator::router(
            replica.health.clone(),
            metrics.clone(),
        ))
        .await;
        let readyz: serde_json::Value = reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(readyz["ready"], true);
        assert_eq!(readyz["leader"], replica.health.is_leader());
        let healthz = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(healthz.status(), 200);
    }

    // The leader stops: it releases the lease, the other takes it well before it would have
    // expired, and reconciles what comes next.
    let (leader, follower) = if a.health.is_leader() { (a, b) } else { (b, a) };
    let stopped = Instant::now();
    leader.stop.send(()).unwrap();
    leader.task.await.unwrap().unwrap();
    assert!(!leader.health.is_leader());
    until("the successor leads", async || follower.health.is_leader()).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "taken over in {:?}, before the 4 s lease expired",
        stopped.elapsed()
    );
    store.apply(&offer("second")).await.unwrap();
    until("the second offer Ready", async || {
        ready(&store, "second").await
    })
    .await;
    let lease = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/leases/"))
        .count();
    assert!(lease > 0, "leader election went through the Lease API");
    follower.stop.send(()).unwrap();
    follower.task.await.unwrap().unwrap();
}

/// `(reason, message)` of the offer's `UpstreamHealthy`, once it has one.
async fn upstream_healthy(store: &Arc<dyn Store>, name: &str) -> Option<(String, String)> {
    let offer = store
        .get::<ServiceOfferSpec>("sellers", name)
        .await
        .unwrap()?;
    obol_control::resource::condition(&offer.status.conditions, "UpstreamHealthy")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_offer_waits_for_its_service_then_its_secret() {
    let api = InMemoryApi::start().await.unwrap();
    let upstream = Upstream::start().await;
    let port = upstream.address.port();
    // The Service's DNS name, mapped to loopback by the probe client (it cannot resolve here).
    let dns = "llm.sellers.svc.cluster.local";
    let mut config = config("solo");
    config.probe_client = Some(probe_client(&[dns]));
    let store: Arc<dyn Store> = Arc::new(KubeStore::new(api.client().unwrap()).await.unwrap());
    let mut offer = obol_control::store::conformance::offer("sellers", "llm", "0.001");
    offer.spec.upstream.url = None;
    offer.spec.upstream.service = Some("llm".into());
    offer.spec.upstream.port = Some(port);
    offer.spec.upstream.health_path = Some("/keyed".into());
    offer.spec.upstream.auth = Some(keyed_auth());
    store.apply(&offer).await.unwrap();
    let operator = replica_with(&api, config);

    let said = async |reason: &str| {
        until(&format!("UpstreamHealthy {reason}"), async || {
            upstream_healthy(&store, "llm")
                .await
                .is_some_and(|(r, _)| r == reason)
        })
        .await;
        upstream_healthy(&store, "llm").await.unwrap().1
    };
    assert_eq!(
        said("MissingService").await,
        "Service llm not found in namespace sellers"
    );
    assert!(upstream.take_hosts().is_empty(), "nothing probed");

    // The next reconcile (the not-ready requeue) finds the Service, then waits for the Secret.
    api.put_service("sellers", "llm", &[port]);
    assert!(
        said("MissingUpstreamSecret")
            .await
            .starts_with("secret sellers/keys key api: not found"),
    );
    api.put_secret("sellers", "keys", &[("api", "sk-seller")]);
    until("the offer Ready", async || {
        store
            .get::<ServiceOfferSpec>("sellers", "llm")
            .await
            .unwrap()
            .is_some_and(|o| is_true(&o.status.conditions, "Ready"))
    })
    .await;
    let hosts = upstream.take_hosts();
    assert!(
        !hosts.is_empty() && hosts.iter().all(|h| *h == format!("{dns}:{port}")),
        "probed at the Service's DNS name: {hosts:?}"
    );

    // On core/v1 the operator only ever got that Service and that Secret.
    let core: BTreeSet<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
        .map(|r| r.line())
        .collect();
    assert_eq!(
        core,
        BTreeSet::from([
            "GET /api/v1/namespaces/sellers/secrets/keys".to_owned(),
            "GET /api/v1/namespaces/sellers/services/llm".to_owned(),
        ])
    );
    operator.stop.send(()).unwrap();
    operator.task.await.unwrap().unwrap();
}
