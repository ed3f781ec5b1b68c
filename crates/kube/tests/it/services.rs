//! What the reconciler reads from the cluster besides the custom resources, over the
//! in-memory API: a Service upstream's Service (`KubeServices`) and an upstream credential's
//! Secret (`KubeSecrets`) — the conditions they lead to and the exact requests (one `GET`
//! each, nothing else on `/api/v1`).
//!
//! The Service's DNS name cannot resolve here: the probe client maps it to loopback
//! (`reconcile::conformance::probe_client`), so the request still names the Service and the
//! upstream checks the `Host` it was sent.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use obol_control::offer::DEFAULT_CLUSTER_DOMAIN;
use obol_control::reconcile::conformance::{Upstream, keyed_auth, probe_client};
use obol_control::reconcile::{Reconciler, ServiceDirectory, ServiceInfo, UpstreamResolution};
use obol_control::resource::{ConditionStatus, condition};
use obol_control::secrets::{SecretError, SecretSource};
use obol_control::store::conformance::offer;
use obol_control::{ServiceOffer, ServiceOfferSpec, Store, StoreExt};
use obol_gateway::Routes;
use obol_kube::testing::InMemoryApi;
use obol_kube::{KubeSecrets, KubeServices};
use obol_x402::token::TokenRegistry;
use serde_json::json;

use crate::kube_store;

/// The non-watch requests on core/v1 since the last call, as `METHOD path`.
fn core_calls(api: &InMemoryApi) -> Vec<String> {
    let calls = api
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
        .map(|r| r.line())
        .collect();
    api.clear_requests();
    calls
}

/// `(status, reason, message)` of `UpstreamHealthy`.
fn upstream_healthy(offer: &ServiceOffer) -> (ConditionStatus, String, String) {
    let c = condition(&offer.status.conditions, "UpstreamHealthy").unwrap();
    (c.status, c.reason.clone(), c.message.clone())
}

fn is_ready(offer: &ServiceOffer) -> bool {
    obol_control::resource::is_true(&offer.status.conditions, "Ready")
}

async fn reconcile(
    reconciler: &Reconciler,
    store: &Arc<dyn Store>,
    o: &ServiceOffer,
) -> ServiceOffer {
    let (namespace, name) = (&o.metadata.namespace, &o.metadata.name);
    reconciler.reconcile(namespace, name).await.unwrap();
    store
        .get::<ServiceOfferSpec>(namespace, name)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_service_upstream_is_missing_service_until_the_service_exists() {
    let (store, api) = kube_store().await;
    let upstream = Upstream::start().await;
    let port = upstream.address.port();
    let dns = "llm.sellers.svc.cluster.local";
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(Routes::new()),
        TokenRegistry::builtin(),
    )
    .with_upstreams(UpstreamResolution::Cluster {
        domain: DEFAULT_CLUSTER_DOMAIN.into(),
    })
    .with_services(Arc::new(KubeServices::new(api.client().unwrap())))
    .with_probe_client(probe_client(&[dns]));
    let mut svc = offer("sellers", "svc", "0.001");
    svc.spec.upstream.url = None;
    svc.spec.upstream.service = Some("llm".into());
    svc.spec.upstream.port = Some(port);
    store.apply(&svc).await.unwrap();
    api.clear_requests();

    let stored = reconcile(&reconciler, &store, &svc).await;
    assert_eq!(
        upstream_healthy(&stored),
        (
            ConditionStatus::False,
            "MissingService".into(),
            "Service llm not found in namespace sellers".into()
        )
    );
    assert_eq!(
        core_calls(&api),
        ["GET /api/v1/namespaces/sellers/services/llm"]
    );
    assert!(upstream.take_hosts().is_empty(), "nothing probed");

    api.put_service("sellers", "llm", &[port]);
    let stored = reconcile(&reconciler, &store, &svc).await;
    assert!(is_ready(&stored), "{:?}", stored.status.conditions);
    assert_eq!(upstream.take_hosts(), [format!("{dns}:{port}")]);
    assert_eq!(
        core_calls(&api),
        ["GET /api/v1/namespaces/sellers/services/llm"]
    );

    api.delete_service("sellers", "llm");
    let stored = reconcile(&reconciler, &store, &svc).await;
    assert_eq!(upstream_healthy(&stored).1, "MissingService");
}

#[tokio::test]
async fn services_are_read_with_their_ports_and_failures_named() {
    let (_store, api) = kube_store().await;
    let services = KubeServices::new(api.client().unwrap());
    api.clear_requests();
    assert_eq!(services.service("models", "llm").await.unwrap(), None);

    api.put_service("models", "llm", &[8000, 8443]);
    assert_eq!(
        services.service("models", "llm").await.unwrap(),
        Some(ServiceInfo {
            ports: Some(vec![8000, 8443])
        })
    );
    // Headless and ExternalName Services reach their backends on any port.
    let created: Api<Service> = Api::namespaced(api.client().unwrap(), "models");
    for (name, spec) in [
        (
            "headless",
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        ),
        (
            "alias",
            json!({"type": "ExternalName", "externalName": "llm.example.com"}),
        ),
    ] {
        let service: Service =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        created
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        assert_eq!(
            services.service("models", name).await.unwrap(),
            Some(ServiceInfo { ports: None }),
            "{name}"
        );
    }
    assert_eq!(
        core_calls(&api),
        [
            "GET /api/v1/namespaces/models/services/llm",
            "GET /api/v1/namespaces/models/services/llm",
            "POST /api/v1/namespaces/models/services",
            "GET /api/v1/namespaces/models/services/headless",
            "POST /api/v1/namespaces/models/services",
            "GET /api/v1/namespaces/models/services/alias",
        ]
    );

    api.fail_next("GET", 403);
    let error = services.service("models", "llm").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Kubernetes API: get Service models/llm: HTTP 403 Forbidden"),
        "{error}"
    );
}

fn keyed_offer(upstream: &Upstream) -> ServiceOffer {
    let mut keyed = offer("default", "keyed", "0.001");
    keyed.spec.upstream.url = Some(upstream.url.clone());
    keyed.spec.upstream.health_path = Some("/keyed".into());
    keyed.spec.upstream.auth = Some(keyed_auth());
    keyed
}

#[tokio::test]
async fn an_upstream_credential_comes_from_a_kubernetes_secret() {
    let (store, api) = kube_store().await;
    let upstream = Upstream::start().await;
    let routes = Arc::new(Routes::new());
    let reconciler = Reconciler::new(store.clone(), routes.clone(), TokenRegistry::builtin())
        .with_secrets(Arc::new(KubeSecrets::new(api.client().unwrap())));
    let keyed = keyed_offer(&upstream);
    store.apply(&keyed).await.unwrap();
    api.clear_requests();

    // No Secret, then a Secret without the key: MissingUpstreamSecret, with the hint for a
    // cluster.
    for data in [None, Some(("other", "x"))] {
        if let Some(data) = data {
            api.put_secret("default", "keys", &[data]);
        }
        let stored = reconcile(&reconciler, &store, &keyed).await;
        let (status, reason, message) = upstream_healthy(&stored);
        assert_eq!(
            (status, reason.as_str()),
            (ConditionStatus::False, "MissingUpstreamSecret")
        );
        assert_eq!(
            message,
            "secret default/keys key api: not found (create it in the offer's namespace: kubectl create secret generic NAME --from-literal=KEY=…)"
        );
        assert_eq!(
            core_calls(&api),
            ["GET /api/v1/namespaces/default/secrets/keys"]
        );
    }

    api.put_secret("default", "keys", &[("api", "sk-seller")]);
    let stored = reconcile(&reconciler, &store, &keyed).await;
    assert!(is_ready(&stored), "{:?}", stored.status.conditions);
    assert_eq!(
        core_calls(&api),
        ["GET /api/v1/namespaces/default/secrets/keys"]
    );
    let table = routes.load();
    let route = table.routes().next().unwrap();
    assert_eq!(
        format!("{:?}", route.offer.upstream_auth),
        "Some(UpstreamAuth(x-api-key: ***))"
    );
    let object = api.object("serviceoffers", "default", "keyed").unwrap();
    assert!(!object.to_string().contains("sk-seller"), "{object}");
    // Stored as the API server stores it: base64 data.
    let secret = api.core_object("secrets", "default", "keys").unwrap();
    assert_eq!(secret["data"]["api"], "c2stc2VsbGVy");
    assert!(secret.get("stringData").is_none());
}

#[tokio::test]
async fn secrets_unread_unreadable_or_unusable_are_errors_without_values() {
    let (_store, api) = kube_store().await;
    let secrets = KubeSecrets::new(api.client().unwrap());
    let unavailable = |e: SecretError| match e {
        SecretError::Unavailable(message) => message,
        other => panic!("not Unavailable: {other}"),
    };
    assert_eq!(
        unavailable(secrets.get("default", "keys", "api").unwrap_err()),
        "Secret default/keys has not been read from the Kubernetes API yet"
    );

    api.put_secret(
        "default",
        "keys",
        &[("api", "sk-1"), ("bad", "sk-two\nlines")],
    );
    api.fail_next("GET", 403);
    secrets.refresh("default", "keys").await;
    let message = unavailable(secrets.get("default", "keys", "api").unwrap_err());
    assert!(
        message.starts_with("Kubernetes API: get Secret default/keys: HTTP 403 Forbidden"),
        "{message}"
    );

    secrets.refresh("default", "keys").await;
    assert_eq!(
        secrets
            .get("default", "keys", "api")
            .unwrap()
            .unwrap()
            .expose(),
        "sk-1"
    );
    assert_eq!(secrets.get("default", "keys", "none").unwrap(), None);
    let invalid = secrets.get("default", "keys", "bad").unwrap_err();
    assert!(matches!(invalid, SecretError::Invalid(_)), "{invalid}");
    assert_eq!(
        invalid.to_string(),
        "Secret default/keys key bad: the secret value must be printable ASCII on one line"
    );
    assert!(!format!("{secrets:?}").contains("sk-"));

    // Deleted since: read again, it is gone.
    let secret_api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(api.client().unwrap(), "default");
    secret_api
        .delete("keys", &Default::default())
        .await
        .unwrap();
    secrets.refresh("default", "keys").await;
    assert_eq!(secrets.get("default", "keys", "api").unwrap(), None);
}

/// A gateway replica publishes the table the operator's Ready offers make: an original offer
/// (a Service upstream, a `secretRef`) is routed to the Service's DNS name with the Secret's
/// value — read by the replica itself, which reconciles nothing.
#[tokio::test]
async fn a_replica_routes_a_service_upstream_with_its_kubernetes_secret() {
    let (store, api) = kube_store().await;
    let upstream = Upstream::start().await;
    let port = upstream.address.port();
    let dns = "llm.default.svc.cluster.local";
    let cluster = UpstreamResolution::Cluster {
        domain: DEFAULT_CLUSTER_DOMAIN.into(),
    };
    api.put_service("default", "llm", &[port]);
    api.put_secret("default", "keys", &[("api", "sk-seller")]);
    let operator = Reconciler::new(
        store.clone(),
        Arc::new(Routes::new()),
        TokenRegistry::builtin(),
    )
    .with_upstreams(cluster.clone())
    .with_services(Arc::new(KubeServices::new(api.client().unwrap())))
    .with_secrets(Arc::new(KubeSecrets::new(api.client().unwrap())))
    .with_probe_client(probe_client(&[dns]));
    let mut original = keyed_offer(&upstream);
    original.spec.upstream.url = None;
    original.spec.upstream.service = Some("llm".into());
    original.spec.upstream.port = Some(port);
    store.apply(&original).await.unwrap();
    let stored = reconcile(&operator, &store, &original).await;
    assert!(is_ready(&stored), "{:?}", stored.status.conditions);

    let routes = Arc::new(Routes::new());
    let replica = Reconciler::new(store.clone(), routes.clone(), TokenRegistry::builtin())
        .with_upstreams(cluster)
        .with_secrets(Arc::new(KubeSecrets::new(api.client().unwrap())));
    api.clear_requests();
    assert_eq!(
        replica.publish_routes().await.unwrap(),
        0,
        "no secret read yet"
    );
    assert_eq!(
        replica.publish_routes_with_fresh_secrets().await.unwrap(),
        1
    );
    assert_eq!(
        core_calls(&api),
        ["GET /api/v1/namespaces/default/secrets/keys"],
        "the replica reads the Secret it routes with, and nothing else"
    );
    let table = routes.load();
    let route = table.routes().next().unwrap();
    assert_eq!(
        route.offer.upstream.as_str(),
        format!("http://{dns}:{port}/")
    );
    let mut headers = axum::http::HeaderMap::new();
    route
        .offer
        .upstream_auth
        .as_ref()
        .unwrap()
        .apply(&mut headers);
    assert_eq!(headers["x-api-key"], "sk-seller");
}

/// What the CLI writes on a cluster-backed stack: a Secret created, then replaced at its
/// resource version; listed by name and keys; deleted once.
#[tokio::test]
async fn the_cli_writes_secrets_through_the_api() {
    use obol_control::secrets::{SecretData, SecretStore, SecretValue};
    let (_store, api) = kube_store().await;
    let secrets = KubeSecrets::new(api.client().unwrap());
    let data =
        |value: &str| SecretData::from([("token".to_owned(), SecretValue::new(value).unwrap())]);
    api.clear_requests();
    secrets
        .put("sellers", "keys", &data("sk-one"))
        .await
        .unwrap();
    secrets
        .put("sellers", "keys", &data("sk-two"))
        .await
        .unwrap();
    assert_eq!(
        core_calls(&api),
        [
            "POST /api/v1/namespaces/sellers/secrets",
            "POST /api/v1/namespaces/sellers/secrets",
            "GET /api/v1/namespaces/sellers/secrets/keys",
            "PUT /api/v1/namespaces/sellers/secrets/keys",
        ]
    );
    let stored = api.core_object("secrets", "sellers", "keys").unwrap();
    assert_eq!(stored["data"]["token"], "c2stdHdv");
    let listed = secrets.list("sellers").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].keys.clone()),
        ("keys", vec!["token".to_owned()])
    );
    // Refused before any request: a bad name or an empty secret.
    api.clear_requests();
    assert!(
        secrets
            .put("sellers", "Bad_Name", &data("x"))
            .await
            .is_err()
    );
    assert!(
        secrets
            .put("sellers", "empty", &SecretData::new())
            .await
            .is_err()
    );
    assert!(core_calls(&api).is_empty());
    assert!(secrets.delete("sellers", "keys").await.unwrap());
    assert!(!secrets.delete("sellers", "keys").await.unwrap());
    assert!(api.core_object("secrets", "sellers", "keys").is_none());
}

/// A core/v1 object replaced at a version other than the stored one is refused, as the API
/// server refuses it (what `obol sell info set`'s read-change-replace of the gateways'
/// settings relies on).
#[tokio::test]
async fn a_stale_replace_of_a_config_map_is_a_conflict() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (_store, api) = kube_store().await;
    api.put_config_map("obol-system", "settings", &[("stack.json", "{}")]);
    let maps: Api<ConfigMap> = Api::namespaced(api.client().unwrap(), "obol-system");
    let read = maps.get("settings").await.unwrap();
    api.put_config_map("obol-system", "settings", &[("stack.json", "{\"a\": 1}")]);
    let stale = maps
        .replace("settings", &PostParams::default(), &read)
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, kube::Error::Api(status) if status.code == 409 && status.reason == "Conflict"),
        "{stale}"
    );
    let mut fresh = maps.get("settings").await.unwrap();
    fresh
        .data
        .get_or_insert_with(Default::default)
        .insert("stack.json".into(), "{\"b\": 2}".into());
    maps.replace("settings", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(
        api.core_object("configmaps", "obol-system", "settings")
            .unwrap()["data"]["stack.json"],
        "{\"b\": 2}"
    );
}
