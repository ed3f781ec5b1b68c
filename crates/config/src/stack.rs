//! Stack settings kept in `<config>/stack.json`, and the running daemon's state in
//! `<state>/daemon.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, fs};

/// Default gateway listener (paid traffic, storefront).
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener (loopback only, bearer token).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Default buyer proxy listener (loopback: whoever reaches it spends the pools).
pub const DEFAULT_BUYER_LISTEN: &str = "127.0.0.1:8402";
/// The longest stack id (k3d caps cluster names at 32 characters with an 11-character prefix).
pub const MAX_STACK_ID: usize = 21;

/// The facilitator a stack uses when its settings name none (the original's default, an
/// x402-rs deployment run by Obol).
pub const DEFAULT_FACILITATOR_URL: &str = "https://x402.gcp.obol.tech";

/// The chains [`DEFAULT_FACILITATOR_URL`] settles on: Ethereum, Base, Base Sepolia.
pub const DEFAULT_FACILITATOR_CHAINS: [u64; 3] = [1, 8453, 84532];

/// Which facilitator the gateway verifies and settles with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FacilitatorSetting {
    /// A remote facilitator by URL.
    Url(String),
    /// The embedded facilitator on these chains, paying gas from a wallet (or
    /// `OBOL_PRIVATE_KEY`).
    Embedded {
        /// Chain names (each needs a write-enabled endpoint).
        chains: Vec<String>,
        /// Wallet name (default `default`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wallet: Option<String>,
        /// Keys paying settlement gas per chain: the wallet and keys derived from it, topped
        /// up from it at start (default 1: the wallet alone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gas_wallets: Option<u32>,
    },
}

/// The stack settings file. Unknown keys are refused: the file is small and fully typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackFile {
    /// The stack's id (at most [`MAX_STACK_ID`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    /// The public base URL (see [`crate::PublicUrl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Gateway listen address (default [`DEFAULT_GATEWAY_LISTEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_listen: Option<String>,
    /// Admin API listen address (default [`DEFAULT_ADMIN_LISTEN`]; must be loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Buyer proxy listen address (default [`DEFAULT_BUYER_LISTEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_listen: Option<String>,
    /// The facilitator (none: [`DEFAULT_FACILITATOR_URL`] for [`DEFAULT_FACILITATOR_CHAINS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<FacilitatorSetting>,
    /// `payTo` used by `obol sell` when `--pay-to` is not given (`obol sell pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pay_to: Option<String>,
    /// Chain used by `obol sell` when `--chain` is not given (`obol sell pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_chain: Option<String>,
    /// How the storefront presents the stack (`obol sell info set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Branding>,
    /// Refused payment verifications per client and second (default 10; 0: unlimited): each
    /// cost the facilitator RPC calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_per_second: Option<u32>,
    /// Their burst (default twice the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_burst: Option<u32>,
    /// Where the payment guard keeps its record (which payments were served and settled): a
    /// `postgres://user[:password]@host[:port]/db` URL shared by gateway replicas; none, the
    /// SQLite file in the state directory (one process). [`crate::env::PAYMENT_STORE`]
    /// overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_store: Option<String>,
    /// HTTPS on the public listener (none: plain HTTP, for a proxy or tunnel in front).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSetting>,
    /// The stack's resources live in this Kubernetes cluster (`stack init --backend
    /// kubernetes`); none: the embedded daemon's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSetting>,
}

/// Where a cluster-backed stack's resources live and how this machine reaches its services.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSetting {
    /// The kubeconfig (none: `$KUBECONFIG`, `~/.kube/config`, or in-cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (none: its current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace of the resources the CLI creates when no `--namespace` is given.
    pub namespace: String,
    /// Where the operator, gateways and buyer run (their Lease lives there).
    #[serde(default = "default_system_namespace")]
    pub system_namespace: String,
    /// The gateway's URL as this machine reaches it (`obol sell test`, status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// The buyer proxy's address as agents reach it (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<String>,
}

/// The namespace of the manifests under `deploy/kubernetes/`.
pub const DEFAULT_SYSTEM_NAMESPACE: &str = "obol-system";

fn default_system_namespace() -> String {
    DEFAULT_SYSTEM_NAMESPACE.to_owned()
}

/// The public listener's certificate (`stack init --tls-cert/--tls-key`): PEM files, re-read
/// when they change, so a renewal needs no restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSetting {
    /// PEM certificate chain, leaf first.
    pub cert_file: std::path::PathBuf,
    /// PEM private key.
    pub key_file: std::path::PathBuf,
    /// A plain-HTTP listener answering every request with a 308 to the HTTPS public URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_listen: Option<String>,
}

/// The storefront's branding (the original's `branding` block): shown on the page, in
/// `/skill.md`, `/api/services.json`, `/llms.txt` and the registration document's defaults.
/// Every value is escaped where it is shown; images are http(s) URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Branding {
    /// The stack's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// One line under the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagline: Option<String>,
    /// Logo image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// `light`, `dark` or `obol` (dark, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
    /// Accent colour, `#rgb` or `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    /// Favicon image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub favicon_url: Option<String>,
    /// Open Graph image for link previews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub og_image_url: Option<String>,
    /// A paragraph about the stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where buyers reach the seller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
}

impl Branding {
    /// What is wrong, field by field (`displayName`: …).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let text = |out: &mut Vec<_>, field, value: &Option<String>, max: usize| {
            if let Some(v) = value
                && (v.trim().is_empty()
                    || v.chars().count() > max
                    || v.chars().any(|c| c.is_control() && c != '\n'))
            {
                out.push((
                    field,
                    format!("must be 1 to {max} characters without control characters"),
                ));
            }
        };
        text(&mut out, "displayName", &self.display_name, 64);
        text(&mut out, "tagline", &self.tagline, 160);
        text(&mut out, "description", &self.description, 2000);
        for (field, value) in [
            ("logoUrl", &self.logo_url),
            ("faviconUrl", &self.favicon_url),
            ("ogImageUrl", &self.og_image_url),
        ] {
            if let Some(v) = value {
                let ok = url::Url::parse(v).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                });
                if !ok || v.len() > 2048 {
                    out.push((field, "must be an http(s) URL".to_owned()));
                }
            }
        }
        if let Some(theme) = &self.theme
            && !matches!(theme.as_str(), "light" | "dark" | "obol")
        {
            out.push(("theme", format!("{theme:?} is not light, dark or obol")));
        }
        if let Some(color) = &self.accent_color {
            let hex = color.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 6) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(("accentColor", format!("{color:?} is not #rgb or #rrggbb")));
            }
        }
        if let Some(email) = &self.contact_email {
            let ok = email.len() <= 254
                && email.split_once('@').is_some_and(|(user, host)| {
                    !user.is_empty()
                        && host.contains('.')
                        && !email
                            .chars()
                            .any(|c| c.is_whitespace() || "<>\"'()[],;:".contains(c))
                });
            if !ok {
                out.push(("contactEmail", format!("{email:?} is not an email address")));
            }
        }
        out
    }
}

impl StackFile {
    /// Reads the file; a missing file is the default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        fs::load_json(path, "stack settings")
    }

    /// Writes the file (0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        fs::save_json(path, self)
    }
}

/// Checks a stack id: 1–21 of lower-case letters, digits and `-`, not starting or ending with
/// `-`.
pub fn validate_stack_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_STACK_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid stack id {id:?}: use 1-{MAX_STACK_ID} lower-case letters, digits and '-'"
        )))
    }
}

/// What a running daemon writes so the CLI can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonState {
    /// Process id.
    pub pid: u32,
    /// Bound gateway address.
    pub gateway: String,
    /// Bound admin address.
    pub admin: String,
    /// Bound buyer proxy address.
    #[serde(default)]
    pub buyer: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// The process's start in clock ticks since boot (Linux), so that a reused pid is never
    /// taken for the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// The gateway serves HTTPS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

impl DaemonState {
    /// The gateway's local URL (`http://` or `https://` and the bound address).
    pub fn gateway_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.gateway)
    }

    /// The daemon's process.
    pub fn process(&self) -> crate::process::Owned {
        crate::process::Owned {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }

    /// Reads the state file, if any.
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        match fs::read_optional(path)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    what: "daemon state",
                    message: e.to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn branding_values_are_checked_field_by_field() {
        let good = Branding {
            display_name: Some("Shop".into()),
            tagline: Some("Fresh APIs".into()),
            logo_url: Some("https://shop.example/logo.png".into()),
            theme: Some("light".into()),
            accent_color: Some("#ff6600".into()),
            favicon_url: Some("http://shop.example/f.ico".into()),
            og_image_url: Some("https://shop.example/og.png".into()),
            description: Some("Line one\nline two".into()),
            contact_email: Some("sales@shop.example".into()),
        };
        assert!(good.problems().is_empty(), "{:?}", good.problems());
        let fields = |b: Branding| b.problems().into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        for (bad, field) in [
            (
                Branding {
                    display_name: Some("x".repeat(65)),
                    ..Branding::default()
                },
                "displayName",
            ),
            (
                Branding {
                    tagline: Some("a\u{7}b".into()),
                    ..Branding::default()
                },
                "tagline",
            ),
            (
                Branding {
                    logo_url: Some("javascript:alert(1)".into()),
                    ..Branding::default()
                },
                "logoUrl",
            ),
            (
                Branding {
                    favicon_url: Some("data:image/png;base64,AA".into()),
                    ..Branding::default()
                },
                "faviconUrl",
            ),
            (
                Branding {
                    og_image_url: Some("https://u:p@x.example/i.png".into()),
                    ..Branding::default()
                },
                "ogImageUrl",
            ),
            (
                Branding {
                    theme: Some("neon".into()),
                    ..Branding::default()
                },
                "theme",
            ),
            (
                Branding {
                    accent_color: Some("red;}body{".into()),
                    ..Branding::default()
                },
                "accentColor",
            ),
            (
                Branding {
                    contact_email: Some("a@b\"><script>".into()),
                    ..Branding::default()
                },
                "contactEmail",
            ),
        ] {
            assert_eq!(fields(bad), [field]);
        }
    }

    use super::*;

    #[test]
    fn stack_ids() {
        assert!(validate_stack_id("peaceful-starling").is_ok());
        assert!(validate_stack_id(&"a".repeat(21)).is_ok());
        for bad in ["", "-a", "a-", "Upper", "post490-buy-external-bob", "a_b"] {
            assert!(validate_stack_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn facilitator_setting_shapes() {
        let file: StackFile =
            serde_json::from_str(r#"{"facilitator":{"url":"https://f.example"}}"#).unwrap();
        assert_eq!(
            file.facilitator,
            Some(FacilitatorSetting::Url("https://f.example".into()))
        );
        let file: StackFile =
            serde_json::from_str(r#"{"facilitator":{"embedded":{"chains":["devnet"]}}}"#).unwrap();
        assert_eq!(
            file.facilitator,
            Some(FacilitatorSetting::Embedded {
                chains: vec!["devnet".into()],
                wallet: None,
                gas_wallets: None,
            })
        );
    }
}
