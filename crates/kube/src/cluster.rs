//! What the offer reconciler reads from the cluster besides the custom resources: the
//! Service behind a Service upstream ([`KubeServices`]) and the Secret behind an upstream
//! credential ([`KubeSecrets`]), each with one `GET` (RBAC: `get` on `services` and `secrets`,
//! nothing more). The CLI writes Secrets through [`KubeSecrets`] too ([`SecretStore`]), with
//! the user's own rights.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use obol_control::reconcile::{ServiceDirectory, ServiceInfo, ServiceLookupError};
use obol_control::secrets::{
    SecretData, SecretError, SecretInfo, SecretSource, SecretStore, SecretValue, check_secret,
};

use crate::convert::{api_status, describe};

/// core/v1 Services: `GET /api/v1/namespaces/{namespace}/services/{name}` (`404` → absent).
#[derive(Clone)]
pub struct KubeServices {
    client: Client,
}

impl std::fmt::Debug for KubeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeServices").finish_non_exhaustive()
    }
}

impl KubeServices {
    /// The Services of `client`'s cluster.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// A Service's ports, or `None` when any port reaches its backends: an `ExternalName`
/// Service (a DNS alias) or a headless one (`clusterIP: None`, the pods' own addresses).
fn service_info(service: &Service) -> ServiceInfo {
    let spec = service.spec.clone().unwrap_or_default();
    let any_port =
        spec.type_.as_deref() == Some("ExternalName") || spec.cluster_ip.as_deref() == Some("None");
    ServiceInfo {
        ports: (!any_port).then(|| {
            spec.ports
                .unwrap_or_default()
                .iter()
                .filter_map(|p| u16::try_from(p.port).ok())
                .collect()
        }),
    }
}

#[async_trait]
impl ServiceDirectory for KubeServices {
    async fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceInfo>, ServiceLookupError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(found) => Ok(found.as_ref().map(service_info)),
            Err(e) => Err(ServiceLookupError(describe(
                &format!("Kubernetes API: get Service {namespace}/{name}"),
                &e,
            ))),
        }
    }
}

/// What the last read of one Secret found.
enum Read {
    /// Its keys, each a usable value or why it is not one (never the value).
    Found(BTreeMap<String, Result<SecretValue, String>>),
    /// No such Secret.
    Missing,
    /// The API failed; why.
    Failed(String),
}

/// core/v1 Secrets, read with `GET /api/v1/namespaces/{namespace}/secrets/{name}` in
/// [`refresh`](SecretSource::refresh); [`get`](SecretSource::get) answers from the last read
/// (the reconciler refreshes before every probe). A key's value is its data decoded (UTF-8,
/// then the rules of a [`SecretValue`]). Values are never logged, put in errors, or shown by
/// `Debug`.
pub struct KubeSecrets {
    client: Client,
    read: Mutex<HashMap<(String, String), Read>>,
}

impl std::fmt::Debug for KubeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSecrets").finish_non_exhaustive()
    }
}

impl KubeSecrets {
    /// The Secrets of `client`'s cluster, none read yet.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            read: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, namespace: &str, name: &str, read: Read) {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.to_owned(), name.to_owned()), read);
    }
}

/// Each key's value as a [`SecretValue`], or why it is not one.
fn decode(secret: Secret) -> BTreeMap<String, Result<SecretValue, String>> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, bytes)| {
            let value = String::from_utf8(bytes.0)
                .map_err(|_| "the value is not UTF-8 text".to_owned())
                .and_then(|text| SecretValue::new(&text).map_err(|e| e.to_string()));
            (key, value)
        })
        .collect()
}

#[async_trait]
impl SecretSource for KubeSecrets {
    fn get(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        match read.get(&(namespace.to_owned(), name.to_owned())) {
            None => Err(SecretError::Unavailable(format!(
                "Secret {namespace}/{name} has not been read from the Kubernetes API yet"
            ))),
            Some(Read::Missing) => Ok(None),
            Some(Read::Failed(why)) => Err(SecretError::Unavailable(why.clone())),
            Some(Read::Found(data)) => match data.get(key) {
                None => Ok(None),
                Some(Ok(value)) => Ok(Some(value.clone())),
                Some(Err(why)) => Err(SecretError::Invalid(format!(
                    "Secret {namespace}/{name} key {key}: {why}"
                ))),
            },
        }
    }

    async fn refresh(&self, namespace: &str, name: &str) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let read = match api.get_opt(name).await {
            Ok(Some(secret)) => Read::Found(decode(secret)),
            Ok(None) => Read::Missing,
            Err(e) => Read::Failed(describe(
                &format!("Kubernetes API: get Secret {namespace}/{name}"),
                &e,
            )),
        };
        self.remember(namespace, name, read);
    }

    fn missing_hint(&self) -> String {
        "create it in the offer's namespace: kubectl create secret generic NAME --from-literal=KEY=…"
            .to_owned()
    }
}

/// The label on the Secrets the CLI writes.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "obol");

/// `obol secret set|list|delete` and `sell --upstream-auth-file` on a cluster-backed stack:
/// core/v1 Secrets (type `Opaque`, labelled `app.kubernetes.io/managed-by=obol`) written with
/// the user's kubeconfig. Values go in and never come out.
#[async_trait]
impl SecretStore for KubeSecrets {
    async fn put(&self, namespace: &str, name: &str, data: &SecretData) -> Result<(), SecretError> {
        check_secret(namespace, name, data)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut secret = Secret {
            type_: Some("Opaque".to_owned()),
            data: Some(
                data.iter()
                    .map(|(key, value)| {
                        (key.clone(), ByteString(value.expose().as_bytes().to_vec()))
                    })
                    .collect(),
            ),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.labels = Some(BTreeMap::from([(
            MANAGED_BY.0.to_owned(),
            MANAGED_BY.1.to_owned(),
        )]));
        let failed = |what: &str, e: &kube::Error| {
            SecretError::Unavailable(describe(
                &format!("Kubernetes API: {what} Secret {namespace}/{name}"),
                e,
            ))
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if api_status(&e).is_some_and(|(code, _)| code == 409) => {
                let existing = api.get(name).await.map_err(|e| failed("get", &e))?;
                secret.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .map(drop)
                    .map_err(|e| failed("replace", &e))
            }
            Err(e) => Err(failed("create", &e)),
        }
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<bool, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(e) if api_status(&e).is_some_and(|(code, _)| code == 404) => Ok(false),
            Err(e) => Err(SecretError::Unavailable(describe(
                &format!("Kubernetes API: delete Secret {namespace}/{name}"),
                &e,
            ))),
        }
    }

    async fn list(&self, namespace: &str) -> Result<Vec<SecretInfo>, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let listed = api.list(&ListParams::default()).await.map_err(|e| {
            SecretError::Unavailable(describe(
                &format!("Kubernetes API: list Secrets in {namespace}"),
                &e,
            ))
        })?;
        let mut found: Vec<SecretInfo> = listed
            .items
            .into_iter()
            .map(|secret| SecretInfo {
                namespace: namespace.to_owned(),
                name: secret.metadata.name.unwrap_or_default(),
                keys: secret.data.unwrap_or_default().into_keys().collect(),
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}
