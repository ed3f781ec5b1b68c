//! `obol tunnel up|down|status|logs`: the setting lives in `<config>/tunnel.json`; the running
//! daemon runs `cloudflared` (admin `/v1/tunnel`), and starts it again with the stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use obol_config::text::printable;
use obol_config::tunnel::{TunnelMode, TunnelSetting, locate_cloudflared};
use obol_daemon::{TunnelState, TunnelStatus};
use serde_json::{Value, json};

use super::Context;
use super::stack::admin;
use crate::cli::{TunnelCommand, TunnelModeArg};
use crate::output;

/// How long `tunnel up` waits for a quick tunnel's URL before leaving it to `tunnel status`.
const URL_WAIT: Duration = Duration::from_secs(20);

pub(super) async fn run(ctx: &Context, command: TunnelCommand) -> anyhow::Result<ExitCode> {
    match command {
        TunnelCommand::Up {
            mode,
            token_file,
            hostname,
        } => up(ctx, mode, token_file, hostname).await,
        TunnelCommand::Down => down(ctx).await,
        TunnelCommand::Status => status(ctx).await,
        TunnelCommand::Logs { lines } => logs(ctx, lines),
    }
}

fn setting(
    mode: TunnelModeArg,
    token_file: Option<PathBuf>,
    hostname: Option<String>,
) -> anyhow::Result<TunnelSetting> {
    let token_file = token_file
        .map(|f| std::path::absolute(&f).with_context(|| format!("--token-file {}", f.display())))
        .transpose()?;
    let setting = TunnelSetting {
        mode: match mode {
            TunnelModeArg::Quick => TunnelMode::Quick,
            TunnelModeArg::Named => TunnelMode::Named,
        },
        token_file,
        hostname: hostname.map(|h| h.trim().to_ascii_lowercase()),
    };
    setting.validate()?;
    if let Some(file) = &setting.token_file
        && !file.is_file()
    {
        anyhow::bail!("--token-file {}: no such file", file.display());
    }
    Ok(setting)
}

async fn up(
    ctx: &Context,
    mode: TunnelModeArg,
    token_file: Option<PathBuf>,
    hostname: Option<String>,
) -> anyhow::Result<ExitCode> {
    let setting = setting(mode, token_file, hostname)?;
    // Refused here, before anything is recorded: obol never downloads cloudflared.
    locate_cloudflared(|name| std::env::var_os(name))?;
    let Some((_, client)) = admin(ctx)? else {
        setting.save(&ctx.paths.tunnel_file())?;
        if ctx.json {
            output::json(&json!({"status": "recorded", "mode": setting.mode.as_str()}))?;
        } else {
            println!(
                "tunnel ({}) recorded; it starts with the stack (`obol stack up`)",
                setting.mode.as_str()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut status = client.tunnel_start(&setting).await?;
    setting.save(&ctx.paths.tunnel_file())?;
    let deadline = tokio::time::Instant::now() + URL_WAIT;
    while status.url.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = client.tunnel_status().await?;
    }
    if ctx.json {
        output::json(&status_json(&status))?;
    } else {
        print_status(&status);
        if status.url.is_none() {
            output::note(
                "the tunnel has no URL yet; see `obol tunnel status` and `obol tunnel logs`",
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn down(ctx: &Context) -> anyhow::Result<ExitCode> {
    let forgotten = TunnelSetting::remove(&ctx.paths.tunnel_file())?;
    let status = match admin(ctx)? {
        Some((_, client)) => Some(client.tunnel_stop().await?),
        None => None,
    };
    if ctx.json {
        output::json(&json!({
            "status": "stopped",
            "forgotten": forgotten,
            "publicUrl": status.as_ref().map(|s| s.public_url.clone()),
        }))?;
    } else {
        match &status {
            Some(status) => println!(
                "tunnel stopped; the public URL is {}",
                printable(&status.public_url, 200)
            ),
            None if forgotten => println!("tunnel forgotten (the stack is not running)"),
            None => println!("no tunnel was set up"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Context) -> anyhow::Result<ExitCode> {
    let setting = TunnelSetting::load(&ctx.paths.tunnel_file())?;
    let Some((_, client)) = admin(ctx)? else {
        if ctx.json {
            output::json(&json!({
                "state": "stopped",
                "stackRunning": false,
                "mode": setting.as_ref().map(|s| s.mode.as_str()),
            }))?;
        } else {
            match setting {
                Some(s) => println!(
                    "tunnel: stopped (the stack is not running; the {} tunnel starts with `obol stack up`)",
                    s.mode.as_str()
                ),
                None => println!("tunnel: none (set one up with `obol tunnel up`)"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let status = client.tunnel_status().await?;
    if ctx.json {
        output::json(&status_json(&status))?;
    } else if status.state == TunnelState::Stopped {
        println!("tunnel: none (set one up with `obol tunnel up`)");
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(status: &TunnelStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    value["stackRunning"] = json!(true);
    value
}

/// The status for a terminal; every value the daemon got from cloudflared or a chain is
/// escaped.
fn print_status(status: &TunnelStatus) {
    let show = |text: &str| printable(text, 300);
    let state = match status.state {
        TunnelState::Stopped => "stopped",
        TunnelState::Running => "running",
        TunnelState::Restarting => "restarting",
    };
    let mode = status.mode.map_or("", TunnelMode::as_str);
    println!("tunnel: {state} ({mode})");
    println!(
        "  url:        {}",
        status
            .url
            .as_deref()
            .map_or_else(|| "(not yet known)".to_owned(), show)
    );
    let published = if status.publishing {
        " (the tunnel's URL)"
    } else {
        ""
    };
    println!("  public URL: {}{published}", show(&status.public_url));
    if let Some(note) = &status.note {
        println!("  note:       {}", show(note));
    }
    if let Some(pid) = status.pid {
        println!("  pid:        {pid}");
    }
    println!("  restarts:   {}", status.restarts);
    if let Some(error) = &status.last_error {
        println!("  last error: {}", show(error));
    }
    if let Some(origin) = &status.origin {
        println!(
            "  forwards:   {} (the gateway only; the admin API and metrics are not tunnelled)",
            show(origin)
        );
    }
    println!("  log:        {}", status.log_file.display());
    for update in &status.agent_uris {
        let detail = update
            .tx_hash
            .as_deref()
            .map(|tx| format!(" (tx {tx})"))
            .or_else(|| update.detail.as_deref().map(|d| format!(": {}", show(d))))
            .unwrap_or_default();
        println!(
            "  agentURI:   {} agent {}: {}{detail}",
            show(&update.chain),
            show(&update.agent_id),
            show(&update.state)
        );
    }
}

/// The last `lines` lines of the tunnel's log (already sanitised by the daemon).
fn logs(ctx: &Context, lines: usize) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.tunnel_log_file();
    let Some(text) = obol_config::fs::read_optional(&path)? else {
        if ctx.json {
            output::json(&json!({"lines": [], "path": path}))?;
        } else {
            output::note(&format!("no tunnel log yet ({})", path.display()));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if ctx.json {
        output::json(&json!({"lines": tail, "path": path}))?;
    } else {
        for line in tail {
            println!("{}", printable(line, 4096));
        }
    }
    Ok(ExitCode::SUCCESS)
}
