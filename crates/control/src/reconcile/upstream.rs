//! An offer's upstream as the reconciler reaches it: a URL (embedded), or a Kubernetes Service
//! (`upstream.service / namespace / port`) looked up in a [`ServiceDirectory`] and reached at
//! its cluster DNS name; and the health probe that sets `UpstreamHealthy`.

use crate::offer::ServiceOffer;
use crate::routes::upstream_auth;
use crate::secrets::SecretSource;

/// How an upstream given as a Kubernetes Service (`upstream.service/namespace/port`) is
/// reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamResolution {
    /// The embedded stack: only `upstream.url`; a Service upstream is `MissingService`.
    #[default]
    Embedded,
    /// In a cluster: a Service upstream is its cluster DNS name in this domain
    /// ([`crate::offer::DEFAULT_CLUSTER_DOMAIN`] unless the cluster says otherwise).
    Cluster {
        /// The cluster's DNS domain.
        domain: String,
    },
}

/// `offer` with a Service upstream resolved to its URL (`Cluster`), for probing and
/// routing; the stored object is never changed. The URL form and the embedded mode are
/// left as they are.
pub fn resolve_upstream(mut offer: ServiceOffer, resolution: &UpstreamResolution) -> ServiceOffer {
    if let UpstreamResolution::Cluster { domain } = resolution {
        let upstream = &mut offer.spec.upstream;
        if let Some(url) = upstream.cluster_url(&offer.metadata.namespace, domain) {
            upstream.url = Some(url);
            upstream.service = None;
            upstream.namespace = None;
            upstream.port = None;
        }
    }
    offer
}

/// What the reconciler needs to know of an existing Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The ports it forwards (`spec.ports[].port`); `None` when any port reaches its
    /// backends (a headless or `ExternalName` Service).
    pub ports: Option<Vec<u16>>,
}

/// A Service could not be looked up (the API unreachable, access refused): nobody saw it
/// missing. The message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceLookupError(pub String);

/// Where a Service upstream's Service is looked up (Kubernetes: core/v1 Services).
#[async_trait::async_trait]
pub trait ServiceDirectory: Send + Sync {
    /// Service `namespace/name`, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`ServiceLookupError`] when the directory could not answer.
    async fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceInfo>, ServiceLookupError>;
}

/// In `Cluster` mode with a directory: whether the Service of `offer`'s Service upstream is
/// there with its port. `Ok` for the URL form, the embedded mode, or without a directory
/// (the probe tells); else the `UpstreamHealthy` reason and message.
pub(super) async fn check_service(
    directory: Option<&dyn ServiceDirectory>,
    resolution: &UpstreamResolution,
    offer: &ServiceOffer,
) -> Result<(), (&'static str, String)> {
    let upstream = &offer.spec.upstream;
    let (Some(directory), UpstreamResolution::Cluster { .. }, None, Some(service)) = (
        directory,
        resolution,
        &upstream.url,
        upstream.service.as_deref(),
    ) else {
        return Ok(());
    };
    let namespace = upstream
        .namespace
        .as_deref()
        .unwrap_or(&offer.metadata.namespace);
    let found = directory.service(namespace, service).await.map_err(|e| {
        (
            "Unhealthy",
            format!("Service {service} in namespace {namespace} could not be looked up: {e}"),
        )
    })?;
    let Some(found) = found else {
        return Err((
            "MissingService",
            format!("Service {service} not found in namespace {namespace}"),
        ));
    };
    match (upstream.port, found.ports) {
        (Some(port), Some(ports)) if !ports.contains(&port) => {
            let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
            Err((
                "Unhealthy",
                format!(
                    "Service {service} in namespace {namespace} has no port {port} (its ports: {})",
                    if listed.is_empty() {
                        "none".to_owned()
                    } else {
                        listed.join(", ")
                    }
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// What sets `UpstreamHealthy`: GET the offer's health path (an MCP server: its `initialize`)
/// with the offer's upstream credential, through `http` (whose timeout bounds it); 2xx is
/// healthy, else the reason and a message (`obol doctor` asks the same way).
pub async fn probe_upstream(
    http: &reqwest::Client,
    secrets: &dyn SecretSource,
    offer: &ServiceOffer,
) -> Result<(), (&'static str, String)> {
    let Some(base) = offer.spec.upstream.url.as_deref() else {
        return Err((
            "MissingService",
            "the embedded stack needs spec.upstream.url".to_owned(),
        ));
    };
    let auth =
        upstream_auth(secrets, offer).map_err(|e| ("MissingUpstreamSecret", e.to_string()))?;
    let mcp_server = crate::mcp::is_mcp_server(offer);
    let health = if mcp_server {
        "(MCP initialize)".to_owned()
    } else {
        offer.health_path()
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(auth) = auth {
        auth.apply(&mut headers);
    }
    let request = if mcp_server {
        // An MCP server is healthy when it answers the handshake's first message.
        http.post(base)
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .json(&crate::mcp::initialize_request())
    } else {
        http.get(format!("{}{health}", base.trim_end_matches('/')))
    };
    let request = request.headers(headers);
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err((
            "Unhealthy",
            format!(
                "HTTP {} from upstream health path {health}",
                response.status().as_u16()
            ),
        )),
        Err(e) => Err((
            "Unhealthy",
            format!("upstream health path {health}: {}", e.without_url()),
        )),
    }
}
