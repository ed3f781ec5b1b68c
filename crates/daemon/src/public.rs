//! The public side of a stack, as the embedded daemon and a gateway replica both serve it: the
//! paygate over the routes the reconciler publishes, the storefront and discovery documents,
//! vanity hostnames; and the internal router (metrics, ForwardAuth).

use std::sync::Arc;

use axum::Router;
use obol_config::public_url::SharedPublicUrl;
use obol_config::stack::StackFile;
use obol_config::{Paths, PublicUrl};
use obol_control::Store;
use obol_control::reconcile::{Reconciler, UpstreamResolution};
use obol_control::secrets::{FileSecrets, SecretSource};
use obol_gateway::Routes;
use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, gateway};
use obol_gateway::siwx::Siwx;
use obol_x402::token::TokenRegistry;

use crate::{
    DaemonError, FacilitatorSummary, chain_ids, facilitator, payment_guard, payment_store_url,
    sign_in,
};
use crate::{storefront, vanity};

/// What [`assemble`] built.
pub(crate) struct Public {
    /// The route table the paygate serves (the reconciler publishes it).
    pub(crate) routes: Arc<Routes>,
    /// The offers' secrets.
    pub(crate) secrets: Arc<FileSecrets>,
    /// Which facilitator, for `obol stack status`.
    pub(crate) facilitator_summary: FacilitatorSummary,
    /// The facilitator the paygate verifies and settles with (`obol doctor` asks its
    /// `/supported`).
    pub(crate) facilitator: Arc<dyn obol_facilitator::Facilitator>,
    /// The offer reconciler (it also publishes the route table).
    pub(crate) reconciler: Arc<Reconciler>,
    /// The payment guard.
    pub(crate) guard: Arc<ReplayGuard>,
    /// Sign-In-With-X.
    pub(crate) siwx: Arc<Siwx>,
    /// What buyers reach: the paygate, the storefront, vanity hostnames.
    pub(crate) public: Router,
    /// Metrics and ForwardAuth: never public.
    pub(crate) internal: Router,
}

/// How a gateway replica in a cluster reaches offers' upstreams: Service upstreams at their
/// cluster DNS names, credentials from the cluster's Secrets (the embedded stack: URL
/// upstreams and the secrets directory).
pub struct ClusterAccess {
    /// Where `upstream.auth` secrets are read (Kubernetes Secrets).
    pub secrets: Arc<dyn SecretSource>,
    /// How Service upstreams are reached.
    pub upstreams: UpstreamResolution,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

/// Builds the public side over `store` (see the module docs); everything that publishes the
/// public URL reads it from `live` (`public_url` as it was at start); `cluster` (a replica's)
/// says how upstreams are reached.
pub(crate) async fn assemble(
    paths: &Paths,
    settings: &StackFile,
    store: Arc<dyn Store>,
    (public_url, live): (&PublicUrl, &SharedPublicUrl),
    facilitator_signer: Option<&obol_x402::LocalSigner>,
    cluster: Option<&ClusterAccess>,
) -> Result<Public, DaemonError> {
    let routes = Arc::new(Routes::new());
    let chains = chain_ids(paths);
    let secrets = Arc::new(FileSecrets::new(paths.secrets_dir()));
    let (facilitator, facilitator_summary) = facilitator::build(
        paths,
        settings.facilitator.as_ref(),
        facilitator_signer,
        &facilitator::default_url(),
    )
    .await?;
    let reconciler = Arc::new(
        Reconciler::new(store.clone(), routes.clone(), TokenRegistry::builtin())
            .with_chains(chains.clone())
            .with_secrets(cluster.map_or_else(
                || secrets.clone() as Arc<dyn SecretSource>,
                |c| c.secrets.clone(),
            ))
            .with_upstreams(cluster.map(|c| c.upstreams.clone()).unwrap_or_default())
            .with_settlers(facilitator::upto_settlers(facilitator.as_ref()).await)
            .with_public_url(live.clone()),
    );
    let shared = payment_store_url(settings.payment_store.as_deref())?;
    let guard = Arc::new(payment_guard(paths, shared.as_deref()).await?);
    let mut gateway_config = GatewayConfig::default();
    gateway_config.paygate.public_url = live.clone();
    let siwx = sign_in::build(paths, public_url, shared.as_deref(), live.clone()).await?;
    gateway_config.paygate.siwx = Some(siwx.clone());
    if let Some(rate) = settings.verify_per_second {
        let burst = settings.verify_burst.unwrap_or(rate.saturating_mul(2));
        gateway_config.paygate.verify_rate =
            std::num::NonZeroU32::new(rate).zip(std::num::NonZeroU32::new(burst.max(1)));
    }
    let served = gateway(
        routes.clone(),
        facilitator.clone(),
        guard.clone(),
        gateway_config,
    )
    .map_err(|e| DaemonError::Start(e.to_string()))?;
    let public = vanity::wrap(
        served.public.merge(storefront::router(
            store.clone(),
            live.clone(),
            chains,
            &paths.stack_file(),
        )),
        routes.clone(),
        store,
        &paths.stack_file(),
    );
    Ok(Public {
        routes,
        secrets,
        facilitator_summary,
        facilitator,
        reconciler,
        guard,
        siwx,
        public,
        internal: served.internal,
    })
}
