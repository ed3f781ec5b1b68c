//! `obol doctor`: checks the stack and explains what is wrong, each failed check with a
//! one-line fix.
//!
//! What the files say is read here (settings, permissions, the TLS certificate); what only
//! the running daemon knows comes from its admin API (`/v1/status`, `/v1/offers`,
//! `/v1/identities`, and `/v1/doctor`: the facilitator's `/supported`, pending settlements,
//! buyer pool expiries); the chains, the upstreams and the public URL are asked directly, from
//! this process (so the public URL is fetched from outside the daemon).
//!
//! Every check runs at once, each under [`CHECK_TIMEOUT`]: a dead RPC endpoint or upstream
//! costs its own check, never the command (a check cut short fails as "timed out" and is
//! named under `timedOut`).
//!
//! Upstreams are probed live with the reconciler's own probe rather than read from the
//! `UpstreamHealthy` condition, which a Ready offer refreshes only every minute.
//!
//! | module | checks |
//! | --- | --- |
//! | `local` | `settings`, `permissions`, `tls` |
//! | `chain` | `rpc <chain>`, `clock <chain>`, `writes <chain>`, `gas <chain>` |
//! | `live` | `daemon`, `listeners`, `facilitator`, `upstream <offer>`, `public url`, `agent-uri <chain>`, `settlements`, `buyer pools` |
//! | `cluster` | on a cluster-backed stack, in place of `live` and `chain`: `cluster`, `operator`, `offer <ns>/<name>`, `purchase <ns>/<name>`, `gateway`, `buyer` |

mod chain;
mod cluster;
mod live;
mod local;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::Context;
use crate::output;

/// The longest any one check may take.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One check: what was looked at, what was found, and how to fix it when it is not ok.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    name: String,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            status,
            detail: detail.into(),
            fix,
        }
    }

    pub(crate) fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, None)
    }

    pub(crate) fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail, Some(fix.into()))
    }

    pub(crate) fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail, Some(fix.into()))
    }

    pub(crate) fn skip(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, None)
    }

    /// The human line: `✓ name — detail`, `! name — detail (fix: …)`, `✗ …`, `- …`.
    fn line(&self) -> String {
        let mark = match self.status {
            Status::Ok => '✓',
            Status::Warn => '!',
            Status::Fail => '✗',
            Status::Skip => '-',
        };
        match &self.fix {
            Some(fix) => format!("{mark} {} — {} (fix: {fix})", self.name, self.detail),
            None => format!("{mark} {} — {}", self.name, self.detail),
        }
    }
}

/// A check to run: its name and what to say when it times out, and the work.
pub(crate) struct Job {
    name: String,
    timeout_fix: String,
    work: Pin<Box<dyn Future<Output = Check> + Send>>,
}

impl Job {
    pub(crate) fn new(
        name: impl Into<String>,
        timeout_fix: impl Into<String>,
        work: impl Future<Output = Check> + Send + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            timeout_fix: timeout_fix.into(),
            work: Box::pin(work),
        }
    }

    /// A job whose outcome is already known.
    pub(crate) fn done(check: Check) -> Self {
        Self::new(check.name.clone(), String::new(), async move { check })
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

/// Runs every job at once, each under `timeout`; the checks in the jobs' order, and the names
/// of those that timed out.
async fn run_all(jobs: Vec<Job>, timeout: Duration) -> (Vec<Check>, Vec<String>) {
    let mut set = tokio::task::JoinSet::new();
    let mut named = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.into_iter().enumerate() {
        named.push((job.name, job.timeout_fix));
        let work = job.work;
        set.spawn(async move { (index, tokio::time::timeout(timeout, work).await.ok()) });
    }
    let mut found: Vec<Option<Check>> = vec![None; named.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((index, Some(check))) = joined
            && let Some(slot) = found.get_mut(index)
        {
            *slot = Some(check);
        }
    }
    let mut timed_out = Vec::new();
    let checks = found
        .into_iter()
        .zip(named)
        .map(|(check, (name, fix))| {
            check.unwrap_or_else(|| {
                timed_out.push(name.clone());
                Check::fail(
                    &name,
                    format!("timed out: no answer within {} s", timeout.as_secs_f64()),
                    fix,
                )
            })
        })
        .collect();
    (checks, timed_out)
}

/// `obol doctor`.
pub(crate) async fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let jobs = plan(ctx).await;
    let (checks, timed_out) = run_all(jobs, CHECK_TIMEOUT).await;
    let elapsed = started.elapsed();
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let failed = count(Status::Fail);
    if ctx.json {
        output::json(&json!({
            "checks": checks,
            "failed": failed,
            "timedOut": timed_out,
            "elapsedMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }))?;
    } else {
        for check in &checks {
            println!("{}", check.line());
        }
        println!(
            "{} checks: {} ok, {} warnings, {failed} failed, {} skipped ({} ms)",
            checks.len(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Skip),
            elapsed.as_millis()
        );
        if !timed_out.is_empty() {
            println!("timed out: {}", timed_out.join(", "));
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every check, in the order they are shown: the files, the daemon, the chains, then what the
/// running stack serves.
async fn plan(ctx: &Context) -> Vec<Job> {
    let mut jobs = Vec::new();
    let local = local::Local::load(&ctx.paths);
    jobs.push(Job::done(local.settings_check()));
    jobs.push(Job::done(local::permissions(
        &ctx.paths,
        local.settings.as_ref(),
    )));
    jobs.push(Job::done(local::tls(local.settings.as_ref())));
    if let Some(setting) = local.settings.as_ref().and_then(|s| s.kubernetes.as_ref()) {
        jobs.extend(cluster::jobs(setting).await);
        return jobs;
    }
    let live = live::Live::connect(ctx).await;
    jobs.push(Job::done(live.daemon_check()));
    jobs.extend(live.listeners());
    jobs.extend(chain::jobs(&local, &live));
    jobs.extend(live.jobs(ctx, &local));
    jobs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn checks_run_at_once_and_a_slow_one_is_named_as_timed_out() {
        let slow = Job::new("rpc slow", "check the endpoint", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Check::ok("rpc slow", "never")
        });
        let quick = Job::new("settings", "", async { Check::ok("settings", "parse") });
        let started = Instant::now();
        let (checks, timed_out) = run_all(
            vec![slow, quick, Job::done(Check::skip("tls", "none"))],
            Duration::from_millis(200),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(timed_out, ["rpc slow"]);
        assert_eq!(
            checks,
            [
                Check::fail(
                    "rpc slow",
                    "timed out: no answer within 0.2 s",
                    "check the endpoint"
                ),
                Check::ok("settings", "parse"),
                Check::skip("tls", "none"),
            ]
        );
        assert_eq!(
            checks[0].line(),
            "✗ rpc slow — timed out: no answer within 0.2 s (fix: check the endpoint)"
        );
        assert_eq!(checks[1].line(), "✓ settings — parse");
    }
}
