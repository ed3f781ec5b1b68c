//! [`AdminClient`]: what the CLI calls to read and change the stack's resources — the daemon's
//! admin API over HTTP, or, when the stack's resources live in a Kubernetes cluster, the same
//! operations ([`super::ops`]) run here against the cluster's store.

use std::sync::Arc;

use obol_control::secrets::SecretStore;
use obol_control::store::ApplyMode;
use obol_control::{Object, ServiceOfferSpec, Store};
use serde::Serialize;

use super::{AdminError, AdminKind, Applied, StackStatus, ops};

/// A stack whose resources live in a cluster: what its status reports.
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    /// The stack id.
    pub stack_id: String,
    /// Where the cluster is, for messages (`the cluster at https://… (namespace n)`).
    pub describe: String,
    /// The gateway's URL as this machine reaches it.
    pub gateway: String,
    /// The public base URL buyers use (none: not set).
    pub public_url: Option<String>,
}

#[derive(Clone)]
enum Transport {
    /// The daemon's admin API.
    Daemon {
        base: String,
        token: String,
        http: reqwest::Client,
    },
    /// A store reached directly (a cluster's), and where its secrets are written.
    Store {
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        cluster: ClusterInfo,
    },
}

/// A client of the stack's resources (used by the CLI).
#[derive(Clone)]
pub struct AdminClient {
    transport: Transport,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.transport {
            Transport::Daemon { base, .. } => {
                f.debug_struct("AdminClient").field("daemon", base).finish()
            }
            Transport::Store { cluster, .. } => f
                .debug_struct("AdminClient")
                .field("cluster", &cluster.describe)
                .finish(),
        }
    }
}

impl AdminClient {
    /// A client of the admin API at `address` (`host:port`) with `token`.
    pub fn new(address: &str, token: &str) -> Self {
        Self {
            transport: Transport::Daemon {
                base: format!("http://{address}"),
                token: token.to_owned(),
                http: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
            },
        }
    }

    /// A client working on `store` itself (a cluster's), validating as the daemon does, its
    /// secrets written to `secrets`.
    pub fn over_store(
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        cluster: ClusterInfo,
    ) -> Self {
        Self {
            transport: Transport::Store {
                store,
                secrets,
                cluster,
            },
        }
    }

    /// Where secrets are written when this client works on a store itself.
    pub(crate) fn secret_store(&self) -> Option<&dyn SecretStore> {
        match &self.transport {
            Transport::Store { secrets, .. } => Some(secrets.as_ref()),
            Transport::Daemon { .. } => None,
        }
    }

    /// A call to the daemon's admin API; refused when the resources live in a cluster (only a
    /// daemon answers it).
    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T, AdminError> {
        let (base, token, http) = match &self.transport {
            Transport::Daemon { base, token, http } => (base, token, http),
            Transport::Store { cluster, .. } => {
                return Err(AdminError {
                    status: None,
                    message: format!(
                        "{method} {path} needs the embedded stack daemon; this stack's resources \
                         live in {} (the operator and gateways run there: docs/kubernetes.md)",
                        cluster.describe
                    ),
                    reason: Some("NotOnCluster".to_owned()),
                });
            }
        };
        let mut request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| AdminError {
            status: None,
            message: format!(
                "the stack daemon at {base} is not answering ({}); is it running? try `obol stack up`",
                e.without_url()
            ),
            reason: None,
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            let body = serde_json::from_str::<serde_json::Value>(&text).ok();
            let field = |name: &str| {
                body.as_ref()
                    .and_then(|v| v.get(name)?.as_str().map(str::to_owned))
            };
            return Err(AdminError {
                status: Some(status),
                message: field("error").unwrap_or(text),
                reason: field("reason"),
            });
        }
        serde_json::from_str(&text).map_err(|e| AdminError {
            status: Some(status),
            message: format!("unexpected answer from the daemon: {e}"),
            reason: None,
        })
    }

    /// The stack's status (on a cluster: its settings, and the offers whose route is published).
    pub async fn status(&self) -> Result<StackStatus, AdminError> {
        match &self.transport {
            Transport::Daemon { .. } => {
                self.call(reqwest::Method::GET, "/v1/status", None::<&()>)
                    .await
            }
            Transport::Store { store, cluster, .. } => {
                let offers = ops::list::<ServiceOfferSpec>(store.as_ref(), None).await?;
                let routes = offers
                    .iter()
                    .filter(|o| {
                        obol_control::resource::is_true(&o.status.conditions, "RoutePublished")
                    })
                    .count();
                Ok(StackStatus {
                    stack_id: cluster.stack_id.clone(),
                    pid: 0,
                    gateway: cluster.gateway.clone(),
                    public_url: cluster
                        .public_url
                        .clone()
                        .unwrap_or_else(|| cluster.gateway.clone()),
                    public_url_is_default: cluster.public_url.is_none(),
                    routes,
                    facilitator: crate::facilitator::FacilitatorSummary::default(),
                })
            }
        }
    }

    /// Every object of a kind.
    pub async fn list<S: AdminKind>(&self) -> Result<Vec<Object<S>>, AdminError> {
        match &self.transport {
            Transport::Store { store, .. } => ops::list(store.as_ref(), None).await,
            Transport::Daemon { .. } => {
                self.call(
                    reqwest::Method::GET,
                    &format!("/v1/{}", S::PLURAL),
                    None::<&()>,
                )
                .await
            }
        }
    }

    /// One object.
    pub async fn get<S: AdminKind>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Object<S>, AdminError> {
        match &self.transport {
            Transport::Store { store, .. } => ops::get(store.as_ref(), None, namespace, name).await,
            Transport::Daemon { .. } => {
                self.call(
                    reqwest::Method::GET,
                    &format!("/v1/{}/{namespace}/{name}", S::PLURAL),
                    None::<&()>,
                )
                .await
            }
        }
    }

    async fn put<S: AdminKind>(
        &self,
        object: &Object<S>,
        mode: ApplyMode,
    ) -> Result<Applied<S>, AdminError> {
        match &self.transport {
            Transport::Store { store, .. } => ops::put(store.as_ref(), object, mode).await,
            Transport::Daemon { .. } => {
                let create = if mode == ApplyMode::CreateOnly {
                    "?create=true"
                } else {
                    ""
                };
                let path = format!(
                    "/v1/{}/{}/{}{create}",
                    S::PLURAL,
                    object.metadata.namespace,
                    object.metadata.name
                );
                self.call(reqwest::Method::PUT, &path, Some(object)).await
            }
        }
    }

    /// Creates or updates an object.
    pub async fn apply<S: AdminKind>(&self, object: &Object<S>) -> Result<Applied<S>, AdminError> {
        self.put(object, ApplyMode::Upsert).await
    }

    /// Creates an object; refused (409, "already exists") when it is there.
    pub async fn create<S: AdminKind>(&self, object: &Object<S>) -> Result<Applied<S>, AdminError> {
        self.put(object, ApplyMode::CreateOnly).await
    }

    /// Deletes an object.
    pub async fn delete<S: AdminKind>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<serde_json::Value, AdminError> {
        match &self.transport {
            Transport::Store { store, .. } => {
                ops::delete::<S>(store.as_ref(), namespace, name).await
            }
            Transport::Daemon { .. } => {
                self.call(
                    reqwest::Method::DELETE,
                    &format!("/v1/{}/{namespace}/{name}", S::PLURAL),
                    None::<&()>,
                )
                .await
            }
        }
    }

    /// What only the daemon knows, for `obol doctor` (`crate::doctor`).
    pub async fn doctor(&self) -> Result<crate::doctor::DoctorFacts, AdminError> {
        self.call(reqwest::Method::GET, "/v1/doctor", None::<&()>)
            .await
    }

    /// Asks the daemon to copy the databases it holds open (`crate::backup`).
    pub async fn backup(&self) -> Result<crate::backup::Snapshot, AdminError> {
        self.call(reqwest::Method::POST, "/v1/backup", None::<&()>)
            .await
    }

    /// Asks the daemon to stop.
    pub async fn shutdown(&self) -> Result<serde_json::Value, AdminError> {
        self.call(reqwest::Method::POST, "/v1/shutdown", None::<&()>)
            .await
    }
}
