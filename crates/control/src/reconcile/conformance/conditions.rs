//! Each condition and reason of an offer on its own: healthy, unhealthy, unreachable, the
//! upstream secret, models, registration, reserved paths, draining, deletion.

use std::sync::Arc;
use std::time::Duration;

use obol_x402::token::TokenRegistry;

use super::{Harness, all_ready, keyed_auth, reasons, row, said, waiting_for_upstream};
use crate::identity::{AgentIdentitySpec, default_identity};
use crate::offer::{ModelSpec, OfferType, RegistrationSpec, ServiceOfferSpec};
use crate::reconcile::{Action, FINALIZER, NOT_READY_REQUEUE, Reconciler};
use crate::resource::ConditionStatus::{False, True};
use crate::resource::condition;
use crate::secrets::{SecretData, SecretValue};
use crate::store::{DeleteOutcome, Store, StoreExt};

/// All five conditions True, `Ready`, the finalizer added, routed at the offer's path with
/// its price; a second reconcile changes nothing.
pub async fn a_healthy_offer_becomes_ready_and_routed(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let (action, stored) = s.run(&s.offer("echo")).await;
    assert_eq!(reasons(&stored), all_ready());
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
    let restored = s.stored("default", "echo").await.unwrap();
    assert_eq!(restored.status, stored.status);
}

/// `Unhealthy` with the HTTP status, or the transport error; waiting gate and route.
pub async fn unhealthy_and_unreachable_upstreams_are_not_routed(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
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
    assert_eq!(reasons(&stored)[2..], waiting_for_upstream());
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

fn data(value: &str) -> SecretData {
    [("api".to_owned(), SecretValue::new(value).unwrap())]
        .into_iter()
        .collect()
}

/// `MissingUpstreamSecret` until the secret exists; then probed with it (401 with a wrong
/// value), routed with it, and the value is nowhere in the stored offer.
pub async fn an_upstream_secret_is_probed_with_and_routed_and_missing_blocks_the_offer(
    store: Arc<dyn Store>,
) {
    let s = Harness::new(store).await;
    let mut keyed = s.offer("keyed");
    keyed.spec.upstream.health_path = Some("/keyed".into());
    keyed.spec.upstream.auth = Some(keyed_auth());

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

/// `Declared` models, `AwaitingExternalRegistration` (served meanwhile), `ReservedPath` for
/// a reserved offer path and for a route on the sign-in path.
pub async fn inference_models_registration_and_reserved_paths(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
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

/// `Draining` keeps the route until the drain ends (requeued for then); `Drained` removes it.
pub async fn draining_keeps_serving_until_the_end(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
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

/// A deletion is only marked (the finalizer); the reconcile removes the route, then lets the
/// offer go.
pub async fn deleting_tombstones_the_route_first(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    s.run(&s.offer("gone")).await;
    assert!(s.routed("/services/gone").is_some());
    assert_eq!(
        s.store
            .delete("ServiceOffer", "default", "gone")
            .await
            .unwrap(),
        DeleteOutcome::Marked
    );
    s.reconciler.reconcile("default", "gone").await.unwrap();
    assert_eq!(s.routed("/services/gone"), None);
    assert!(s.stored("default", "gone").await.is_none());
}

/// Records the agent ids `chains` in the default `AgentIdentity`'s status.
pub(super) async fn record_identity(store: &dyn Store, chains: &[(&str, &str)]) {
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

/// `Registered`: `AwaitingExternalRegistration`, `Active` with the id recorded for the
/// offer's chain (under any of its names), and back when it is forgotten.
pub async fn registered_takes_the_agent_id_recorded_for_the_offers_chain(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let reconciler = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin())
        .with_chains(Arc::new(|| {
            crate::registration::ChainIds::builtin().with("devnet", 84532)
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
        said(&stored, "Registered"),
        (
            False,
            "AwaitingExternalRegistration".into(),
            "Awaiting ERC-8004 registration: run `obol sell register --chain base-sepolia`; the offer already serves paid traffic".into()
        )
    );
    assert_eq!(stored.status.agent_id, None);

    // Another chain's id does not count; the devnet's (chain 84532, like base-sepolia) does.
    record_identity(s.store.as_ref(), &[("base", "9")]).await;
    assert_eq!(run().await.status.agent_id, None);
    record_identity(s.store.as_ref(), &[("base", "9"), ("devnet", "0")]).await;
    let stored = run().await;
    assert_eq!(
        said(&stored, "Registered"),
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
    record_identity(s.store.as_ref(), &[("base", "9")]).await;
    let stored = run().await;
    assert_eq!(
        said(&stored, "Registered").1,
        "AwaitingExternalRegistration"
    );
    assert_eq!(
        (stored.status.agent_id, stored.status.registration_tx_hash),
        (None, None)
    );
}
