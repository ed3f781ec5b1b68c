//! `obol stack init|up|down|status|purge`: the embedded daemon's lifecycle (`backup` and
//! `restore` in `super::backup`, the service unit in `super::service`).

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use obol_config::fs as private_fs;
use obol_config::stack::{
    DaemonState, FacilitatorSetting, KubernetesSetting, StackFile, validate_stack_id,
};
use obol_daemon::{AdminClient, RunOptions, StackStatus};
use serde_json::json;

use super::Context;
use crate::cli::{StackCommand, StackInitArgs};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: StackCommand) -> anyhow::Result<ExitCode> {
    match command {
        StackCommand::Init(args) => init(ctx, &args).await,
        StackCommand::Up {
            foreground: true,
            public_url,
            tls,
        } => foreground(ctx, public_url, tls.setting()).await,
        StackCommand::Up {
            foreground: false,
            public_url,
            tls,
        } => up(ctx, public_url, &tls).await,
        StackCommand::Down => down(ctx).await,
        StackCommand::Status => status(ctx).await,
        StackCommand::Purge { force } => purge(ctx, force).await,
        StackCommand::Backup { file, include_keys } => {
            super::backup::backup(ctx, &file, include_keys).await
        }
        StackCommand::Restore { file, force } => super::backup::restore(ctx, &file, force),
        StackCommand::InstallService { user, print, force } => {
            super::service::install(ctx, user, print, force)
        }
        StackCommand::UninstallService { user } => super::service::uninstall(ctx, user),
    }
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "gentle", "happy", "jolly", "keen", "lucky", "mellow", "noble",
    "peaceful", "quiet", "rapid", "sunny", "tidy", "witty",
];
const NOUNS: [&str; 16] = [
    "badger", "crane", "dolphin", "falcon", "heron", "ibis", "koala", "lynx", "marten", "otter",
    "panda", "raven", "starling", "tern", "vole", "wren",
];

fn petname() -> String {
    let bytes = obol_x402::primitives::B256::random();
    format!(
        "{}-{}",
        ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()],
        NOUNS[usize::from(bytes[1]) % NOUNS.len()]
    )
}

async fn init(ctx: &Context, args: &StackInitArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.stack_file();
    if path.exists() && !args.force {
        let settings = StackFile::load(&path)?;
        if ctx.json {
            output::json(&json!({"status": "exists", "stackId": settings.stack_id, "path": path}))?;
        } else {
            println!(
                "stack {} is already initialised ({}); pass --force to overwrite",
                settings.stack_id.unwrap_or_default(),
                path.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stack_id = args.stack_id.clone().unwrap_or_else(petname);
    validate_stack_id(&stack_id)?;
    let kubernetes = args.backend.setting();
    if kubernetes.is_none() && args.backend.cluster_flags_given() {
        anyhow::bail!(
            "--kubeconfig, --context, --namespace, --system-namespace, --gateway-url and --buyer \
             describe a cluster: add --backend kubernetes"
        );
    }
    if let Some(url) = &args.public_url {
        obol_config::public_url::validate(url)?;
    }
    let facilitator = match (&args.facilitator_url, args.facilitator_chain.is_empty()) {
        (Some(url), _) => Some(FacilitatorSetting::Url(url.clone())),
        (None, false) => Some(FacilitatorSetting::Embedded {
            chains: args.facilitator_chain.clone(),
            wallet: None,
            gas_wallets: args.gas_wallets,
        }),
        (None, true) => None,
    };
    let settings = StackFile {
        stack_id: Some(stack_id.clone()),
        public_url: args.public_url.clone(),
        gateway_listen: args.gateway_listen.clone(),
        admin_listen: args.admin_listen.clone(),
        buyer_listen: args.buyer_listen.clone(),
        facilitator,
        payment_store: args.payment_store.clone(),
        tls: args.tls.setting(),
        kubernetes,
        ..StackFile::default()
    };
    if let Some(setting) = &settings.kubernetes {
        // Reach the cluster first: a stack whose resources cannot be read is not initialised.
        return super::cluster::init(ctx, &settings, setting, &path).await;
    }
    settings.save(&path)?;
    obol_daemon::admin_token(&ctx.paths)?;
    private_fs::create_private_dir(&ctx.paths.data_dir)?;
    private_fs::create_private_dir(&ctx.paths.state_dir)?;
    if ctx.json {
        output::json(&json!({"status": "initialised", "stackId": stack_id, "path": path}))?;
    } else {
        println!("stack {stack_id} initialised: {}", path.display());
        println!("  start it with `obol stack up`");
    }
    Ok(ExitCode::SUCCESS)
}

/// The admin client of the running daemon, if one runs.
pub(crate) fn admin(ctx: &Context) -> anyhow::Result<Option<(DaemonState, AdminClient)>> {
    let Some(state) = DaemonState::load(&ctx.paths.daemon_state_file())? else {
        return Ok(None);
    };
    if !state.process().is_running() {
        return Ok(None);
    }
    let token = std::fs::read_to_string(ctx.paths.admin_token_file()).with_context(|| {
        format!(
            "cannot read the admin token {}",
            ctx.paths.admin_token_file().display()
        )
    })?;
    let client = AdminClient::new(&state.admin, token.trim());
    Ok(Some((state, client)))
}

/// The stack's settings when its resources live in a cluster.
pub(crate) fn on_cluster(ctx: &Context) -> anyhow::Result<Option<(StackFile, KubernetesSetting)>> {
    let path = ctx.paths.stack_file();
    if !path.exists() {
        return Ok(None);
    }
    let settings = StackFile::load(&path)?;
    Ok(settings
        .kubernetes
        .clone()
        .map(|setting| (settings, setting)))
}

/// The client of the stack's resources: the cluster's when they live in one, else the running
/// daemon's, or an error telling how to start the stack.
pub(crate) async fn require_admin(ctx: &Context) -> anyhow::Result<AdminClient> {
    if let Some((settings, setting)) = on_cluster(ctx)? {
        return super::cluster::admin_client(&settings, &setting).await;
    }
    admin(ctx)?
        .map(|(_, client)| client)
        .ok_or_else(|| anyhow::anyhow!("the stack is not running; start it with `obol stack up`"))
}

/// Refuses what only the embedded daemon does on a cluster-backed stack.
fn embedded_only(ctx: &Context, what: &str) -> anyhow::Result<()> {
    if let Some((_, setting)) = on_cluster(ctx)? {
        anyhow::bail!(
            "this stack's resources live in a Kubernetes cluster (namespace {}): the cluster runs \
             the operator and gateways (docs/kubernetes.md), so there is no daemon to {what}; \
             `obol stack init --force` makes an embedded stack again",
            setting.namespace
        );
    }
    Ok(())
}

async fn foreground(
    ctx: &Context,
    public_url: Option<String>,
    tls: Option<obol_config::stack::TlsSetting>,
) -> anyhow::Result<ExitCode> {
    embedded_only(ctx, "start")?;
    if !ctx.paths.stack_file().exists() {
        init(ctx, &default_init()).await?;
    }
    super::init_logging();
    obol_daemon::run(
        ctx.paths.clone(),
        RunOptions {
            public_url,
            tls,
            ..RunOptions::default()
        },
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn default_init() -> StackInitArgs {
    StackInitArgs {
        force: false,
        stack_id: None,
        gateway_listen: None,
        admin_listen: None,
        buyer_listen: None,
        public_url: None,
        facilitator_url: None,
        facilitator_chain: Vec::new(),
        gas_wallets: None,
        payment_store: None,
        tls: crate::cli::TlsArgs::default(),
        backend: crate::cli::BackendArgs::default(),
    }
}

async fn up(
    ctx: &Context,
    public_url: Option<String>,
    tls: &crate::cli::TlsArgs,
) -> anyhow::Result<ExitCode> {
    embedded_only(ctx, "start")?;
    if let Some((state, client)) = admin(ctx)?
        && let Ok(status) = client.status().await
    {
        report(ctx, &state, &status, "already running")?;
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.paths.stack_file().exists() {
        init(ctx, &default_init()).await?;
    }
    let started = Instant::now();
    private_fs::create_private_dir(&ctx.paths.state_dir)?;
    let _ = std::fs::remove_file(ctx.paths.daemon_state_file());
    let log_path = ctx.paths.daemon_log_file();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the obol executable")?;
    let mut command = std::process::Command::new(exe);
    command.args(["stack", "up", "--foreground"]);
    if let Some(url) = &public_url {
        command.args(["--public-url", url]);
    }
    if let Some(setting) = tls.setting() {
        command
            .arg("--tls-cert")
            .arg(&setting.cert_file)
            .arg("--tls-key")
            .arg(&setting.key_file);
        if let Some(redirect) = &setting.redirect_listen {
            command.args(["--http-redirect", redirect]);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the daemon")?;
    // Wait for it to answer (or to die).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            anyhow::bail!(
                "the daemon exited with {exit}; last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Some((state, client)) = admin(ctx)?
            && let Ok(status) = client.status().await
        {
            let what = format!("started in {} ms", started.elapsed().as_millis());
            report(ctx, &state, &status, &what)?;
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the daemon did not answer within 20 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(
    ctx: &Context,
    state: &DaemonState,
    status: &StackStatus,
    what: &str,
) -> anyhow::Result<()> {
    if ctx.json {
        output::json(
            &json!({"status": what, "stackId": status.stack_id, "pid": state.pid,
            "gateway": state.gateway_url(), "admin": state.admin,
            "buyer": format!("http://{}", state.buyer),
            "publicUrl": status.public_url, "publicUrlIsDefault": status.public_url_is_default,
            "routes": status.routes, "facilitator": status.facilitator}),
        )?;
    } else {
        println!("stack {} {what} (pid {})", status.stack_id, state.pid);
        println!("  gateway:    {}", state.gateway_url());
        println!("  public URL: {}", status.public_url);
        println!(
            "  buyer:      http://{}/v1 (model paid/<model>)",
            state.buyer
        );
        println!(
            "  admin API:  http://{} (loopback, token in {})",
            state.admin,
            ctx.paths.admin_token_file().display()
        );
        println!("  offers served: {}", status.routes);
        let f = &status.facilitator;
        let chains = if f.chains.is_empty() {
            "the chains it supports".to_owned()
        } else {
            f.chains.join(", ")
        };
        println!("  facilitator: {} ({}) for {chains}", f.url, f.source);
        if status.public_url_is_default {
            println!(
                "  note: no public URL is set, so buyers on other machines cannot reach this stack; use `obol stack up --public-url URL` or OBOL_PUBLIC_URL"
            );
        }
    }
    Ok(())
}

async fn down(ctx: &Context) -> anyhow::Result<ExitCode> {
    embedded_only(ctx, "stop")?;
    let Some((state, client)) = admin(ctx)? else {
        if ctx.json {
            output::json(&json!({"status": "not running"}))?;
        } else {
            println!("the stack is not running");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let daemon = state.process();
    if client.shutdown().await.is_err() {
        daemon.terminate();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill();
    let _ = std::fs::remove_file(ctx.paths.daemon_state_file());
    if ctx.json {
        output::json(&json!({"status": "stopped", "pid": state.pid}))?;
    } else {
        println!("stack stopped (pid {})", state.pid);
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some((settings, setting)) = on_cluster(ctx)? {
        return super::cluster::status(ctx, &settings, &setting).await;
    }
    let running = match admin(ctx)? {
        Some((state, client)) => client.status().await.ok().map(|status| (state, status)),
        None => None,
    };
    match running {
        Some((state, status)) => {
            report(ctx, &state, &status, "running")?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            if ctx.json {
                output::json(&json!({"status": "not running"}))?;
            } else {
                println!("the stack is not running; start it with `obol stack up`");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn purge(ctx: &Context, force: bool) -> anyhow::Result<ExitCode> {
    if admin(ctx)?.is_some() {
        anyhow::bail!("the stack is running; stop it first with `obol stack down`");
    }
    let mut removed = vec![ctx.paths.stack_file(), ctx.paths.admin_token_file()];
    removed.retain(|p| p.exists());
    for path in &removed {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    if force && ctx.paths.data_dir.exists() {
        std::fs::remove_dir_all(&ctx.paths.data_dir)
            .with_context(|| format!("cannot remove {}", ctx.paths.data_dir.display()))?;
    }
    if ctx.json {
        output::json(&json!({"status": "purged", "data": force}))?;
    } else if force {
        println!("stack settings and data deleted");
    } else {
        println!(
            "stack settings deleted (data kept in {}; --force deletes it too)",
            ctx.paths.data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
