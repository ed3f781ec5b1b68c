//! The `ServiceOffer` reconciler: idempotent, level-triggered, one offer at a time.
//!
//! ModelReady → UpstreamHealthy → PaymentGateReady → RoutePublished → Registered → Ready, with
//! the reasons of obol-stack.md §3.1. After every reconcile the gateway's route table is rebuilt
//! from the offers whose `RoutePublished` is True, so the gateway serves exactly those.
//!
//! `Registered`: the controller never signs. An offer with registration enabled takes its
//! `agentId` from the `AgentIdentity` `x402/default` for its chain (any naming of the same chain
//! id, [`ChainIds::registration_for`]), recorded there by `obol sell register` or `obol sell
//! identity import`; until then it is `AwaitingExternalRegistration` and already serves paid
//! traffic. Identity changes re-queue every offer ([`Reconcile::also_watch`]).

use std::sync::Arc;
use std::time::Duration;

use obol_gateway::Routes;
use obol_x402::token::TokenRegistry;

use crate::controller::Reconcile;
use crate::identity::{AgentIdentitySpec, DEFAULT_IDENTITY};
use crate::offer::{
    OfferType, ServiceOffer, ServiceOfferSpec, ServiceOfferStatus, is_reserved, is_sign_in_path,
};
use crate::registration::{ChainIdSource, ChainIds};
use crate::resource::{ConditionStatus, Spec, is_true, set_condition};
use crate::routes::route_table;
use crate::secrets::{NoSecrets, SecretSource};
use crate::store::{Store, StoreError, StoreExt};

#[cfg(feature = "testing")]
pub mod conformance;
mod upstream;

pub use upstream::{
    ServiceDirectory, ServiceInfo, ServiceLookupError, UpstreamResolution, probe_upstream,
    resolve_upstream,
};

/// The finalizer that routes deletion through the reconciler (route removal first).
pub const FINALIZER: &str = "obol.org/serviceoffer-finalizer";
/// Requeue while an offer is not ready.
pub const NOT_READY_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue of a ready offer (its upstream health is re-checked).
pub const READY_REQUEUE: Duration = Duration::from_secs(60);
/// Requeue after a path conflict.
pub const CONFLICT_REQUEUE: Duration = Duration::from_secs(30);
/// Budget of the upstream health probe.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The condition types, in pipeline order.
pub const CONDITIONS: [&str; 5] = [
    "ModelReady",
    "UpstreamHealthy",
    "PaymentGateReady",
    "RoutePublished",
    "Registered",
];

/// What to do next with an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long.
    Requeue(Duration),
    /// Nothing to do until it changes.
    Done,
}

/// Reconciles offers against the store and publishes the gateway's routes.
pub struct Reconciler {
    store: Arc<dyn Store>,
    routes: Arc<Routes>,
    tokens: TokenRegistry,
    http: reqwest::Client,
    chains: ChainIdSource,
    secrets: Arc<dyn SecretSource>,
    /// The host of the stack's public URL now (a tunnel may change it while the stack runs).
    public_host: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    settlers: crate::routes::Settlers,
    upstreams: UpstreamResolution,
    services: Option<Arc<dyn ServiceDirectory>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

fn drain_end(spec: &ServiceOfferSpec) -> Option<u64> {
    let start = parse_rfc3339(spec.drain_at.as_deref()?)?;
    let grace = spec
        .drain_grace_period
        .as_deref()
        .map_or(Some(3600), parse_duration)?;
    Some(start.saturating_add(grace))
}

/// `30s`, `5m`, `1h`, `2h30m`, `30d`, `0`.
pub fn parse_duration(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC) → unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<u64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time
        .split(':')
        .map(|p| p.split('.').next().unwrap_or(p).parse::<u64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (H. Hinnant), inverse of obol_config::time::rfc3339.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[async_trait::async_trait]
impl Reconcile for Reconciler {
    type Error = StoreError;

    fn kind(&self) -> &'static str {
        <ServiceOfferSpec as Spec>::KIND
    }

    fn also_watch(&self) -> &'static [&'static str] {
        &[<AgentIdentitySpec as Spec>::KIND]
    }

    async fn start(&self) -> Result<(), StoreError> {
        self.publish_routes().await.map(drop)
    }

    async fn reconcile(&self, namespace: &str, name: &str) -> Result<Action, StoreError> {
        Self::reconcile(self, namespace, name).await
    }
}

impl Reconciler {
    /// A reconciler over `store`, publishing into `routes`.
    pub fn new(store: Arc<dyn Store>, routes: Arc<Routes>, tokens: TokenRegistry) -> Self {
        let http = reqwest::Client::builder()
            .timeout(HEALTH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            store,
            routes,
            tokens,
            http,
            chains: Arc::new(ChainIds::builtin),
            secrets: Arc::new(NoSecrets),
            public_host: Arc::new(|| None),
            settlers: crate::routes::Settlers::new(),
            upstreams: UpstreamResolution::Embedded,
            services: None,
        }
    }

    /// How Service upstreams are reached ([`UpstreamResolution::Embedded`] by default; the
    /// Kubernetes controller uses `Cluster`).
    #[must_use]
    pub fn with_upstreams(mut self, upstreams: UpstreamResolution) -> Self {
        self.upstreams = upstreams;
        self
    }

    /// Looks the Service of a Service upstream up in `services` before probing it (`Cluster`
    /// mode): absent → `MissingService`. Without a directory the probe alone tells.
    #[must_use]
    pub fn with_services(mut self, services: Arc<dyn ServiceDirectory>) -> Self {
        self.services = Some(services);
        self
    }

    /// The HTTP client of the upstream health probes (by default: a [`HEALTH_TIMEOUT`]
    /// timeout, no redirects); its timeout bounds each probe. Tests give one that resolves
    /// cluster DNS names to loopback (reqwest's `resolve`).
    #[must_use]
    pub fn with_probe_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Who settles `upto` payments per chain (the facilitator's `extra.facilitatorAddress`):
    /// offers with `payment.upto` add a metered option on those chains; by default none.
    #[must_use]
    pub fn with_settlers(mut self, settlers: crate::routes::Settlers) -> Self {
        self.settlers = settlers;
        self
    }

    /// The host of the stack's public URL: no offer may take it as its vanity hostname.
    #[must_use]
    pub fn with_public_host(mut self, host: Option<String>) -> Self {
        self.public_host = Arc::new(move || host.clone());
        self
    }

    /// [`Reconciler::with_public_host`] following the stack's public URL as it changes (none
    /// while it is the local default).
    #[must_use]
    pub fn with_public_url(mut self, public_url: obol_config::public_url::SharedPublicUrl) -> Self {
        self.public_host = Arc::new(move || {
            let url = public_url.published()?;
            url::Url::parse(url.as_str())
                .ok()?
                .host_str()
                .map(str::to_owned)
        });
        self
    }

    /// Reads the secrets offers refer to (`spec.upstream.auth`) from `secrets`; by default
    /// there are none, and such offers stay unhealthy with `MissingUpstreamSecret`.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Resolves chain names through `chains` (the daemon reads the networks file, so custom
    /// names like `devnet` match); by default only the x402 network table is known.
    #[must_use]
    pub fn with_chains(mut self, chains: ChainIdSource) -> Self {
        self.chains = chains;
        self
    }

    /// Reconciles one offer, then republishes the routes.
    pub async fn reconcile(&self, namespace: &str, name: &str) -> Result<Action, StoreError> {
        let action = self.reconcile_offer(namespace, name).await?;
        self.publish_routes().await?;
        Ok(action)
    }

    /// Rebuilds the gateway's route table from the offers whose `RoutePublished` is True.
    pub async fn publish_routes(&self) -> Result<usize, StoreError> {
        self.publish(false).await
    }

    /// [`Self::publish_routes`], first reading again the secrets the published offers' upstream
    /// credentials name: for a gateway replica, which reconciles nothing, so nothing else reads
    /// a cluster's Secrets for it.
    pub async fn publish_routes_with_fresh_secrets(&self) -> Result<usize, StoreError> {
        self.publish(true).await
    }

    async fn publish(&self, refresh_secrets: bool) -> Result<usize, StoreError> {
        let now = obol_config::time::unix_now();
        let published: Vec<ServiceOffer> = self
            .store
            .list::<ServiceOfferSpec>(None)
            .await?
            .into_iter()
            .filter(|o| !o.metadata.is_deleting())
            .filter(|o| is_true(&o.status.conditions, "RoutePublished"))
            .filter(|o| drain_end(&o.spec).is_none_or(|end| now < end))
            .map(|o| resolve_upstream(o, &self.upstreams))
            .collect();
        for offer in published.iter().filter(|_| refresh_secrets) {
            if let Some(auth) = &offer.spec.upstream.auth {
                self.secrets
                    .refresh(&offer.metadata.namespace, &auth.secret_ref.name)
                    .await;
            }
        }
        let table = route_table(
            &self.tokens,
            self.secrets.as_ref(),
            &self.settlers,
            &published,
        );
        let count = table.len();
        self.routes.store(table);
        Ok(count)
    }

    async fn reconcile_offer(&self, namespace: &str, name: &str) -> Result<Action, StoreError> {
        let Some(offer) = self.store.get::<ServiceOfferSpec>(namespace, name).await? else {
            return Ok(Action::Done);
        };
        if offer.metadata.is_deleting() {
            // Tombstone: routes are rebuilt without it by the caller; then let it go.
            self.store.remove_finalizer(&offer, FINALIZER).await?;
            return Ok(Action::Done);
        }
        self.store.add_finalizer(&offer, FINALIZER).await?;
        let mut status = offer.status.clone();
        status.observed_generation = offer.metadata.generation;
        let path = offer.effective_path();
        status.endpoint = Some(path.clone());
        let action = self.evaluate(&offer, &mut status, &path).await?;
        status.metered = crate::routes::metered_status(&self.tokens, &self.settlers, &offer);
        self.store
            .patch_status::<ServiceOfferSpec>(namespace, name, &status)
            .await?;
        Ok(action)
    }

    async fn evaluate(
        &self,
        offer: &ServiceOffer,
        status: &mut ServiceOfferStatus,
        path: &str,
    ) -> Result<Action, StoreError> {
        let c = &mut status.conditions;
        use ConditionStatus::{False, True};

        // ModelReady.
        match (&offer.spec.type_, &offer.spec.model) {
            (OfferType::Inference, Some(model)) => set_condition(
                c,
                "ModelReady",
                True,
                "Declared",
                &format!("Model {} declared", model.name),
            ),
            (OfferType::Inference, None) => set_condition(
                c,
                "ModelReady",
                False,
                "MissingModel",
                "inference offers need spec.model.name",
            ),
            _ => set_condition(
                c,
                "ModelReady",
                True,
                "Skipped",
                "HTTP offer does not require model preparation",
            ),
        }

        // UpstreamHealthy.
        let healthy = match self.probe(offer).await {
            Ok(()) => {
                set_condition(
                    c,
                    "UpstreamHealthy",
                    True,
                    "Healthy",
                    "Upstream health check passed",
                );
                true
            }
            Err((reason, message)) => {
                set_condition(c, "UpstreamHealthy", False, reason, &message);
                false
            }
        };

        // Guards, in the original's order.
        let mut requeue = None;
        let blocked = if is_reserved(path) {
            Some(("ReservedPath", format!("{path} is reserved for the stack")))
        } else if let Some(route) = offer.spec.routes.iter().find(|r| is_sign_in_path(&r.path)) {
            Some((
                "ReservedPath",
                format!(
                    "route {} is reserved below an offer for sign-in",
                    route.path
                ),
            ))
        } else if let Some((host, owner)) = self.hostname_owner(offer).await? {
            requeue = Some(CONFLICT_REQUEUE);
            Some((
                "HostnameConflict",
                format!("{host} is already served by {owner}"),
            ))
        } else if let Some(owner) = self.path_owner(offer, path).await? {
            requeue = Some(CONFLICT_REQUEUE);
            Some((
                "PathConflict",
                format!("{path} is already served by {owner}"),
            ))
        } else {
            None
        };
        let now = obol_config::time::unix_now();
        let draining = drain_end(&offer.spec);
        match draining {
            Some(end) if now >= end => set_condition(
                c,
                "Draining",
                False,
                "Drained",
                "Drain ended; the offer is no longer sold",
            ),
            Some(end) => set_condition(
                c,
                "Draining",
                True,
                "Draining",
                &format!("Drain ends at {}", obol_config::time::rfc3339(end)),
            ),
            None => set_condition(c, "Draining", False, "Active", "Not draining"),
        }
        let drained = draining.is_some_and(|end| now >= end);

        if let Some((reason, message)) = &blocked {
            set_condition(c, "PaymentGateReady", False, reason, message);
            set_condition(c, "RoutePublished", False, reason, message);
        } else if drained {
            set_condition(c, "RoutePublished", False, "Drained", "Drain ended");
        } else if healthy && is_true(c, "ModelReady") {
            set_condition(
                c,
                "PaymentGateReady",
                True,
                "Reconciled",
                "Shared x402 gateway is available",
            );
            set_condition(
                c,
                "RoutePublished",
                True,
                "Reconciled",
                &format!("Route published at {path}"),
            );
        } else {
            set_condition(
                c,
                "PaymentGateReady",
                False,
                "WaitingForUpstream",
                "Waiting for the upstream to become healthy",
            );
            set_condition(
                c,
                "RoutePublished",
                False,
                "WaitingForPaymentGate",
                "Waiting for the payment gate",
            );
        }

        // Registered: the agent id recorded for the offer's chain, if any.
        let registration = offer.spec.registration.as_ref().filter(|r| r.enabled);
        let recorded = match registration {
            Some(_) => self.recorded_agent(&offer.spec.payment.network).await?,
            None => None,
        };
        status.agent_id = recorded.as_ref().map(|(id, _, _)| id.clone());
        status.registration_tx_hash = recorded.as_ref().and_then(|(_, _, tx)| tx.clone());
        let c = &mut status.conditions;
        let network = &offer.spec.payment.network;
        if !is_true(c, "RoutePublished") && registration.is_some() {
            set_condition(
                c,
                "Registered",
                False,
                "WaitingForRoute",
                "Waiting for the route to be published",
            );
        } else if registration.is_none() {
            set_condition(
                c,
                "Registered",
                True,
                "Disabled",
                "ERC-8004 registration is disabled for this offer",
            );
        } else if let Some((agent_id, chain, _)) = &recorded {
            set_condition(
                c,
                "Registered",
                True,
                "Active",
                &format!("Registered as ERC-8004 agent {agent_id} on {chain}"),
            );
        } else {
            set_condition(
                c,
                "Registered",
                False,
                "AwaitingExternalRegistration",
                &format!(
                    "Awaiting ERC-8004 registration: run `obol sell register --chain {network}`; the offer already serves paid traffic"
                ),
            );
        }

        let ready = CONDITIONS.iter().all(|t| is_true(c, t));
        if drained {
            set_condition(
                c,
                "Ready",
                False,
                "Drained",
                "Offer drained; no longer sold",
            );
        } else if ready {
            set_condition(c, "Ready", True, "Reconciled", "Offer is ready");
        } else if !(c
            .iter()
            .any(|x| x.type_ == "Ready" && x.reason == "Stopped"))
        {
            set_condition(
                c,
                "Ready",
                False,
                "Reconciling",
                "Waiting for every condition",
            );
        }
        Ok(match (ready, requeue, draining) {
            (_, Some(delay), _) => Action::Requeue(delay),
            (_, _, Some(end)) if now < end => {
                Action::Requeue(Duration::from_secs((end - now).saturating_add(1)))
            }
            (true, _, _) => Action::Requeue(READY_REQUEUE),
            (false, _, _) => Action::Requeue(NOT_READY_REQUEUE),
        })
    }

    /// `(agentId, chain as recorded, txHash)` from the canonical identity for `network`.
    async fn recorded_agent(
        &self,
        network: &str,
    ) -> Result<Option<(String, String, Option<String>)>, StoreError> {
        let Some(identity) = self
            .store
            .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
            .await?
        else {
            return Ok(None);
        };
        let chains = (self.chains)();
        Ok(chains
            .registration_for(&identity.status, network)
            .map(|r| (r.agent_id.clone(), r.chain.clone(), r.tx_hash.clone())))
    }

    /// GET the health path, with the offer's upstream credential: 2xx is healthy. A Service
    /// upstream's Service is looked up first, then probed at its cluster DNS name; a secret
    /// the offer names is read again first.
    async fn probe(&self, offer: &ServiceOffer) -> Result<(), (&'static str, String)> {
        upstream::check_service(self.services.as_deref(), &self.upstreams, offer).await?;
        if let Some(auth) = &offer.spec.upstream.auth {
            self.secrets
                .refresh(&offer.metadata.namespace, &auth.secret_ref.name)
                .await;
        }
        let resolved = resolve_upstream(offer.clone(), &self.upstreams);
        probe_upstream(&self.http, self.secrets.as_ref(), &resolved).await
    }

    /// The oldest other offer claiming `path`, if it is not this one. Offers claim the same
    /// path when their effective paths (normalised: `//`, `.`, `..` and a trailing `/` do not
    /// count; case does) are equal; nested paths (`/x` and `/x/premium`) are no conflict, the
    /// gateway serves each request from the longest match.
    async fn path_owner(
        &self,
        offer: &ServiceOffer,
        path: &str,
    ) -> Result<Option<String>, StoreError> {
        self.oldest_other(offer, |o| o.effective_path() == path)
            .await
    }

    /// The offer's hostname and who else holds it: the stack itself (its public URL's host),
    /// or the oldest other offer claiming it.
    async fn hostname_owner(
        &self,
        offer: &ServiceOffer,
    ) -> Result<Option<(String, String)>, StoreError> {
        let Some(host) = offer.spec.hostname.as_deref() else {
            return Ok(None);
        };
        if (self.public_host)().as_deref() == Some(host) {
            return Ok(Some((
                host.to_owned(),
                "the stack itself (its public URL)".to_owned(),
            )));
        }
        Ok(self
            .oldest_other(offer, |o| o.spec.hostname.as_deref() == Some(host))
            .await?
            .map(|owner| (host.to_owned(), owner)))
    }

    /// `namespace/name` of the oldest offer that `claims` (offers created within the same
    /// second are ordered by namespace/name), unless that is `offer` itself.
    async fn oldest_other(
        &self,
        offer: &ServiceOffer,
        claims: impl Fn(&ServiceOffer) -> bool,
    ) -> Result<Option<String>, StoreError> {
        let claimants: Vec<ServiceOffer> = self
            .store
            .list::<ServiceOfferSpec>(None)
            .await?
            .into_iter()
            .filter(|o| !o.metadata.is_deleting() && claims(o))
            .collect();
        let oldest = claimants.iter().min_by_key(|o| o.metadata.age_key());
        Ok(oldest
            .filter(|o| {
                !(o.metadata.namespace == offer.metadata.namespace
                    && o.metadata.name == offer.metadata.name)
            })
            .map(|o| format!("{}/{}", o.metadata.namespace, o.metadata.name)))
    }
}
