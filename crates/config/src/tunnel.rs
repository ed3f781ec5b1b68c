//! The tunnel `obol tunnel up` asked for (`<config>/tunnel.json`; absent: none) and where the
//! `cloudflared` binary is. obol never downloads `cloudflared`: when it is missing,
//! [`locate_cloudflared`] says how to install it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ConfigError, env, fs as private_fs};

/// How the tunnel gets its public URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelMode {
    /// An account-less quick tunnel: Cloudflare assigns `https://<words>.trycloudflare.com`,
    /// a new one each time `cloudflared` starts.
    #[default]
    Quick,
    /// A tunnel created in a Cloudflare account, run with its token (read from a file) and
    /// reached at a stable hostname routed to it (DNS mode).
    Named,
}

impl TunnelMode {
    /// `quick` or `named`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Named => "named",
        }
    }
}

/// The tunnel setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSetting {
    /// Quick or named.
    pub mode: TunnelMode,
    /// Named mode: the file holding the tunnel token (never passed on a command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Named mode: the hostname routed to the tunnel; the public URL is `https://<hostname>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl TunnelSetting {
    /// A quick tunnel.
    pub fn quick() -> Self {
        Self {
            mode: TunnelMode::Quick,
            token_file: None,
            hostname: None,
        }
    }

    /// Checks the combination: a quick tunnel takes neither a token file nor a hostname; a
    /// named one needs both, the token file absolute, the hostname a plain DNS name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(why.to_owned()));
        match self.mode {
            TunnelMode::Quick if self.token_file.is_some() || self.hostname.is_some() => invalid(
                "a quick tunnel takes no --token-file or --hostname (Cloudflare assigns the \
                 URL); use --mode named for a tunnel of your account",
            ),
            TunnelMode::Quick => Ok(()),
            TunnelMode::Named => {
                let Some(token_file) = &self.token_file else {
                    return invalid(
                        "a named tunnel needs --token-file FILE (the tunnel token from the \
                         Cloudflare dashboard, in a file readable only by you)",
                    );
                };
                if !token_file.is_absolute() {
                    return invalid("--token-file must be an absolute path");
                }
                match self.hostname.as_deref() {
                    None => invalid(
                        "a named tunnel needs --hostname H (the public hostname routed to the \
                         tunnel); the stack's public URL becomes https://H",
                    ),
                    Some(host) if !is_hostname(host) => Err(ConfigError::Invalid(format!(
                        "--hostname {:?} is not a hostname (letters, digits, hyphens and dots; \
                         no scheme, port or path)",
                        crate::text::printable(host, 80)
                    ))),
                    Some(_) => Ok(()),
                }
            }
        }
    }

    /// The public URL a named tunnel serves (`https://<hostname>`); a quick tunnel's is only
    /// known once `cloudflared` prints it.
    pub fn fixed_url(&self) -> Option<String> {
        match self.mode {
            TunnelMode::Named => self.hostname.as_ref().map(|h| format!("https://{h}")),
            TunnelMode::Quick => None,
        }
    }

    /// The setting in `path`; `None` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        let Some(text) = private_fs::read_optional(path)? else {
            return Ok(None);
        };
        let setting: Self = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            what: "tunnel",
            message: e.to_string(),
        })?;
        setting.validate()?;
        Ok(Some(setting))
    }

    /// Writes the setting (0600).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate()?;
        private_fs::save_json(path, self)
    }

    /// Removes the setting file; true when there was one.
    pub fn remove(path: &Path) -> Result<bool, ConfigError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ConfigError::Io {
                action: "cannot remove",
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// A DNS name: labels of letters, digits and hyphens (not at either end), joined by dots.
fn is_hostname(host: &str) -> bool {
    host.len() <= 253
        && host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// How to install `cloudflared` (obol never downloads it).
pub const INSTALL_HINT: &str = "\
cloudflared is not installed (it is not on PATH and OBOL_CLOUDFLARED is unset); obol never \
downloads it. Install it, then run `obol tunnel up` again:
  Debian/Ubuntu, from Cloudflare's package repository (https://pkg.cloudflare.com/):
    sudo mkdir -p --mode=0755 /usr/share/keyrings
    curl -fsSL https://pkg.cloudflare.com/cloudflare-main.gpg | sudo tee /usr/share/keyrings/cloudflare-main.gpg >/dev/null
    echo 'deb [signed-by=/usr/share/keyrings/cloudflare-main.gpg] https://pkg.cloudflare.com/cloudflared any main' | sudo tee /etc/apt/sources.list.d/cloudflared.list
    sudo apt-get update && sudo apt-get install cloudflared
  elsewhere, a release binary from https://github.com/cloudflare/cloudflared/releases \
(point OBOL_CLOUDFLARED at it when it is not on PATH)";

/// The `cloudflared` to run: [`env::CLOUDFLARED`] when set (it must be an executable file),
/// else the first `cloudflared` on `PATH`; otherwise the error is [`INSTALL_HINT`].
pub fn locate_cloudflared(
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, ConfigError> {
    if let Some(explicit) = lookup(env::CLOUDFLARED).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(ConfigError::Invalid(format!(
                "{} points at {}, which is not an executable file; fix it or unset it to use \
                 cloudflared from PATH",
                env::CLOUDFLARED,
                path.display()
            )))
        };
    }
    lookup("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cloudflared"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| ConfigError::Invalid(INSTALL_HINT.to_owned()))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(token: &str, host: &str) -> TunnelSetting {
        TunnelSetting {
            mode: TunnelMode::Named,
            token_file: Some(PathBuf::from(token)),
            hostname: Some(host.to_owned()),
        }
    }

    #[test]
    fn settings_are_checked_and_round_trip() {
        assert!(TunnelSetting::quick().validate().is_ok());
        let quick_with_host = TunnelSetting {
            hostname: Some("api.example.com".into()),
            ..TunnelSetting::quick()
        };
        assert!(quick_with_host.validate().is_err());
        let good = named("/etc/obol/tunnel.token", "api.example.com");
        assert!(good.validate().is_ok());
        assert_eq!(good.fixed_url().as_deref(), Some("https://api.example.com"));
        for bad in [
            named("relative.token", "api.example.com"),
            named("/t", "https://api.example.com"),
            named("/t", "api.example.com:443"),
            named("/t", "localhost"),
            named("/t", "-a.example.com"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let missing = TunnelSetting {
            hostname: None,
            ..good.clone()
        };
        assert!(missing.validate().is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.json");
        assert_eq!(TunnelSetting::load(&path).unwrap(), None);
        good.save(&path).unwrap();
        assert_eq!(TunnelSetting::load(&path).unwrap(), Some(good));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"tokenFile\"") && text.contains("\"named\""),
            "{text}"
        );
        assert!(TunnelSetting::remove(&path).unwrap());
        assert!(!TunnelSetting::remove(&path).unwrap());
        std::fs::write(&path, r#"{"mode":"quick","extra":1}"#).unwrap();
        assert!(
            TunnelSetting::load(&path).is_err(),
            "unknown fields refused"
        );
    }

    #[cfg(unix)]
    #[test]
    fn cloudflared_is_found_by_variable_or_path_else_the_install_hint() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("cloudflared");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let not_executable = dir.path().join("plain");
        std::fs::write(&not_executable, "").unwrap();

        let lookup = |vars: Vec<(&'static str, OsString)>| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        let empty = tempfile::tempdir().unwrap();
        let found = locate_cloudflared(lookup(vec![(
            "PATH",
            std::env::join_paths([empty.path(), dir.path()]).unwrap(),
        )]))
        .unwrap();
        assert_eq!(found, binary);
        let explicit =
            locate_cloudflared(lookup(vec![(env::CLOUDFLARED, binary.clone().into())])).unwrap();
        assert_eq!(explicit, binary);
        let wrong = locate_cloudflared(lookup(vec![(env::CLOUDFLARED, not_executable.into())]))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("not an executable file"), "{wrong}");
        let missing = locate_cloudflared(lookup(vec![("PATH", empty.path().into())]))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("pkg.cloudflare.com"), "{missing}");
        assert!(
            missing.contains("github.com/cloudflare/cloudflared/releases"),
            "{missing}"
        );
        assert!(missing.contains("never downloads"), "{missing}");
    }
}
