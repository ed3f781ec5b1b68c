//! The running stack: `daemon` (its admin API answers), `listeners` (gateway, admin on
//! loopback, buyer proxy accept connections), `facilitator` (its `/supported` covers every
//! network an offer is sold on), `upstream <offer>` (probed as the reconciler probes it),
//! `public url` (the registration document fetched through it, from this process),
//! `agent-uri <chain>` (each recorded agent's on-chain agentURI is this stack's document),
//! `settlements` (payments whose settlement is pending) and `buyer pools` (authorizations
//! expiring within the hour).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obol_config::stack::{DaemonState, FacilitatorSetting};
use obol_config::text::printable;
use obol_config::{NetworksFile, Paths};
use obol_control::identity::{AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY};
use obol_control::registration::{ChainIds, agent_uri};
use obol_control::{ServiceOffer, ServiceOfferSpec};
use obol_daemon::doctor::{DoctorFacts, POOL_HORIZON_SECS};
use obol_daemon::{AdminClient, StackStatus};
use obol_x402::primitives::Address;

use super::local::Local;
use super::{CHECK_TIMEOUT, Check, Job};
use crate::commands::Context;

/// Each HTTP request's own limit, under the check's 5 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// The most of a registration document read.
const MAX_DOCUMENT: usize = 1 << 20;

const NOT_RUNNING: &str = "the stack is not running";

/// What the running daemon said (nothing when it does not run or answer).
#[derive(Debug, Default)]
pub(crate) struct Live {
    state: Option<DaemonState>,
    /// Why the daemon could not be asked.
    down: Option<(String, String)>,
    status: Option<StackStatus>,
    facts: Option<DoctorFacts>,
    offers: Vec<ServiceOffer>,
    identity: Option<AgentIdentity>,
    log: String,
}

impl Live {
    /// Asks the daemon (status, doctor facts, offers, identity), under [`CHECK_TIMEOUT`].
    pub(crate) async fn connect(ctx: &Context) -> Self {
        let log = ctx.paths.daemon_log_file().display().to_string();
        let (state, client) = match crate::commands::stack::admin(ctx) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Self {
                    down: Some((
                        NOT_RUNNING.to_owned(),
                        "start it: `obol stack up`".to_owned(),
                    )),
                    log,
                    ..Self::default()
                };
            }
            Err(e) => {
                return Self {
                    down: Some((
                        format!("{e:#}"),
                        "restart the stack: `obol stack down && obol stack up`".to_owned(),
                    )),
                    log,
                    ..Self::default()
                };
            }
        };
        let asked = tokio::time::timeout(CHECK_TIMEOUT, ask(&client)).await;
        match asked {
            Ok(Ok((status, facts, offers, identity))) => Self {
                state: Some(state),
                down: None,
                status: Some(status),
                facts: Some(facts),
                offers,
                identity,
                log,
            },
            Ok(Err(e)) => Self {
                down: Some((
                    format!("pid {} runs but its admin API fails: {e}", state.pid),
                    format!("see {log}; restart: `obol stack down && obol stack up`"),
                )),
                state: Some(state),
                log,
                ..Self::default()
            },
            Err(_) => Self {
                down: Some((
                    format!(
                        "pid {} runs but its admin API did not answer within {} s",
                        state.pid,
                        CHECK_TIMEOUT.as_secs()
                    ),
                    format!("see {log}; restart: `obol stack down && obol stack up`"),
                )),
                state: Some(state),
                log,
                ..Self::default()
            },
        }
    }

    /// `daemon`.
    pub(crate) fn daemon_check(&self) -> Check {
        if let Some((why, fix)) = &self.down {
            return Check::fail("daemon", why.clone(), fix.clone());
        }
        match (&self.state, &self.status) {
            (Some(state), Some(status)) => Check::ok(
                "daemon",
                format!(
                    "stack {} running (pid {}, since {}), routes served: {}",
                    status.stack_id, state.pid, state.started_at, status.routes
                ),
            ),
            _ => Check::fail("daemon", NOT_RUNNING, "start it: `obol stack up`"),
        }
    }

    /// The settling keys the facilitator names, or why they are unknown.
    pub(crate) fn settlers(&self) -> Result<Vec<Address>, String> {
        let facts = self.facts.as_ref().ok_or(NOT_RUNNING)?;
        let supported = facts
            .supported
            .as_ref()
            .map_err(|e| format!("the facilitator's /supported failed: {}", printable(e, 200)))?;
        Ok(supported
            .signers
            .get("eip155:*")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect())
    }

    /// `listeners`: each bound address accepts a connection; the admin API is on loopback.
    pub(crate) fn listeners(&self) -> Vec<Job> {
        const NAME: &str = "listeners";
        let Some(state) = self.state.clone().filter(|_| self.down.is_none()) else {
            return vec![Job::done(Check::skip(NAME, NOT_RUNNING))];
        };
        let fix = format!(
            "see {}; restart the stack: `obol stack down && obol stack up`",
            self.log
        );
        vec![Job::new(NAME, fix.clone(), async move {
            let mut closed = Vec::new();
            for (what, address) in [
                ("gateway", &state.gateway),
                ("admin", &state.admin),
                ("buyer proxy", &state.buyer),
            ] {
                if tokio::net::TcpStream::connect(address.as_str())
                    .await
                    .is_err()
                {
                    closed.push(format!("the {what} at {address} refuses connections"));
                }
            }
            let admin_loopback = state
                .admin
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !admin_loopback {
                closed.push(format!(
                    "the admin API listens on {}, not loopback",
                    state.admin
                ));
            }
            if closed.is_empty() {
                Check::ok(
                    NAME,
                    format!(
                        "gateway {}, admin {} (loopback), buyer proxy {}",
                        state.gateway_url(),
                        state.admin,
                        state.buyer
                    ),
                )
            } else {
                Check::fail(NAME, closed.join("; "), fix)
            }
        })]
    }

    /// The checks of what the running stack serves.
    pub(crate) fn jobs(&self, ctx: &Context, local: &Local) -> Vec<Job> {
        let names = [
            "facilitator",
            "upstream",
            "public url",
            "agent-uri",
            "settlements",
            "buyer pools",
        ];
        let (Some(status), Some(facts)) = (&self.status, &self.facts) else {
            return names
                .iter()
                .map(|name| Job::done(Check::skip(name, NOT_RUNNING)))
                .collect();
        };
        let networks = local.networks.clone().unwrap_or_default();
        let chains = ChainIds::from_networks(&networks);
        let mut jobs = vec![Job::done(facilitator(
            facts,
            &self.offers,
            &chains,
            local.settings.as_ref().and_then(|s| s.facilitator.as_ref()),
        ))];
        jobs.extend(upstreams(&ctx.paths, &self.offers));
        jobs.push(public_url(status));
        jobs.extend(agent_uris(
            status,
            self.identity.as_ref(),
            &networks,
            &chains,
        ));
        jobs.push(Job::done(settlements(facts)));
        jobs.push(Job::done(pools(facts)));
        jobs
    }
}

type Asked = (
    StackStatus,
    DoctorFacts,
    Vec<ServiceOffer>,
    Option<AgentIdentity>,
);

async fn ask(client: &AdminClient) -> Result<Asked, obol_daemon::AdminError> {
    let (status, facts, offers, identity) = tokio::join!(
        client.status(),
        client.doctor(),
        client.list::<ServiceOfferSpec>(),
        client.get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1),
    );
    let identity = match identity {
        Ok(identity) => Some(identity),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    Ok((status?, facts?, offers?, identity))
}

/// The chain id of a network as `/supported` names it (CAIP-2, or a v1 name).
fn supported_chain(network: &str) -> Option<u64> {
    obol_x402::network::evm_chain_id(network).ok().or_else(|| {
        obol_x402::network::resolve(network)
            .ok()?
            .evm_chain_id()
            .ok()
    })
}

/// `facilitator`: every (scheme, chain) an offer is sold on is in `/supported`.
fn facilitator(
    facts: &DoctorFacts,
    offers: &[ServiceOffer],
    chains: &ChainIds,
    setting: Option<&FacilitatorSetting>,
) -> Check {
    const NAME: &str = "facilitator";
    let supported = match &facts.supported {
        Ok(supported) => supported,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("its /supported failed: {}", printable(e, 200)),
                match setting {
                    Some(FacilitatorSetting::Url(_)) | None => {
                        "check that the facilitator runs and stack.json's facilitator URL is right"
                    }
                    Some(FacilitatorSetting::Embedded { .. }) => {
                        "restart the stack: `obol stack down && obol stack up`"
                    }
                },
            );
        }
    };
    let served: BTreeSet<(String, u64)> = supported
        .kinds
        .iter()
        .filter_map(|k| Some((k.scheme.clone(), supported_chain(&k.network)?)))
        .collect();
    let mut missing = BTreeSet::new();
    let mut sold = BTreeSet::new();
    for offer in offers {
        let payments = std::iter::once(&offer.spec.payment).chain(&offer.spec.payments);
        for payment in payments {
            let chain = chains.chain_id(&payment.network);
            let label = format!("{} on {}", payment.scheme, payment.network);
            match chain {
                Some(id) if served.contains(&(payment.scheme.clone(), id)) => {
                    sold.insert(label);
                }
                _ => {
                    missing.insert(format!(
                        "{label} ({}/{})",
                        offer.metadata.namespace, offer.metadata.name
                    ));
                }
            }
        }
    }
    let networks: BTreeSet<String> = served
        .iter()
        .map(|(_, id)| format!("eip155:{id}"))
        .collect();
    let networks = networks.into_iter().collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        let fix = match setting {
            Some(FacilitatorSetting::Embedded { .. }) => {
                "add the chain to stack.json's facilitator.embedded.chains (with an --allow-writes endpoint) and restart the stack, or sell on a chain it settles"
            }
            _ => {
                "use a facilitator that settles that network (stack.json \"facilitator\": {\"url\": …}), or sell on one it supports"
            }
        };
        return Check::fail(
            NAME,
            format!(
                "does not settle {} (it serves {networks})",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ),
            fix,
        );
    }
    if sold.is_empty() {
        return Check::ok(NAME, format!("serves {networks}; no offers yet"));
    }
    Check::ok(
        NAME,
        format!(
            "settles what the offers sell: {}",
            sold.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// `upstream <namespace/name>` for every offer, probed as the reconciler probes it.
fn upstreams(paths: &Paths, offers: &[ServiceOffer]) -> Vec<Job> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let secrets: Arc<obol_control::secrets::FileSecrets> =
        Arc::new(obol_control::secrets::FileSecrets::new(paths.secrets_dir()));
    offers
        .iter()
        .map(|offer| {
            let id = format!("{}/{}", offer.metadata.namespace, offer.metadata.name);
            let name = format!("upstream {id}");
            let upstream = offer
                .spec
                .upstream
                .url
                .as_deref()
                .map_or_else(|| "(none)".to_owned(), |u| printable(u, 200));
            let fix = format!(
                "start the upstream at {upstream}, or point the offer at one that answers: `obol sell http {} --upstream URL`",
                offer.metadata.name
            );
            let (offer, http, secrets) = (offer.clone(), http.clone(), secrets.clone());
            Job::new(name.clone(), fix.clone(), async move {
                let started = Instant::now();
                match obol_control::reconcile::probe_upstream(&http, secrets.as_ref(), &offer)
                    .await
                {
                    Ok(()) => Check::ok(
                        &name,
                        format!(
                            "{upstream} healthy ({} ms)",
                            started.elapsed().as_millis()
                        ),
                    ),
                    Err((reason, message)) => Check::fail(
                        &name,
                        format!("{reason}: {}", printable(&message, 200)),
                        fix,
                    ),
                }
            })
        })
        .collect()
}

/// GETs `url` and reads at most [`MAX_DOCUMENT`] bytes of the body: the status and body.
async fn get(http: &reqwest::Client, url: &str) -> Result<(u16, Vec<u8>), String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| obol_config::errors::chain(&e))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| obol_config::errors::chain(&e))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("the answer is over {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// `public url`: the registration document, fetched through the public URL from this process.
fn public_url(status: &StackStatus) -> Job {
    const NAME: &str = "public url";
    if status.public_url_is_default {
        return Job::done(Check::warn(
            NAME,
            format!(
                "none set: {} is only this machine's, buyers elsewhere cannot reach the stack",
                status.public_url
            ),
            "set one: `obol stack up --public-url https://…` (a reverse proxy or tunnel in front of the gateway)",
        ));
    }
    let url = agent_uri(&status.public_url);
    let fix = format!(
        "make {} reach the gateway at {} (DNS, firewall, reverse proxy or tunnel)",
        status.public_url, status.gateway
    );
    Job::new(NAME, fix.clone(), async move {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        let started = Instant::now();
        match get(&http, &url).await {
            Ok((200, body)) => match obol_erc8004::RegistrationDocument::parse(&body) {
                Ok(_) => Check::ok(
                    NAME,
                    format!(
                        "{url} answers with the registration document ({} ms)",
                        started.elapsed().as_millis()
                    ),
                ),
                Err(e) => Check::fail(
                    NAME,
                    format!(
                        "{url} answers, but not with a registration document: {}",
                        printable(&e.to_string(), 200)
                    ),
                    fix,
                ),
            },
            Ok((code, _)) => Check::fail(NAME, format!("{url} answers HTTP {code}"), fix),
            Err(e) => Check::fail(NAME, format!("{url}: {}", printable(&e, 200)), fix),
        }
    })
}

/// `agent-uri <chain>` for each recorded agent id: its on-chain agentURI is this stack's
/// registration document.
fn agent_uris(
    status: &StackStatus,
    identity: Option<&AgentIdentity>,
    networks: &NetworksFile,
    chains: &ChainIds,
) -> Vec<Job> {
    let recorded = identity
        .map(|i| i.status.registrations.clone())
        .unwrap_or_default();
    if recorded.is_empty() {
        return vec![Job::done(Check::skip(
            "agent-uri",
            "no ERC-8004 agent id recorded (`obol sell register`)",
        ))];
    }
    let ours = (!status.public_url_is_default).then(|| agent_uri(&status.public_url));
    recorded
        .into_iter()
        .map(|registration| {
            let chain = registration.chain.clone();
            let name = format!("agent-uri {chain}");
            let fix = format!("point it here: `obol sell register --chain {chain}`");
            let endpoints = networks.get(&chain).cloned();
            let registry = chains.registry(&chain);
            let ours = ours.clone();
            Job::new(name.clone(), fix.clone(), async move {
                let agent = printable(&registration.agent_id, 80);
                let Some(ours) = ours else {
                    return Check::warn(
                        &name,
                        format!("agent {agent}: no public URL to compare its agentURI with"),
                        "set a public URL: `obol stack up --public-url https://…`",
                    );
                };
                let Ok(id) = obol_erc8004::U256::from_str_radix(registration.agent_id.trim(), 10)
                else {
                    return Check::fail(
                        &name,
                        format!("the recorded agent id {agent} is not a number"),
                        format!("forget it: `obol sell identity forget {chain}`"),
                    );
                };
                let (Some(endpoints), Some(registry)) = (endpoints, registry) else {
                    return Check::skip(
                        &name,
                        format!(
                            "agent {agent}: no endpoint or Identity Registry known for {chain}"
                        ),
                    );
                };
                let uri = async {
                    let client =
                        obol_chain::ChainClient::with_timeout(&chain, &endpoints, REQUEST_TIMEOUT)
                            .map_err(|e| e.to_string())?;
                    obol_erc8004::IdentityClient::new(client, registry)
                        .map_err(|e| e.to_string())?
                        .agent_uri(id)
                        .await
                        .map_err(|e| e.to_string())
                };
                match uri.await {
                    Ok(uri) if uri.trim() == ours => {
                        Check::ok(&name, format!("agent {agent}'s agentURI is {ours}"))
                    }
                    Ok(uri) => Check::fail(
                        &name,
                        format!(
                            "agent {agent}'s agentURI is {:?}, not {ours}",
                            printable(&uri, 200)
                        ),
                        fix,
                    ),
                    Err(e) => Check::skip(
                        &name,
                        format!(
                            "agent {agent}: cannot read its agentURI: {}",
                            printable(&e, 200)
                        ),
                    ),
                }
            })
        })
        .collect()
}

/// How far `at` is from `now`, in minutes or hours.
fn until(at: u64, now: u64) -> String {
    let secs = at.saturating_sub(now);
    if secs >= 7200 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} min", secs / 60)
    }
}

/// `settlements`: payments served whose settlement is pending or unknown.
fn settlements(facts: &DoctorFacts) -> Check {
    const NAME: &str = "settlements";
    let pending = match &facts.settlements {
        Ok(pending) => pending,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("the payment guard cannot say: {}", printable(e, 200)),
                "check the payment store (stack.json paymentStore or OBOL_PAYMENT_STORE)",
            );
        }
    };
    let fix = "a pending payment settles when its buyer retries; check the facilitator and its gas (above) before the authorizations expire";
    match (pending.unsettled, pending.expired) {
        (0, 0) => Check::ok(NAME, "no payment awaits settlement"),
        (unsettled, 0) => Check::warn(
            NAME,
            format!(
                "{unsettled} payment{} await{} settlement (the first expires in {})",
                if unsettled == 1 { "" } else { "s" },
                if unsettled == 1 { "s" } else { "" },
                pending
                    .next_expiry
                    .map_or_else(|| "?".to_owned(), |at| until(at, facts.now))
            ),
            fix,
        ),
        (unsettled, expired) => Check::warn(
            NAME,
            format!(
                "{expired} payment{} expired unsettled (served, never paid); {unsettled} still pending",
                if expired == 1 { "" } else { "s" }
            ),
            fix,
        ),
    }
}

/// `buyer pools`: authorizations expiring within the hour.
fn pools(facts: &DoctorFacts) -> Check {
    const NAME: &str = "buyer pools";
    let pools = match &facts.pools {
        Ok(pools) => pools,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("the pool cannot say: {}", printable(e, 200)),
                "see the daemon log",
            );
        }
    };
    if pools.is_empty() {
        return Check::ok(NAME, "no authorizations held");
    }
    let expiring: Vec<String> = pools
        .iter()
        .filter(|p| p.expiring > 0)
        .map(|p| {
            format!(
                "{}: {} of {} expire within {} min (the first in {})",
                printable(&p.pool, 80),
                p.expiring,
                p.available,
                POOL_HORIZON_SECS / 60,
                p.next_expiry
                    .map_or_else(|| "?".to_owned(), |at| until(at, facts.now))
            )
        })
        .collect();
    if expiring.is_empty() {
        let left: u64 = pools.iter().map(|p| p.available).sum();
        return Check::ok(
            NAME,
            format!(
                "{left} authorizations in {} pools, none expiring within the hour",
                pools.len()
            ),
        );
    }
    Check::warn(
        NAME,
        expiring.join("; "),
        "spend them or buy a fresh pool (`obol buy inference … --count N`); autoRefill renews pools as they run low",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use obol_control::offer::OfferType;
    use obol_control::{Object, ServiceOfferSpec};
    use obol_daemon::doctor::PoolFacts;
    use obol_gateway::guard::Pending;
    use obol_x402::wire::{SupportedKind, SupportedResponse};

    use super::super::Status;
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn facts(kinds: &[(&str, &str)], pending: Pending, pools: Vec<PoolFacts>) -> DoctorFacts {
        DoctorFacts {
            now: NOW,
            supported: Ok(SupportedResponse {
                kinds: kinds
                    .iter()
                    .map(|(scheme, network)| SupportedKind {
                        x402_version: 2,
                        scheme: (*scheme).to_owned(),
                        network: (*network).to_owned(),
                        extra: None,
                    })
                    .collect(),
                ..SupportedResponse::default()
            }),
            settlements: Ok(pending),
            pools: Ok(pools),
        }
    }

    fn offer(name: &str, network: &str) -> ServiceOffer {
        Object::new(
            "default",
            name,
            ServiceOfferSpec::per_request(
                OfferType::Http,
                "http://127.0.0.1:9",
                network,
                "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                "0.001",
            ),
        )
    }

    #[test]
    fn every_offered_network_must_be_settled_by_the_facilitator() {
        let chains = ChainIds::builtin().with("devnet", 84_532);
        let served = facts(&[("exact", "eip155:84532")], Pending::default(), Vec::new());
        let sold = [offer("a", "base-sepolia"), offer("b", "devnet")];
        let ok = facilitator(&served, &sold, &chains, None);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert_eq!(
            ok.detail,
            "settles what the offers sell: exact on base-sepolia, exact on devnet"
        );
        let missing = facilitator(&served, &[offer("c", "base")], &chains, None);
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(
            missing.detail,
            "does not settle exact on base (default/c) (it serves eip155:84532)"
        );
        let mut down = served;
        down.supported = Err("connection refused".into());
        assert_eq!(facilitator(&down, &[], &chains, None).status, Status::Fail);
    }

    #[test]
    fn pending_settlements_and_expiring_pools_warn() {
        let quiet = facts(&[], Pending::default(), Vec::new());
        assert_eq!(settlements(&quiet).status, Status::Ok);
        assert_eq!(pools(&quiet).status, Status::Ok);
        let pending = Pending {
            unsettled: 2,
            expired: 0,
            next_expiry: Some(NOW + 240),
        };
        let pool = PoolFacts {
            pool: "paid-llm".into(),
            available: 5,
            expiring: 3,
            next_expiry: Some(NOW + 600),
        };
        let busy = facts(&[], pending, vec![pool]);
        let warned = settlements(&busy);
        assert_eq!(warned.status, Status::Warn);
        assert_eq!(
            warned.detail,
            "2 payments await settlement (the first expires in 4 min)"
        );
        let warned = pools(&busy);
        assert_eq!(warned.status, Status::Warn);
        assert_eq!(
            warned.detail,
            "paid-llm: 3 of 5 expire within 60 min (the first in 10 min)"
        );
        let lost = facts(
            &[],
            Pending {
                unsettled: 0,
                expired: 1,
                next_expiry: None,
            },
            Vec::new(),
        );
        assert_eq!(
            settlements(&lost).detail,
            "1 payment expired unsettled (served, never paid); 0 still pending"
        );
    }
}
