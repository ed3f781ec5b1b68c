//! `obol doctor` on a cluster-backed stack (`stack init --backend kubernetes`): what the
//! cluster's resources and services say, in place of the daemon's checks.
//!
//! | check | ok when |
//! | --- | --- |
//! | `cluster` | the API server answers and the `obol.org` CRDs are installed |
//! | `operator` | the Lease `obol-operator` in the system namespace has a holder that renewed it within its duration |
//! | `offer <ns>/<name>` | the offer is Ready (else its first condition that is not True, with its reason and message) |
//! | `purchase <ns>/<name>` | the purchase is Ready (likewise) |
//! | `gateway` | `--gateway-url`'s `/healthz` answers 200 (skipped without one) |
//! | `buyer` | the buyer proxy's `/healthz` answers 200 (a warning otherwise: it is usually reached through a port-forward) |

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use obol_config::stack::KubernetesSetting;
use obol_control::purchase::PurchaseRequestSpec;
use obol_control::resource::{Condition, ConditionStatus};
use obol_control::{ServiceOfferSpec, StoreExt};

use super::{CHECK_TIMEOUT, Check, Job};
use crate::commands::cluster;

/// The checks of the cluster `setting` names.
pub(crate) async fn jobs(setting: &KubernetesSetting) -> Vec<Job> {
    const NAME: &str = "cluster";
    let crds = "install the CRDs: `kubectl apply -k deploy/kubernetes/base/crds`";
    let (store, server) = match tokio::time::timeout(CHECK_TIMEOUT, cluster::store(setting)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            return vec![Job::done(Check::fail(
                NAME,
                format!("{e:#}"),
                format!("check the kubeconfig and the cluster, and {crds}"),
            ))];
        }
        Err(_) => {
            return vec![Job::done(Check::fail(
                NAME,
                "the API server did not answer in time",
                "check the kubeconfig's server and the network to it",
            ))];
        }
    };
    let mut jobs = vec![Job::done(Check::ok(
        NAME,
        format!("the API server at {server} answers; the obol.org CRDs are installed"),
    ))];
    let leases: kube::Api<Lease> =
        kube::Api::namespaced(store.client().clone(), &setting.system_namespace);
    let namespace = setting.system_namespace.clone();
    jobs.push(Job::new("operator", "check the API server", async move {
        operator(&leases, &namespace).await
    }));
    match store.list::<ServiceOfferSpec>(None).await {
        Ok(offers) if offers.is_empty() => jobs.push(Job::done(Check::skip("offers", "none"))),
        Ok(offers) => jobs.extend(offers.iter().map(|o| {
            let name = format!("offer {}/{}", o.metadata.namespace, o.metadata.name);
            Job::done(readiness(&name, &o.status.conditions, "the operator"))
        })),
        Err(e) => jobs.push(Job::done(Check::fail("offers", e.to_string(), crds))),
    }
    match store.list::<PurchaseRequestSpec>(None).await {
        Ok(purchases) if purchases.is_empty() => {
            jobs.push(Job::done(Check::skip("purchases", "none")));
        }
        Ok(purchases) => jobs.extend(purchases.iter().map(|p| {
            let name = format!("purchase {}/{}", p.metadata.namespace, p.metadata.name);
            Job::done(readiness(&name, &p.status.conditions, "`obol buyer`"))
        })),
        Err(e) => jobs.push(Job::done(Check::fail("purchases", e.to_string(), crds))),
    }
    jobs.push(match &setting.gateway_url {
        Some(url) => {
            let url = url.trim_end_matches('/').to_owned();
            Job::new(
                "gateway",
                "check the gateway's Service and Ingress",
                async move {
                    match healthz(&url).await {
                        Ok(()) => Check::ok("gateway", format!("{url}/healthz answers")),
                        Err(why) => Check::fail(
                            "gateway",
                            format!("{url}/healthz: {why}"),
                            "check the obol-gateway pods and what routes to them",
                        ),
                    }
                },
            )
        }
        None => Job::done(Check::skip(
            "gateway",
            "no gateway URL (`stack init --backend kubernetes --gateway-url URL`)",
        )),
    });
    let buyer = format!("http://{}", cluster::buyer_address(setting));
    let system = setting.system_namespace.clone();
    jobs.push(Job::new("buyer", "check the buyer proxy", async move {
        match healthz(&buyer).await {
            Ok(()) => Check::ok("buyer", format!("the buyer proxy at {buyer} answers")),
            Err(why) => Check::warn(
                "buyer",
                format!("{buyer}/healthz: {why}"),
                format!("`kubectl -n {system} port-forward svc/obol-buyer 8402`, or set --buyer"),
            ),
        }
    }));
    jobs
}

/// Whether the operator leads: a holder, renewed within the lease's duration.
async fn operator(leases: &kube::Api<Lease>, namespace: &str) -> Check {
    const NAME: &str = "operator";
    let lease = obol_operator::DEFAULT_LEASE_NAME;
    let fix =
        format!("is `obol operator` running in {namespace}? (`kubectl -n {namespace} get pods`)");
    let spec = match leases.get_opt(lease).await {
        Ok(Some(found)) => found.spec.unwrap_or_default(),
        Ok(None) => return Check::fail(NAME, format!("no Lease {namespace}/{lease}"), fix),
        Err(e) => return Check::fail(NAME, format!("cannot read the Lease: {e}"), fix),
    };
    let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return Check::fail(
            NAME,
            format!("the Lease {namespace}/{lease} has no holder"),
            fix,
        );
    };
    let renewed = spec
        .renew_time
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|t| t.as_str().and_then(obol_control::reconcile::parse_rfc3339));
    let duration = spec
        .lease_duration_seconds
        .and_then(|d| u64::try_from(d).ok());
    match (renewed, duration) {
        (Some(renewed), Some(duration)) => {
            let age = obol_config::time::unix_now().saturating_sub(renewed);
            if age > duration {
                Check::fail(
                    NAME,
                    format!(
                        "{holder} held the Lease, but last renewed it {age} s ago (it lasts {duration} s)"
                    ),
                    fix,
                )
            } else {
                Check::ok(NAME, format!("{holder} leads (renewed {age} s ago)"))
            }
        }
        _ => Check::ok(NAME, format!("{holder} holds the Lease")),
    }
}

/// Ready, or the first condition that is not True.
fn readiness(name: &str, conditions: &[Condition], reconciler: &str) -> Check {
    if obol_control::resource::is_true(conditions, "Ready") {
        return Check::ok(name, "Ready");
    }
    match conditions
        .iter()
        .find(|c| c.status != ConditionStatus::True)
    {
        Some(c) => Check::fail(
            name,
            format!(
                "{} is {:?}: {} — {}",
                c.type_, c.status, c.reason, c.message
            ),
            "fix what the message names; the reconciler retries on its own",
        ),
        None => Check::warn(
            name,
            "not reconciled yet",
            format!("is {reconciler} running?"),
        ),
    }
}

/// `GET <base>/healthz`: 200, or why not.
async fn healthz(base: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(format!("{base}/healthz")).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(e) => Err(format!("not reachable ({})", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use obol_control::resource::set_condition;

    use super::*;

    #[test]
    fn an_unready_resource_names_its_first_failing_condition() {
        let mut conditions = Vec::new();
        assert_eq!(
            readiness("offer a/b", &conditions, "the operator").line(),
            "! offer a/b — not reconciled yet (fix: is the operator running?)"
        );
        set_condition(
            &mut conditions,
            "ModelReady",
            ConditionStatus::True,
            "Ready",
            "",
        );
        set_condition(
            &mut conditions,
            "UpstreamHealthy",
            ConditionStatus::False,
            "MissingService",
            "Service llm not found in namespace sellers",
        );
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::False,
            "NotReady",
            "",
        );
        assert_eq!(
            readiness("offer a/b", &conditions, "the operator").line(),
            "✗ offer a/b — UpstreamHealthy is False: MissingService — Service llm not found in \
             namespace sellers (fix: fix what the message names; the reconciler retries on its own)"
        );
        set_condition(
            &mut conditions,
            "UpstreamHealthy",
            ConditionStatus::True,
            "Healthy",
            "",
        );
        set_condition(
            &mut conditions,
            "Ready",
            ConditionStatus::True,
            "Reconciled",
            "",
        );
        assert_eq!(
            readiness("offer a/b", &conditions, "the operator").line(),
            "✓ offer a/b — Ready"
        );
    }
}
