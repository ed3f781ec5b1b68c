//! Reconcile tables: each condition and reason, route publication, deletion.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use obol_control::offer::{ModelSpec, OfferType, RegistrationSpec, SecretRef, UpstreamAuthSpec};
use obol_control::reconcile::{
    Action, FINALIZER, NOT_READY_REQUEUE, Reconciler, parse_duration, parse_rfc3339,
};
use obol_control::resource::{ConditionStatus, condition};
use obol_control::secrets::{FileSecrets, SecretValue};
use obol_control::{ServiceOffer, ServiceOfferSpec, SqliteStore, Store, StoreExt};
use obol_gateway::{Lookup, Routes};
use obol_x402::token::TokenRegistry;
use tokio::net::TcpListener;

use crate::store::offer;

async fn upstream() -> String {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/sick",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
        )
        .route(
            "/keyed",
            get(|headers: axum::http::HeaderMap| async move {
                if headers.get("x-api-key").is_some_and(|k| k == "sk-seller") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Setup {
    store: Arc<SqliteStore>,
    routes: Arc<Routes>,
    reconciler: Reconciler,
    upstream: String,
    secrets: Arc<FileSecrets>,
    _secrets_dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let routes = Arc::new(Routes::new());
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(FileSecrets::new(secrets_dir.path()));
    let reconciler = Reconciler::new(store.clone(), routes.clone(), TokenRegistry::builtin())
        .with_secrets(secrets.clone());
    Setup {
        store,
        routes,
        reconciler,
        upstream: upstream().await,
        secrets,
        _secrets_dir: secrets_dir,
    }
}

impl Setup {
    fn offer(&self, name: &str) -> ServiceOffer {
        let mut o = offer(name, "0.001");
        o.spec.upstream.url = Some(self.upstream.clone());
        o
    }

    async fn run(&self, offer: &ServiceOffer) -> (Action, ServiceOffer) {
        self.store.apply(offer).await.unwrap();
        let action = self
            .reconciler
            .reconcile(&offer.metadata.namespace, &offer.metadata.name)
            .await
            .unwrap();
        let stored = self
            .store
            .get::<ServiceOfferSpec>(&offer.metadata.namespace, &offer.metadata.name)
            .await
            .unwrap()
            .unwrap();
        (action, stored)
    }

    fn routed(&self, path: &str) -> Option<String> {
        match self.routes.load().lookup(&Method::GET, path) {
            Lookup::Paid(o, _) => Some(o.name.clone()),
            _ => None,
        }
    }
}

fn reasons(offer: &ServiceOffer) -> Vec<(String, ConditionStatus, String)> {
    [
        "ModelReady",
        "UpstreamHealthy",
        "PaymentGateReady",
        "RoutePublished",
        "Registered",
        "Ready",
    ]
    .iter()
    .map(|t| {
        let c = condition(&offer.status.conditions, t).unwrap_or_else(|| panic!("{t} missing"));
        ((*t).to_owned(), c.status, c.reason.clone())
    })
    .collect()
}

fn row(t: &str, s: ConditionStatus, r: &str) -> (String, ConditionStatus, String) {
    (t.to_owned(), s, r.to_owned())
}

use ConditionStatus::{False, True};

#[tokio::test]
async fn a_healthy_offer_becomes_ready_and_routed() {
    let s = setup().await;
    let (action, stored) = s.run(&s.offer("echo")).await;
    assert_eq!(
        reasons(&stored),
        [
            row("ModelReady", True, "Skipped"),
            row("UpstreamHealthy", True, "Healthy"),
            row("PaymentGateReady", True, "Reconciled"),
            row("RoutePublished", True, "Reconciled"),
            row("Registered", True, "Disabled"),
            row("Ready", True, "Reconciled"),
        ]
    );
    assert_eq!(stored.status.endpoint.as_deref(), Some("/services/echo"));
    assert_eq!(stored.status.observed_generation, 1);
    assert!(stored.metadata.finalizers.contains(&FINALIZER.to_owned()));
    assert!(matches!(action, Action::Requeue(_)));
    assert_eq!(s.routed("/services/echo/anything").as_deref(), Some("echo"));
    let table = s.routes.load();
    let route = table.routes().next().unwrap();
    assert_eq!(
        route.offer.options[0].requirements.amount.to_string(),
        "1000",
        "0.001 USDC"
    );
    assert_eq!(route.offer.options[0].requirements.network, "eip155:84532");

    // Reconciling again changes nothing (idempotent).
    let again = s.reconciler.reconcile("default", "echo").await.unwrap();
    assert!(matches!(again, Action::Requeue(_)));
    let restored = s
        .store
        .get::<ServiceOfferSpec>("default", "echo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.status, stored.status);
}

#[tokio::test]
async fn unhealthy_and_unreachable_upstreams_are_not_routed() {
    let s = setup().await;
    let mut sick = s.offer("sick");
    sick.spec.upstream.health_path = Some("/sick".into());
    let (action, stored) = s.run(&sick).await;
    assert_eq!(action, Action::Requeue(NOT_READY_REQUEUE));
    let healthy = condition(&stored.status.conditions, "UpstreamHealthy").unwrap();
    assert_eq!(
        (healthy.status, healthy.reason.as_str()),
        (False, "Unhealthy")
    );
    assert_eq!(healthy.message, "HTTP 503 from upstream health path /sick");
    assert_eq!(
        reasons(&stored)[2..],
        [
            row("PaymentGateReady", False, "WaitingForUpstream"),
            row("RoutePublished", False, "WaitingForPaymentGate"),
            row("Registered", True, "Disabled"),
            row("Ready", False, "Reconciling"),
        ]
    );
    assert_eq!(s.routed("/services/sick"), None);

    let mut dead = s.offer("dead");
    dead.spec.upstream.url = Some("http://127.0.0.1:1".into());
    let (_, stored) = s.run(&dead).await;
    let healthy = condition(&stored.status.conditions, "UpstreamHealthy").unwrap();
    assert_eq!(healthy.status, False);
    assert!(
        healthy.message.starts_with("upstream health path /health:"),
        "{}",
        healthy.message
    );
}

#[tokio::test]
async fn an_upstream_secret_is_probed_with_and_routed_and_missing_blocks_the_offer() {
    let s = setup().await;
    let mut keyed = s.offer("keyed");
    keyed.spec.upstream.health_path = Some("/keyed".into());
    keyed.spec.upstream.auth = Some(UpstreamAuthSpec {
        secret_ref: SecretRef {
            name: "keys".into(),
            key: "api".into(),
        },
        header: Some("X-Api-Key".into()),
    });

    let (action, stored) = s.run(&keyed).await;
    assert_eq!(action, Action::Requeue(NOT_READY_REQUEUE));
    let healthy = condition(&stored.status.conditions, "UpstreamHealthy").unwrap();
    assert_eq!(
        (healthy.status, healthy.reason.as_str()),
        (False, "MissingUpstreamSecret")
    );
    assert!(
        healthy
            .message
            .contains("secret default/keys key api: not found"),
        "{}",
        healthy.message
    );
    assert_eq!(s.routed("/services/keyed"), None);

    let data = |value: &str| {
        [("api".to_owned(), SecretValue::new(value).unwrap())]
            .into_iter()
            .collect()
    };
    s.secrets.put("default", "keys", &data("sk-wrong")).unwrap();
    let (_, stored) = s.run(&keyed).await;
    let healthy = condition(&stored.status.conditions, "UpstreamHealthy").unwrap();
    assert_eq!(healthy.message, "HTTP 401 from upstream health path /keyed");

    s.secrets
        .put("default", "keys", &data("sk-seller"))
        .unwrap();
    let (_, stored) = s.run(&keyed).await;
    assert_eq!(reasons(&stored)[5], row("Ready", True, "Reconciled"));
    let table = s.routes.load();
    let route = table.routes().next().unwrap();
    assert_eq!(
        format!("{:?}", route.offer.upstream_auth),
        "Some(UpstreamAuth(x-api-key: ***))"
    );
    let stored_json = serde_json::to_string(&stored).unwrap();
    assert!(!stored_json.contains("sk-seller"), "{stored_json}");
}

#[tokio::test]
async fn inference_models_registration_and_reserved_paths() {
    let s = setup().await;
    let mut llm = s.offer("llm");
    llm.spec.type_ = OfferType::Inference;
    llm.spec.model = Some(ModelSpec {
        name: "qwen3".into(),
        runtime: None,
    });
    llm.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    let (_, stored) = s.run(&llm).await;
    let model = condition(&stored.status.conditions, "ModelReady").unwrap();
    assert_eq!(
        (model.reason.as_str(), model.message.as_str()),
        ("Declared", "Model qwen3 declared")
    );
    let registered = condition(&stored.status.conditions, "Registered").unwrap();
    assert_eq!(
        (registered.status, registered.reason.as_str()),
        (False, "AwaitingExternalRegistration")
    );
    assert_eq!(
        condition(&stored.status.conditions, "Ready")
            .unwrap()
            .status,
        False
    );
    assert_eq!(
        s.routed("/services/llm/v1/chat/completions").as_deref(),
        Some("llm"),
        "serves paid traffic meanwhile"
    );

    // A reserved path that slipped past validation is never routed.
    let mut reserved = s.offer("reserved");
    reserved.spec.path = Some("/api/x".into());
    let (_, stored) = s.run(&reserved).await;
    let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (route.status, route.reason.as_str()),
        (False, "ReservedPath")
    );
    assert_eq!(s.routed("/api/x"), None);

    // So is an offer with a route on the sign-in path below it.
    let mut sign_in = s.offer("signin");
    sign_in.spec.routes = serde_json::from_value(serde_json::json!([{"path": "/auth/x"}])).unwrap();
    let (_, stored) = s.run(&sign_in).await;
    let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (route.status, route.reason.as_str()),
        (False, "ReservedPath")
    );
    assert!(route.message.contains("/auth/x"), "{}", route.message);
    assert_eq!(s.routed("/services/signin/auth/x"), None);
}

#[tokio::test]
async fn the_oldest_claimant_of_a_path_wins() {
    let s = setup().await;
    let mut first = s.offer("first");
    first.spec.path = Some("/services/shared".into());
    s.run(&first).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later creation second
    let mut second = s.offer("second");
    second.spec.path = Some("/services/shared".into());
    let (action, stored) = s.run(&second).await;
    let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (route.status, route.reason.as_str()),
        (False, "PathConflict")
    );
    assert_eq!(
        route.message,
        "/services/shared is already served by default/first"
    );
    assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    assert_eq!(s.routed("/services/shared").as_deref(), Some("first"));

    // When the owner goes, the other takes over.
    s.store
        .delete("ServiceOffer", "default", "first")
        .await
        .unwrap();
    s.reconciler.reconcile("default", "first").await.unwrap();
    assert!(
        s.store
            .get::<ServiceOfferSpec>("default", "first")
            .await
            .unwrap()
            .is_none(),
        "finalizer released"
    );
    s.reconciler.reconcile("default", "second").await.unwrap();
    assert_eq!(s.routed("/services/shared").as_deref(), Some("second"));
}

#[tokio::test]
async fn the_oldest_claimant_of_a_hostname_wins_and_the_stacks_own_is_refused() {
    let s = setup().await;
    let mut first = s.offer("first");
    first.spec.hostname = Some("api.example.com".into());
    s.run(&first).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later creation second
    let mut second = s.offer("second");
    second.spec.hostname = Some("api.example.com".into());
    let (action, stored) = s.run(&second).await;
    for type_ in ["PaymentGateReady", "RoutePublished"] {
        let c = condition(&stored.status.conditions, type_).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (False, "HostnameConflict"));
        assert_eq!(
            c.message,
            "api.example.com is already served by default/first"
        );
    }
    assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    let table = s.routes.load();
    assert_eq!(table.vanity("api.example.com").unwrap().name, "first");

    let own = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin())
        .with_public_host(Some("stack.example.com".into()));
    let mut third = s.offer("third");
    third.spec.hostname = Some("stack.example.com".into());
    s.store.apply(&third).await.unwrap();
    own.reconcile("default", "third").await.unwrap();
    let stored = s
        .store
        .get::<ServiceOfferSpec>("default", "third")
        .await
        .unwrap()
        .unwrap();
    let c = condition(&stored.status.conditions, "RoutePublished").unwrap();
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        (
            "HostnameConflict",
            "stack.example.com is already served by the stack itself (its public URL)"
        )
    );
}

#[tokio::test]
async fn paths_equal_after_normalisation_conflict() {
    let s = setup().await;
    let mut first = s.offer("first");
    first.spec.path = Some("/services/shared".into());
    s.run(&first).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later creation second
    // Stored before validation refused such paths: the same path once normalised.
    for (name, path) in [
        ("slashes", "/services//shared/"),
        ("dots", "/services/./other/../shared"),
    ] {
        let mut later = s.offer(name);
        later.spec.path = Some(path.into());
        let (action, stored) = s.run(&later).await;
        assert_eq!(stored.status.endpoint.as_deref(), Some("/services/shared"));
        let route = condition(&stored.status.conditions, "RoutePublished").unwrap();
        assert_eq!(
            (route.status, route.reason.as_str(), route.message.as_str()),
            (
                False,
                "PathConflict",
                "/services/shared is already served by default/first"
            ),
            "{path}"
        );
        assert_eq!(action, Action::Requeue(Duration::from_secs(30)));
    }
    assert_eq!(s.routed("/services/shared/x").as_deref(), Some("first"));
    // Case is significant, as in the gateway: another path, no conflict.
    let mut upper = s.offer("upper");
    upper.spec.path = Some("/services/Shared".into());
    let (_, stored) = s.run(&upper).await;
    assert!(is_published(&stored), "{:?}", stored.status.conditions);
}

#[tokio::test]
async fn nested_paths_are_not_a_conflict() {
    let s = setup().await;
    let mut outer = s.offer("outer");
    outer.spec.path = Some("/services/x".into());
    let mut inner = s.offer("inner");
    inner.spec.path = Some("/services/x/premium".into());
    for offer in [&outer, &inner] {
        let (_, stored) = s.run(offer).await;
        assert!(is_published(&stored), "{:?}", stored.status.conditions);
    }
    // The outer one again, now that the inner one exists.
    let (_, stored) = s.run(&outer).await;
    assert!(is_published(&stored), "{:?}", stored.status.conditions);
}

fn is_published(offer: &ServiceOffer) -> bool {
    condition(&offer.status.conditions, "RoutePublished").is_some_and(|c| c.status == True)
}

#[tokio::test]
async fn draining_keeps_serving_until_the_end() {
    let s = setup().await;
    let mut draining = s.offer("draining");
    draining.spec.drain_at = Some(obol_config::time::rfc3339(obol_config::time::unix_now()));
    draining.spec.drain_grace_period = Some("1h".into());
    let (action, stored) = s.run(&draining).await;
    let drain = condition(&stored.status.conditions, "Draining").unwrap();
    assert_eq!((drain.status, drain.reason.as_str()), (True, "Draining"));
    assert!(matches!(action, Action::Requeue(d) if d > Duration::from_secs(3500)));
    assert_eq!(s.routed("/services/draining").as_deref(), Some("draining"));

    let mut drained = s.offer("drained");
    drained.spec.drain_at = Some("2020-01-01T00:00:00Z".into());
    drained.spec.drain_grace_period = Some("0s".into());
    let (_, stored) = s.run(&drained).await;
    let drain = condition(&stored.status.conditions, "Draining").unwrap();
    assert_eq!((drain.status, drain.reason.as_str()), (False, "Drained"));
    assert_eq!(s.routed("/services/drained"), None);
}

#[tokio::test]
async fn deleting_tombstones_the_route_first() {
    let s = setup().await;
    s.run(&s.offer("gone")).await;
    assert!(s.routed("/services/gone").is_some());
    assert_eq!(
        s.store
            .delete("ServiceOffer", "default", "gone")
            .await
            .unwrap(),
        obol_control::store::DeleteOutcome::Marked
    );
    s.reconciler.reconcile("default", "gone").await.unwrap();
    assert_eq!(s.routed("/services/gone"), None);
    assert!(
        s.store
            .get::<ServiceOfferSpec>("default", "gone")
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn time_parsing() {
    assert_eq!(parse_duration("1h"), Some(3600));
    assert_eq!(parse_duration("2h30m"), Some(9000));
    assert_eq!(parse_duration("30d"), Some(2_592_000));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("10x"), None);
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_rfc3339("2025-02-27T16:02:34Z"), Some(1_740_672_154));
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2025-13-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("yesterday"), None);
    for t in [0u64, 951_782_400, 1_740_672_154, 4_294_967_295] {
        assert_eq!(parse_rfc3339(&obol_config::time::rfc3339(t)), Some(t));
    }
}

#[tokio::test]
async fn the_controller_loop_follows_the_store() {
    let s = setup().await;
    let store: Arc<dyn Store> = s.store.clone();
    let reconciler = Arc::new(Reconciler::new(
        store.clone(),
        s.routes.clone(),
        TokenRegistry::builtin(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(obol_control::controller::run(store, reconciler, async {
        let _ = stopped.await;
    }));
    let wait_for = |path: &'static str, want: Option<&'static str>| {
        let routes = s.routes.clone();
        async move {
            for _ in 0..200 {
                let got = match routes.load().lookup(&Method::GET, path) {
                    Lookup::Paid(o, _) => Some(o.name.clone()),
                    _ => None,
                };
                if got.as_deref() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{path} never became {want:?}");
        }
    };
    s.store.apply(&s.offer("live")).await.unwrap();
    wait_for("/services/live", Some("live")).await;
    assert!(s.routes.is_loaded());
    s.store
        .delete("ServiceOffer", "default", "live")
        .await
        .unwrap();
    wait_for("/services/live", None).await;
    for _ in 0..100 {
        if s.store
            .get::<ServiceOfferSpec>("default", "live")
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        s.store
            .get::<ServiceOfferSpec>("default", "live")
            .await
            .unwrap()
            .is_none(),
        "finalizer released"
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

fn registered(offer: &ServiceOffer) -> (ConditionStatus, String, String) {
    let c = condition(&offer.status.conditions, "Registered").unwrap();
    (c.status, c.reason.clone(), c.message.clone())
}

async fn record_identity(store: &SqliteStore, chains: &[(&str, &str)]) {
    use obol_control::identity::{AgentIdentitySpec, default_identity};
    let mut identity = default_identity();
    store.apply(&identity).await.unwrap();
    for (chain, id) in chains {
        identity.status.record(chain, id, Some("0xfeed")).unwrap();
    }
    store
        .patch_status::<AgentIdentitySpec>("x402", "default", &identity.status)
        .await
        .unwrap();
}

#[tokio::test]
async fn registered_takes_the_agent_id_recorded_for_the_offers_chain() {
    let s = setup().await;
    let reconciler = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin())
        .with_chains(Arc::new(|| {
            obol_control::registration::ChainIds::builtin().with("devnet", 84532)
        }));
    let mut offer = s.offer("weather");
    offer.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    s.store.apply(&offer).await.unwrap();
    let run = || async {
        reconciler.reconcile("default", "weather").await.unwrap();
        s.store
            .get::<ServiceOfferSpec>("default", "weather")
            .await
            .unwrap()
            .unwrap()
    };

    let stored = run().await;
    assert_eq!(
        registered(&stored),
        (
            False,
            "AwaitingExternalRegistration".into(),
            "Awaiting ERC-8004 registration: run `obol sell register --chain base-sepolia`; the offer already serves paid traffic".into()
        )
    );
    assert_eq!(stored.status.agent_id, None);

    // Another chain's id does not count; the devnet's (chain 84532, like base-sepolia) does.
    record_identity(&s.store, &[("base", "9")]).await;
    assert_eq!(run().await.status.agent_id, None);
    record_identity(&s.store, &[("base", "9"), ("devnet", "0")]).await;
    let stored = run().await;
    assert_eq!(
        registered(&stored),
        (
            True,
            "Active".into(),
            "Registered as ERC-8004 agent 0 on devnet".into()
        )
    );
    assert_eq!(stored.status.agent_id.as_deref(), Some("0"));
    assert_eq!(
        stored.status.registration_tx_hash.as_deref(),
        Some("0xfeed")
    );
    assert_eq!(
        condition(&stored.status.conditions, "Ready")
            .unwrap()
            .status,
        True
    );

    // Forgotten: back to waiting, the id cleared.
    record_identity(&s.store, &[("base", "9")]).await;
    let stored = run().await;
    assert_eq!(registered(&stored).1, "AwaitingExternalRegistration");
    assert_eq!(
        (stored.status.agent_id, stored.status.registration_tx_hash),
        (None, None)
    );
}

#[tokio::test]
async fn an_identity_change_requeues_every_offer() {
    let s = setup().await;
    let store: Arc<dyn Store> = s.store.clone();
    let reconciler = Arc::new(Reconciler::new(
        store.clone(),
        s.routes.clone(),
        TokenRegistry::builtin(),
    ));
    let mut offer = s.offer("weather");
    offer.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    s.store.apply(&offer).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(obol_control::controller::run(store, reconciler, async {
        let _ = stopped.await;
    }));
    let agent_id = || async {
        s.store
            .get::<ServiceOfferSpec>("default", "weather")
            .await
            .unwrap()
            .unwrap()
            .status
            .agent_id
    };
    let wait_for = |want: Option<&'static str>| async move {
        for _ in 0..300 {
            if agent_id().await.as_deref() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("agentId never became {want:?}");
    };
    // Ready offers are requeued only every minute: the identity event must do it.
    for _ in 0..300 {
        let stored = s
            .store
            .get::<ServiceOfferSpec>("default", "weather")
            .await
            .unwrap()
            .unwrap();
        if stored
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Registered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    record_identity(&s.store, &[("base-sepolia", "7")]).await;
    wait_for(Some("7")).await;
    record_identity(&s.store, &[]).await;
    wait_for(None).await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Counts reconciles; every one asks to be requeued soon.
struct Counting {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl obol_control::controller::Reconcile for Counting {
    type Error = obol_control::StoreError;

    fn kind(&self) -> &'static str {
        "ServiceOffer"
    }

    async fn reconcile(
        &self,
        _: &str,
        _: &str,
    ) -> Result<obol_control::reconcile::Action, Self::Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(obol_control::reconcile::Action::Requeue(
            Duration::from_millis(100),
        ))
    }
}

#[tokio::test]
async fn a_burst_of_changes_leaves_one_requeue_timer_per_object() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let counting = Arc::new(Counting {
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(obol_control::controller::run(
        store.clone(),
        counting.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // Thirty changes in a burst, each reconciled and each answered "again in 100 ms".
    for price in 1..=30 {
        store
            .apply(&offer("burst", &format!("0.{price:03}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_burst = counting.calls.load(std::sync::atomic::Ordering::SeqCst);
    // Then quiet: one timer chain, about one reconcile per 100 ms — not thirty timers firing.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let quiet = counting.calls.load(std::sync::atomic::Ordering::SeqCst) - after_burst;
    assert!(
        (2..=6).contains(&quiet),
        "{quiet} reconciles in 450 ms of quiet"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn a_service_upstream_is_its_cluster_dns_name_in_kubernetes_mode_only() {
    use obol_control::reconcile::{UpstreamResolution, resolve_upstream};
    let cluster = UpstreamResolution::Cluster {
        domain: obol_control::offer::DEFAULT_CLUSTER_DOMAIN.into(),
    };
    let mut original = ServiceOffer::new("sellers", "svc", offer("x", "1").spec);
    original.spec.upstream.url = None;
    original.spec.upstream.service = Some("llm".into());
    original.spec.upstream.port = Some(8000);
    let resolved = resolve_upstream(original.clone(), &cluster);
    assert_eq!(
        resolved.spec.upstream.url.as_deref(),
        Some("http://llm.sellers.svc.cluster.local:8000")
    );
    assert_eq!(resolved.spec.upstream.service, None);
    let mut elsewhere = original.clone();
    elsewhere.spec.upstream.namespace = Some("models".into());
    let resolved = resolve_upstream(
        elsewhere,
        &UpstreamResolution::Cluster {
            domain: "k8s.internal".into(),
        },
    );
    assert_eq!(
        resolved.spec.upstream.url.as_deref(),
        Some("http://llm.models.svc.k8s.internal:8000")
    );
    // Embedded: unchanged, so the reconciler reports MissingService.
    assert_eq!(
        resolve_upstream(original.clone(), &UpstreamResolution::Embedded),
        original
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    store.apply(&original).await.unwrap();
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(Routes::new()),
        TokenRegistry::builtin(),
    );
    reconciler.reconcile("sellers", "svc").await.unwrap();
    let stored = store
        .get::<ServiceOfferSpec>("sellers", "svc")
        .await
        .unwrap()
        .unwrap();
    let healthy = condition(&stored.status.conditions, "UpstreamHealthy").unwrap();
    assert_eq!(healthy.reason, "MissingService");
    assert_eq!(
        stored.spec.upstream.url, None,
        "the stored spec is never rewritten"
    );
    // A URL upstream stays as it is in a cluster too; no port or service: nothing to resolve.
    let by_url = offer("u", "1");
    assert_eq!(resolve_upstream(by_url.clone(), &cluster), by_url);
    let mut portless = original;
    portless.spec.upstream.port = None;
    assert_eq!(resolve_upstream(portless.clone(), &cluster), portless);
}
