//! The three directories obol-stack uses.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{ConfigError, env};

/// Config, data and state directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Wallets, networks and stack settings.
    pub config_dir: PathBuf,
    /// The embedded store.
    pub data_dir: PathBuf,
    /// PID and log files.
    pub state_dir: PathBuf,
}

impl Paths {
    /// Resolves the directories from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Resolves the directories with `lookup` standing in for the environment: the `OBOL_*`
    /// variable, else the XDG base directory, else the conventional place under `$HOME`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = |own: &'static str, xdg: &str, home_rel: &str| -> Result<PathBuf, ConfigError> {
            if let Some(path) = non_empty(own) {
                return Ok(path);
            }
            if let Some(base) = non_empty(xdg) {
                return Ok(base.join("obol"));
            }
            non_empty("HOME")
                .map(|home| home.join(home_rel).join("obol"))
                .ok_or(ConfigError::NoHome(own))
        };
        Ok(Self {
            config_dir: dir(env::CONFIG_DIR, "XDG_CONFIG_HOME", ".config")?,
            data_dir: dir(env::DATA_DIR, "XDG_DATA_HOME", ".local/share")?,
            state_dir: dir(env::STATE_DIR, "XDG_STATE_HOME", ".local/state")?,
        })
    }

    /// All three under one root (tests, throwaway stacks).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            state_dir: root.join("state"),
        }
    }

    /// `<config>/wallets`.
    pub fn wallets_dir(&self) -> PathBuf {
        self.config_dir.join("wallets")
    }

    /// `<config>/networks.json`.
    pub fn networks_file(&self) -> PathBuf {
        self.config_dir.join("networks.json")
    }

    /// `<config>/tokens.json`: tokens outside the built-in table the user confirmed
    /// (`--token-address`).
    pub fn tokens_file(&self) -> PathBuf {
        self.config_dir.join("tokens.json")
    }

    /// `<config>/stack.json`.
    pub fn stack_file(&self) -> PathBuf {
        self.config_dir.join("stack.json")
    }

    /// `<config>/admin.token`: the admin API's bearer token (0600).
    pub fn admin_token_file(&self) -> PathBuf {
        self.config_dir.join("admin.token")
    }

    /// `<config>/secrets`: secrets offers refer to, `<namespace>/<name>.json` (0600 in 0700).
    pub fn secrets_dir(&self) -> PathBuf {
        self.config_dir.join("secrets")
    }

    /// `<config>/siwx-session.key`: the sign-in key (nonces, session tokens; 0600).
    pub fn siwx_key_file(&self) -> PathBuf {
        self.config_dir.join("siwx-session.key")
    }

    /// `<data>/gating.sqlite`: used sign-in nonces.
    pub fn gating_file(&self) -> PathBuf {
        self.data_dir.join("gating.sqlite")
    }

    /// `<data>/store.sqlite`: the resources.
    pub fn store_file(&self) -> PathBuf {
        self.data_dir.join("store.sqlite")
    }

    /// `<data>/payments.sqlite`: the gateway's settled-payment set.
    pub fn payments_file(&self) -> PathBuf {
        self.data_dir.join("payments.sqlite")
    }

    /// `<data>/buyer-auths.sqlite`: the buyer's pre-signed authorization pools.
    pub fn buyer_pool_file(&self) -> PathBuf {
        self.data_dir.join("buyer-auths.sqlite")
    }

    /// `<data>/spend.sqlite`: the daily spend of `obol mcp` and of autoRefill.
    pub fn spend_file(&self) -> PathBuf {
        self.data_dir.join("spend.sqlite")
    }

    /// `<state>/daemon.json`: the running daemon's pid and addresses.
    pub fn daemon_state_file(&self) -> PathBuf {
        self.state_dir.join("daemon.json")
    }

    /// `<state>/daemon.log`.
    pub fn daemon_log_file(&self) -> PathBuf {
        self.state_dir.join("daemon.log")
    }

    /// `<config>/tunnel.json`: the tunnel `obol tunnel up` asked for (mode, token file,
    /// hostname); absent: no tunnel.
    pub fn tunnel_file(&self) -> PathBuf {
        self.config_dir.join("tunnel.json")
    }

    /// `<state>/tunnel.log`: `cloudflared`'s output, sanitised (rotated to `tunnel.log.1`).
    pub fn tunnel_log_file(&self) -> PathBuf {
        self.state_dir.join("tunnel.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn precedence_is_own_variable_then_xdg_then_home() {
        let paths = Paths::from_lookup(lookup(&[
            ("HOME", "/home/u"),
            ("XDG_DATA_HOME", "/xdg/data"),
            ("OBOL_STATE_DIR", "/custom/state"),
        ]))
        .unwrap();
        assert_eq!(paths.config_dir, PathBuf::from("/home/u/.config/obol"));
        assert_eq!(paths.data_dir, PathBuf::from("/xdg/data/obol"));
        assert_eq!(paths.state_dir, PathBuf::from("/custom/state"));
        assert_eq!(
            paths.wallets_dir(),
            PathBuf::from("/home/u/.config/obol/wallets")
        );
    }

    #[test]
    fn empty_values_count_as_unset_and_no_home_is_an_error() {
        let err = Paths::from_lookup(lookup(&[("OBOL_CONFIG_DIR", "")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot find a home directory; set OBOL_CONFIG_DIR"
        );
    }
}
