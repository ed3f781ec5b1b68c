//! `obol stack install-service [--user]` and `uninstall-service`: a systemd unit running `obol
//! stack up --foreground`. The unit is written, never enabled: the `systemctl` commands are
//! printed for the operator to run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use obol_config::{Paths, env, fs as private_fs};
use serde_json::json;

use super::Context;
use crate::output;

/// The unit's file name.
const UNIT: &str = "obol-stack.service";

/// Where the unit goes: the user manager's directory, or the system's.
fn unit_path(user: bool) -> anyhow::Result<PathBuf> {
    if !user {
        return Ok(PathBuf::from("/etc/systemd/system").join(UNIT));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })
        .context("cannot find the user's configuration directory: set HOME")?;
    Ok(base.join("systemd/user").join(UNIT))
}

/// `path` as a unit file value: absolute, and only characters that need no quoting (systemd
/// would read `%` as a specifier, `$` as a variable, white space as a separator).
fn unit_value(path: &Path) -> anyhow::Result<String> {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+@:,~=".contains(c);
    if !path.is_absolute() || !text.chars().all(plain) {
        bail!(
            "{text:?} cannot be written in a unit file: use an absolute path of letters, digits \
             and / . _ - + @ : , ~ ="
        );
    }
    Ok(text.into_owned())
}

/// The unit for `exe` serving the stack at `paths`, as a user unit or a system one.
pub(crate) fn unit_text(exe: &Path, paths: &Paths, user: bool) -> anyhow::Result<String> {
    let exe = unit_value(exe)?;
    let config = unit_value(&paths.config_dir)?;
    let data = unit_value(&paths.data_dir)?;
    let state = unit_value(&paths.state_dir)?;
    let (capabilities, wanted_by) = if user {
        ("", "default.target")
    } else {
        (
            "CapabilityBoundingSet=\nAmbientCapabilities=\n",
            "multi-user.target",
        )
    };
    Ok(format!(
        "# Written by `obol stack install-service`; `obol stack uninstall-service` removes it.
[Unit]
Description=obol-stack: sell and buy API access, paid per request over x402
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exe} stack up --foreground
Environment={config_var}={config}
Environment={data_var}={data}
Environment={state_var}={state}
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
UMask=0077
# Sandboxing: the whole file system read-only but the stack's own directories.
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={config} {data} {state}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
{capabilities}
[Install]
WantedBy={wanted_by}
",
        config_var = env::CONFIG_DIR,
        data_var = env::DATA_DIR,
        state_var = env::STATE_DIR,
    ))
}

fn systemctl(user: bool) -> &'static str {
    if user {
        "systemctl --user"
    } else {
        "systemctl"
    }
}

/// `obol stack install-service [--user] [--print] [--force]`.
pub(crate) fn install(
    ctx: &Context,
    user: bool,
    print: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the obol executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let text = unit_text(&exe, &ctx.paths, user)?;
    if print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let path = unit_path(user)?;
    let status = match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => "unchanged",
        Ok(_) if !force => bail!(
            "{} exists and differs; pass --force to replace it (or `obol stack install-service \
             --print` to compare)",
            path.display()
        ),
        Ok(_) => "replaced",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "written",
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // The sandbox makes these writable: they must exist when the service starts.
    for dir in [
        &ctx.paths.config_dir,
        &ctx.paths.data_dir,
        &ctx.paths.state_dir,
    ] {
        private_fs::create_private_dir(dir)?;
    }
    if status != "unchanged" {
        private_fs::write_private(&path, text.as_bytes()).with_context(|| {
            if user {
                "cannot write the unit".to_owned()
            } else {
                "cannot write the unit (a system unit needs root; or pass --user)".to_owned()
            }
        })?;
    }
    let systemctl = systemctl(user);
    let mut commands = vec![
        format!("{systemctl} daemon-reload"),
        format!("{systemctl} enable --now {UNIT}"),
    ];
    if user {
        commands.push("loginctl enable-linger \"$USER\"".to_owned());
    }
    let logs = format!(
        "journalctl{} -u {UNIT} -f",
        if user { " --user" } else { "" }
    );
    if ctx.json {
        output::json(&json!({"status": status, "path": path, "commands": commands, "logs": logs}))?;
    } else {
        println!("unit {status}: {}", path.display());
        println!("  obol does not run systemctl itself; to start it now and at every boot:");
        for command in &commands {
            println!("    {command}");
        }
        if user {
            println!("  (enable-linger keeps it running when you are logged out)");
        }
        println!("  logs: {logs}");
        println!(
            "  stop the stack with `{systemctl} stop {UNIT}` (a `obol stack down` is not restarted)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `obol stack uninstall-service [--user]`.
pub(crate) fn uninstall(ctx: &Context, user: bool) -> anyhow::Result<ExitCode> {
    let path = unit_path(user)?;
    let systemctl = systemctl(user);
    let target = if user {
        "default.target"
    } else {
        "multi-user.target"
    };
    let enabled = path
        .parent()
        .map(|dir| dir.join(format!("{target}.wants")).join(UNIT));
    if enabled.is_some_and(|link| link.symlink_metadata().is_ok()) {
        bail!("the unit is enabled: run `{systemctl} disable --now {UNIT}` first");
    }
    let status = match std::fs::remove_file(&path) {
        Ok(()) => "removed",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent",
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    };
    if ctx.json {
        output::json(&json!({"status": status, "path": path}))?;
    } else if status == "removed" {
        println!("unit removed: {}", path.display());
        println!("  then: {systemctl} daemon-reload");
    } else {
        println!("no unit at {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
