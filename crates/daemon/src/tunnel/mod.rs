//! The tunnel: a `cloudflared` child the daemon supervises, so it lives with the stack.
//!
//! - Quick mode: `cloudflared tunnel --no-autoupdate --url <gateway>` (an HTTPS gateway adds
//!   `--no-tls-verify`: the origin is this machine's own listener); the URL Cloudflare assigns
//!   is read from its output ([`output::quick_url`]), a new one after each restart.
//! - Named mode: `cloudflared tunnel --no-autoupdate run --token-file F --url <gateway>`; the
//!   token stays in its file, never on a command line; the public URL is `https://<hostname>`.
//!
//! Only the gateway's listener is tunnelled: the admin API and metrics stay on loopback. A
//! child that exits is restarted after a delay doubling from 1 s to 60 s ([`Backoff`]), back to
//! 1 s once it ran a minute. Its output goes, sanitised, to `<state>/tunnel.log` (rotated).
//! Each URL it gets is published ([`publish::Publisher`]).

mod api;
mod output;
pub(crate) mod publish;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obol_config::Paths;
use obol_config::tunnel::{TunnelMode, TunnelSetting, locate_cloudflared};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use api::router;
pub use publish::AgentUriUpdate;

use self::output::TunnelLog;
use self::publish::Publisher;

/// The first restart delay.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long restarts after [`MIN_BACKOFF`] again.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// Restart delays: 1 s doubling to 60 s, reset after a minute up.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: MIN_BACKOFF }
    }

    /// The delay before the next start, the child having run `ran`.
    fn after(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next = MIN_BACKOFF;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}

/// Where the tunnel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TunnelState {
    /// No tunnel.
    #[default]
    Stopped,
    /// `cloudflared` runs (a quick tunnel's URL may not be known yet).
    Running,
    /// `cloudflared` exited or could not start; it starts again after the backoff.
    Restarting,
}

/// The tunnel as `GET /v1/tunnel` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStatus {
    /// Stopped, running or restarting.
    pub state: TunnelState,
    /// Quick or named, while a tunnel is set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TunnelMode>,
    /// The tunnel's public URL, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The `cloudflared` child's pid while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// Why it last stopped or failed to start (its output sanitised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What `cloudflared` forwards to: the gateway's listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The stack's public URL now.
    pub public_url: String,
    /// True when the tunnel's URL is the stack's public URL.
    pub publishing: bool,
    /// Why it is not (the operator pinned the public URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What happened to the recorded agents' URIs after the last change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_uris: Vec<AgentUriUpdate>,
    /// The log file.
    pub log_file: PathBuf,
}

/// Why a tunnel could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The setting, or where `cloudflared` is.
    #[error(transparent)]
    Config(#[from] obol_config::ConfigError),
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    paths: Paths,
    /// `http(s)://<gateway address>` as `cloudflared` reaches it.
    origin: String,
    tls: bool,
    publisher: Publisher,
    status: Mutex<TunnelStatus>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// The daemon's tunnel (cheap to clone).
#[derive(Clone)]
pub(crate) struct Tunnels {
    inner: Arc<Inner>,
}

/// The address `cloudflared` dials for a gateway bound at `bound`: the unspecified address
/// becomes loopback.
pub(crate) fn origin_of(bound: std::net::SocketAddr, tls: bool) -> String {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, bound.port()))
}

impl Tunnels {
    pub(crate) fn new(paths: Paths, origin: String, tls: bool, publisher: Publisher) -> Self {
        let status = TunnelStatus {
            public_url: publisher.current(),
            log_file: paths.tunnel_log_file(),
            ..TunnelStatus::default()
        };
        Self {
            inner: Arc::new(Inner {
                paths,
                origin,
                tls,
                publisher,
                status: Mutex::new(status),
                running: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The status now.
    pub(crate) fn status(&self) -> TunnelStatus {
        let mut status = self
            .inner
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        status.public_url = self.inner.publisher.current();
        status.agent_uris = self.inner.publisher.agent_updates();
        status
    }

    fn update(&self, change: impl FnOnce(&mut TunnelStatus)) {
        if let Ok(mut status) = self.inner.status.lock() {
            change(&mut status);
        }
    }

    /// Starts the tunnel `setting` asks for (replacing a running one); fails when `cloudflared`
    /// cannot be found.
    pub(crate) async fn start(&self, setting: TunnelSetting) -> Result<TunnelStatus, TunnelError> {
        setting.validate()?;
        let program = locate_cloudflared(|name| std::env::var_os(name))?;
        self.stop_child().await;
        let args = self.args(&setting);
        let note = self.inner.publisher.pinned();
        self.update(|status| {
            *status = TunnelStatus {
                state: TunnelState::Running,
                mode: Some(setting.mode),
                origin: Some(self.inner.origin.clone()),
                note,
                log_file: self.inner.paths.tunnel_log_file(),
                ..TunnelStatus::default()
            };
        });
        let (stop, stop_rx) = watch::channel(false);
        let launch = Launch {
            program,
            args,
            fixed_url: setting.fixed_url(),
        };
        let task = tokio::spawn(supervise(self.clone(), launch, stop_rx));
        *self.inner.running.lock().await = Some(Running { stop, task });
        Ok(self.status())
    }

    /// Stops the tunnel and takes its URL back from publication.
    pub(crate) async fn stop(&self) -> TunnelStatus {
        self.stop_child().await;
        self.inner.publisher.withdraw();
        self.update(|status| {
            *status = TunnelStatus {
                log_file: status.log_file.clone(),
                ..TunnelStatus::default()
            };
        });
        self.status()
    }

    /// Stops the child (when the daemon stops: nothing is published any more).
    pub(crate) async fn stop_child(&self) {
        let running = self.inner.running.lock().await.take();
        if let Some(running) = running {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }

    fn args(&self, setting: &TunnelSetting) -> Vec<String> {
        let mut args = vec!["tunnel".to_owned(), "--no-autoupdate".to_owned()];
        if setting.mode == TunnelMode::Named {
            args.push("run".to_owned());
            if let Some(file) = &setting.token_file {
                args.push("--token-file".to_owned());
                args.push(file.display().to_string());
            }
        }
        args.push("--url".to_owned());
        args.push(self.inner.origin.clone());
        if self.inner.tls {
            args.push("--no-tls-verify".to_owned());
        }
        args
    }
}

/// What to run.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    /// A named tunnel's URL (known before it starts).
    fixed_url: Option<String>,
}

/// Runs `cloudflared` until `stop`, restarting it with backoff.
async fn supervise(tunnels: Tunnels, launch: Launch, mut stop: watch::Receiver<bool>) {
    let log = TunnelLog::new(&tunnels.inner.paths.tunnel_log_file());
    let mut backoff = Backoff::new();
    loop {
        let started = Instant::now();
        let exit = run_once(&tunnels, &launch, &log, &mut stop).await;
        let Some(why) = exit else {
            log.append("obol: cloudflared stopped");
            return;
        };
        let delay = backoff.after(started.elapsed());
        log.append(&format!("obol: {why}; restarting in {} s", delay.as_secs()));
        tracing::warn!(error = %why, delay_secs = delay.as_secs(), "tunnel: cloudflared stopped; restarting");
        tunnels.update(|status| {
            status.state = TunnelState::Restarting;
            status.pid = None;
            status.last_error = Some(why);
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
        tunnels.update(|status| status.restarts = status.restarts.saturating_add(1));
    }
}

/// Resolves once a stop is asked for.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One run of the child: `None` when asked to stop, else why it ended.
async fn run_once(
    tunnels: &Tunnels,
    launch: &Launch,
    log: &TunnelLog,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut child = match tokio::process::Command::new(&launch.program)
        .args(&launch.args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Some(format!("cannot start {}: {e}", launch.program.display())),
    };
    let pid = child.id();
    log.append(&format!(
        "obol: started {} (pid {})",
        launch.program.display(),
        pid.unwrap_or_default()
    ));
    tunnels.update(|status| {
        status.state = TunnelState::Running;
        status.pid = pid;
    });
    if let Some(url) = &launch.fixed_url {
        tunnels.got_url(url);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(output::forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(output::forward_lines(err, tx));
    }
    let mut last_line: Option<String> = None;
    let mut lines_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some(line) => {
                    tunnels.line(&line, launch.fixed_url.is_none(), log);
                    last_line = Some(line);
                }
                None => lines_open = false,
            },
            status = child.wait() => break status,
            () = stopped(stop) => {
                let _ = child.kill().await;
                return None;
            }
        }
    };
    // What it wrote just before exiting.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        tunnels.line(&line, launch.fixed_url.is_none(), log);
        last_line = Some(line);
    }
    let status = match status {
        Ok(status) => format!("cloudflared exited ({status})"),
        Err(e) => format!("cloudflared could not be waited for: {e}"),
    };
    Some(match last_line {
        Some(line) => format!(
            "{status}; its last output: {}",
            obol_config::text::printable(line.trim(), 300)
        ),
        None => status,
    })
}

impl Tunnels {
    /// A line of output: logged, and searched for the quick tunnel's URL.
    fn line(&self, line: &str, quick: bool, log: &TunnelLog) {
        log.append(line);
        if quick && let Some(url) = output::quick_url(line) {
            self.got_url(&url);
        }
    }

    /// The tunnel has `url` (checked): recorded and published.
    fn got_url(&self, url: &str) {
        let changed = self
            .inner
            .status
            .lock()
            .is_ok_and(|s| s.url.as_deref() != Some(url));
        if !changed {
            return;
        }
        tracing::info!(url, "tunnel: cloudflared has a URL");
        let publishing = self.inner.publisher.publish(url);
        self.update(|status| {
            status.url = Some(url.to_owned());
            status.publishing = publishing;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_minute_up() {
        let mut backoff = Backoff::new();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..8).map(|_| backoff.after(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.after(Duration::from_secs(61)).as_secs(), 1);
        assert_eq!(backoff.after(quick).as_secs(), 2);
    }

    #[test]
    fn the_origin_is_the_gateway_on_loopback_when_bound_everywhere() {
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(origin_of(any, false), "http://127.0.0.1:8080");
        let any6: std::net::SocketAddr = "[::]:8443".parse().unwrap();
        assert_eq!(origin_of(any6, true), "https://[::1]:8443");
        let lan: std::net::SocketAddr = "192.168.1.5:80".parse().unwrap();
        assert_eq!(origin_of(lan, false), "http://192.168.1.5:80");
    }
}
